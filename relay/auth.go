package relay

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// roleID is a role a token may carry, kept in a byte (TestGrantSize);
// String is its name. Anonymous viewers have roleViewer. The roles that
// send come first, in the order of sendRoles (policy.rates).
type roleID uint8

// Roles a token may carry.
const (
	roleUser roleID = iota
	roleMod
	roleAdmin
	roleBot
	roleViewer
)

var roleNames = [...]string{roleUser: "user", roleMod: "mod", roleAdmin: "admin", roleBot: "bot", roleViewer: "viewer"}

// String returns the role's name, as tokens, hello and the publish hook
// spell it.
func (r roleID) String() string { return roleNames[r] }

// roleIndex returns the index of the role's send limits in policy.rates:
// a viewer's are a user's.
func roleIndex(r roleID) int {
	if r > roleBot {
		return 0
	}
	return int(r)
}

// tokenLeeway is the clock skew allowed on nbf and iat; exp gets none
// (identify checks it again to the second).
const tokenLeeway = 30 * time.Second

// identity is who a connection is. Set by the upgrade; a refresh replaces
// it with a new one on the session's loop (never changing user or anon).
// Read-only once made: a token's identity is shared by every connection
// the token admitted (the token cache hands out the same one); only an
// anonymous viewer's, its own, gets its user id after identify.
//
// Every connection holds one, so it is kept small (24 bytes, see
// TestIdentitySize): only the user id is its own; what the token grants is
// behind one pointer, shared by every identity made from the same token
// (the token cache hands out copies that share it) and by all anonymous
// viewers.
type identity struct {
	user string
	*grant
}

// grant is what a token grants: immutable once made, shared by every
// identity of that token. Never change a field of a grant that was handed
// out; make a new one.
//
// With a token per user, each connection has a grant of its own, so it is
// kept small: badges and room patterns, which most tokens lack, are behind
// one pointer (TestGrantSize).
type grant struct {
	name  string
	lists *grantLists // nil when the token has neither badges nor rooms
	exp   int64       // the token's expiry, in Unix nanoseconds; zero means none
	role  roleID
	anon  bool
}

// grantLists are a grant's lists, immutable as the grant.
type grantLists struct {
	badges []string // copied into the user's messages
	rooms  []string // patterns of rooms the user may join; nil means all
}

// badges returns the badges copied into the user's messages.
func (g *grant) badges() []string {
	if g.lists == nil {
		return nil
	}
	return g.lists.badges
}

// rooms returns the patterns of rooms the user may join; nil means all.
func (g *grant) rooms() []string {
	if g.lists == nil {
		return nil
	}
	return g.lists.rooms
}

// anonGrant is the grant of every anonymous viewer.
var anonGrant = &grant{role: roleViewer, anon: true}

// expired reports whether the identity's token has expired at now.
func (id *identity) expired(now time.Time) bool {
	return id.exp != 0 && now.UnixNano() >= id.exp
}

// knownRoles maps the roles a token may claim to their constants (no role
// is a user).
var knownRoles = map[string]roleID{"": roleUser, "user": roleUser, "mod": roleMod, "admin": roleAdmin, "bot": roleBot}

// claims are the JWT claims roomcast reads.
type claims struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Rooms  []string `json:"rooms"`
	Badges []string `json:"badges"`
	jwt.RegisteredClaims
}

type authenticator struct {
	cfg    *Config
	parser *jwt.Parser
	// The keys, nil when not configured. The slices are boxed once, for
	// key: a slice put in an interface is an allocation.
	hs    any            // HS256: the secret, a []byte
	rsa   *rsa.PublicKey // RS256
	ed    any            // EdDSA: an ed25519.PublicKey
	cache *tokenCache    // verified tokens (tokencache.go)
	slab  identitySlab   // where verify makes identities
}

var (
	errNoToken    = errors.New("a token is required")
	errNoVerifier = errors.New("this relay has no key to verify tokens")
	errNoSubject  = errors.New("token has no sub")
	errExpired    = errors.New("invalid token: token is expired")
)

// newAuthenticator accepts exactly the algorithms of the keys configured:
// HS256 with a secret, RS256 with an RSA public key, EdDSA with an Ed25519
// one. Any other alg, "none" included, is refused by the parser; and each
// alg is checked only against its own kind of key, so a token signed with
// HS256 using the public key as secret cannot pass (algorithm confusion).
func newAuthenticator(cfg *Config) (*authenticator, error) {
	a := &authenticator{cfg: cfg, cache: newTokenCache()}
	var algs []string
	if cfg.JWTSecret != "" {
		a.hs = []byte(cfg.JWTSecret)
		algs = append(algs, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.JWTPublicKey) > 0 {
		if k, err := jwt.ParseRSAPublicKeyFromPEM(cfg.JWTPublicKey); err == nil {
			a.rsa = k
			algs = append(algs, jwt.SigningMethodRS256.Alg())
		} else if k, err := jwt.ParseEdPublicKeyFromPEM(cfg.JWTPublicKey); err == nil {
			a.ed = k.(ed25519.PublicKey)
			algs = append(algs, jwt.SigningMethodEdDSA.Alg())
		} else {
			return nil, fmt.Errorf("cannot use JWT public key: not an RSA or Ed25519 public key in PEM: %w", err)
		}
	}
	a.parser = jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithLeeway(tokenLeeway), jwt.WithIssuedAt())
	return a, nil
}

// key returns the key of the token's algorithm (the parser has checked
// that the algorithm is one of those configured).
func (a *authenticator) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return a.hs, nil
	case jwt.SigningMethodRS256.Alg():
		return a.rsa, nil
	case jwt.SigningMethodEdDSA.Alg():
		return a.ed, nil
	}
	return nil, fmt.Errorf("unexpected alg %q", t.Method.Alg())
}

// identify checks a token ("" for none) and returns who it names: for a
// token, an identity shared with the token cache and other connections
// (never change it); for none, a new anonymous identity, to which the
// caller gives its user id. The error text is the short reason sent with HTTP 401. A token
// verified before and not expired is answered from the cache. Called on
// any loop.
func (a *authenticator) identify(token string) (*identity, error) {
	if token == "" {
		if a.cfg.NoAnonymous {
			return nil, errNoToken
		}
		return &identity{grant: anonGrant}, nil
	}
	if a.hs == nil && a.rsa == nil && a.ed == nil {
		return nil, errNoVerifier
	}
	if id := a.cache.get(token, time.Now()); id != nil {
		return id, nil
	}
	id, err := a.verify(token)
	if err == nil {
		a.cache.put(token, id)
	}
	return id, err
}

// verify parses and checks a token.
func (a *authenticator) verify(token string) (*identity, error) {
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, a.key)
	if err != nil {
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	if c.ExpiresAt != nil && !time.Now().Before(c.ExpiresAt.Time) {
		return nil, errExpired // the leeway is for nbf and iat only
	}
	if c.Subject == "" {
		return nil, errNoSubject
	}
	// The role kept is a byte, not the parsed string: that one is a few
	// bytes sharing a 16-byte allocation with the parse's garbage (Go's
	// tiny allocator), which it would keep alive with every identity.
	role, ok := knownRoles[c.Role]
	if !ok {
		return nil, fmt.Errorf("invalid token: unknown role %q", c.Role)
	}
	t, s := a.slab.take(c.Subject, c.Name)
	t.g = grant{name: s[len(c.Subject):], role: role}
	if c.Badges != nil || c.Rooms != nil {
		t.g.lists = &grantLists{badges: c.Badges, rooms: c.Rooms}
	}
	if c.ExpiresAt != nil {
		t.g.exp = expNanos(c.ExpiresAt.Time)
	}
	t.identity = identity{user: s[:len(c.Subject)], grant: &t.g}
	return &t.identity, nil
}

// tokenIdentity is a verified token's identity with its grant, allocated
// together (verify).
type tokenIdentity struct {
	identity
	g grant
}

// Verified identities are carved from chunks (identitySlab), away from the
// parse's garbage: a parse makes about 45 objects, and a long-lived object
// made among them keeps its whole span in use after they are collected.
const (
	slabIdentities = 64   // tokenIdentity per chunk (4 KiB)
	slabBytes      = 2048 // bytes of user ids and names per chunk
	slabMaxString  = 256  // a longer user id and name get an allocation of their own
)

// identitySlab hands out the long-lived parts of verified tokens. Any
// loop calls take; mu guards everything. A chunk stays in memory while
// any identity or string carved from it is used (the token cache holds
// the recent ones anyway).
type identitySlab struct {
	mu  sync.Mutex
	ids []tokenIdentity // the current chunk's unused identities
	str strings.Builder // the current chunk of strings; bytes written are never changed
}

// take returns a new zero tokenIdentity and one string holding user then
// name.
func (s *identitySlab) take(user, name string) (*tokenIdentity, string) {
	n := len(user) + len(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		s.ids = make([]tokenIdentity, slabIdentities)
	}
	t := &s.ids[0]
	s.ids = s.ids[1:]
	if n > slabMaxString {
		return t, user + name
	}
	if s.str.Cap()-s.str.Len() < n {
		s.str = strings.Builder{} // the old chunk lives on in its strings
		s.str.Grow(slabBytes)
	}
	start := s.str.Len()
	s.str.WriteString(user)
	s.str.WriteString(name)
	return t, s.str.String()[start:]
}

// expNanos returns an expiry (after now: verify refused the others) in Unix
// nanoseconds; one past 2262, where those overflow, is kept as never.
func expNanos(t time.Time) int64 {
	if t.Unix() >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return t.UnixNano()
}
