package relay

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles a token may carry. Anonymous viewers have roleViewer.
const (
	roleUser   = "user"
	roleMod    = "mod"
	roleAdmin  = "admin"
	roleBot    = "bot"
	roleViewer = "viewer"
)

// tokenLeeway is the clock skew allowed on exp, nbf and iat.
const tokenLeeway = 30 * time.Second

// identity is who a connection is. Set by the upgrade, then read-only.
type identity struct {
	user   string
	name   string
	role   string
	anon   bool
	badges []string
}

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
	key    []byte
}

var (
	errNoToken    = errors.New("a token is required")
	errNoVerifier = errors.New("this relay has no key to verify tokens")
	errNoSubject  = errors.New("token has no sub")
)

func newAuthenticator(cfg *Config) (*authenticator, error) {
	a := &authenticator{cfg: cfg, key: []byte(cfg.JWTSecret), parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithIssuedAt(),
	)}
	return a, nil
}

// identify checks a token ("" for none) and returns who it names; the
// caller gives an anonymous viewer its user id. The error text is the short
// reason sent with HTTP 401.
func (a *authenticator) identify(token string) (*identity, error) {
	if token == "" {
		if a.cfg.NoAnonymous {
			return nil, errNoToken
		}
		return &identity{role: roleViewer, anon: true}, nil
	}
	if len(a.key) == 0 {
		return nil, errNoVerifier
	}
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.key, nil })
	if err != nil {
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	if c.Subject == "" {
		return nil, errNoSubject
	}
	switch c.Role {
	case "":
		c.Role = roleUser
	case roleUser, roleMod, roleAdmin, roleBot:
	default:
		return nil, fmt.Errorf("invalid token: unknown role %q", c.Role)
	}
	return &identity{user: c.Subject, name: c.Name, role: c.Role, badges: c.Badges}, nil
}
