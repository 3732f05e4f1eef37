package relay_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
)

// This file tests the relay's policies against real relays: token
// algorithms and claims, per-role and per-namespace limits, join rate,
// abuse closes, per-IP limits and the Origin allow-list.

func polInt(n int) *int    { return &n }
func polBool(b bool) *bool { return &b }

// polKeys are generated once: RSA key generation is slow under -race.
var polKeys = sync.OnceValue(func() (k struct {
	rsa, rsaOther *rsa.PrivateKey
	ed, edOther   ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	if _, k.edOther, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// polPEM encodes a public key as a PKIX "PUBLIC KEY" PEM block.
func polPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// polSign signs claims with method and key.
func polSign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// polToken is an HS256 token of the test secret with any claims.
func polToken(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	return polSign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

// polUpgrade upgrades with token in the query (none if empty) and
// returns the HTTP status and body.
func polUpgrade(t *testing.T, srv *relay.Server, tok string, headers ...string) (int, string) {
	t.Helper()
	path := "/ws"
	if tok != "" {
		path += "?token=" + tok
	}
	return rawUpgrade(t, srv, upgradeRequest(path, headers...))
}

// polReply sends v, which must have a ref, and returns the relay's answer to
// it (skipping batches, presence and answers to other refs).
func (c *client) polReply(v map[string]any) frame {
	c.t.Helper()
	c.send(v)
	ref := toInt(v["ref"])
	for {
		f := c.next()
		switch f.str("t") {
		case "ack", "joined", "left", "error", "pong":
			if f.num("ref") == ref {
				return f
			}
		}
	}
}

// polSendTo sends body to room with ref and returns the ack or error.
func (c *client) polSendTo(room, body string, ref int) frame {
	c.t.Helper()
	return c.polReply(map[string]any{"t": "send", "room": room, "body": body, "ref": ref})
}

// polWantCode checks that f is an error of code.
func polWantCode(t testing.TB, what string, f frame, code string) {
	t.Helper()
	if f.str("t") != "error" || f.str("code") != code {
		t.Fatalf("%s: got %v, want error %s", what, f, code)
	}
}

// polWantAck checks that f is an ack.
func polWantAck(t testing.TB, what string, f frame) {
	t.Helper()
	if f.str("t") != "ack" {
		t.Fatalf("%s: got %v, want an ack", what, f)
	}
}

// polMetrics polls the relay's metrics until each key has its value:
// some are counted just after the answer the test has already read.
func polMetrics(t testing.TB, srv *relay.Server, want map[string]float64) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, bad := metricsOf(t, srv), []string(nil)
		for k, v := range want {
			if m[k] != v {
				bad = append(bad, fmt.Sprintf("%s = %v, want %v", k, m[k], v))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(end) {
			slices.Sort(bad)
			t.Fatalf("metrics: %s", strings.Join(bad, "; "))
		}
	}
}

func TestPolicyJWTPublicKeys(t *testing.T) {
	keys := polKeys()
	now := time.Now()
	rsaPEM := polPEM(t, keys.rsa.Public())
	edPEM := polPEM(t, keys.ed.Public())
	rs := func(c jwt.MapClaims) string { return polSign(t, jwt.SigningMethodRS256, keys.rsa, c) }
	ed := func(c jwt.MapClaims) string { return polSign(t, jwt.SigningMethodEdDSA, keys.ed, c) }
	none := polSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "a"})
	hs := func(secret []byte) string {
		return polSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a"})
	}

	type tokenCase struct {
		name string
		tok  string
		ok   bool
	}
	run := func(t *testing.T, srv *relay.Server, cases []tokenCase) {
		t.Helper()
		for _, c := range cases {
			code, body := polUpgrade(t, srv, c.tok)
			switch {
			case c.ok && code != 101:
				t.Errorf("%s: refused with %d %q", c.name, code, body)
			case !c.ok && code != 401:
				t.Errorf("%s: got %d %q, want 401", c.name, code, body)
			case !c.ok && body == "":
				t.Errorf("%s: 401 without a reason", c.name)
			}
		}
	}

	t.Run("RS256", func(t *testing.T) {
		// Only the public key: HS256 is not accepted at all.
		srv := startRelay(t, func(c *relay.Config) { c.JWTSecret = ""; c.JWTPublicKey = rsaPEM })
		c := dial(t, srv, dialOpts{token: rs(jwt.MapClaims{"sub": "rita", "name": "Rita", "role": "mod", "exp": now.Add(time.Hour).Unix()})})
		if h := c.hello; h.str("user") != "rita" || h.str("name") != "Rita" || h.str("role") != "mod" || h["anon"] != false {
			t.Fatalf("hello = %v", h)
		}
		run(t, srv, []tokenCase{
			{"no exp", rs(jwt.MapClaims{"sub": "a"}), true},
			{"nbf within leeway", rs(jwt.MapClaims{"sub": "a", "nbf": now.Add(10 * time.Second).Unix()}), true},
			{"HS256 keyed with the public key PEM", hs(rsaPEM), false},
			{"HS256 keyed with the old secret", hs([]byte(testSecret)), false},
			{"signed by another RSA key", polSign(t, jwt.SigningMethodRS256, keys.rsaOther, jwt.MapClaims{"sub": "a"}), false},
			{"RS512 by the right key", polSign(t, jwt.SigningMethodRS512, keys.rsa, jwt.MapClaims{"sub": "a"}), false},
			{"PS256 by the right key", polSign(t, jwt.SigningMethodPS256, keys.rsa, jwt.MapClaims{"sub": "a"}), false},
			{"EdDSA", ed(jwt.MapClaims{"sub": "a"}), false},
			{"alg none", none, false},
			{"expired", rs(jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Hour).Unix()}), false},
			{"nbf beyond leeway", rs(jwt.MapClaims{"sub": "a", "nbf": now.Add(5 * time.Minute).Unix()}), false},
			{"iat beyond leeway", rs(jwt.MapClaims{"sub": "a", "iat": now.Add(5 * time.Minute).Unix()}), false},
		})
		// In the Authorization header too.
		code, _ := rawUpgrade(t, srv, upgradeRequest("/ws", "Authorization: Bearer "+rs(jwt.MapClaims{"sub": "a"})))
		if code != 101 {
			t.Fatalf("RS256 in Authorization: %d", code)
		}
	})

	t.Run("RS256 and HS256", func(t *testing.T) {
		// Both kinds of key: each alg is checked against its own key only.
		srv := startRelay(t, func(c *relay.Config) { c.JWTPublicKey = rsaPEM })
		run(t, srv, []tokenCase{
			{"RS256", rs(jwt.MapClaims{"sub": "a"}), true},
			{"HS256", hs([]byte(testSecret)), true},
			{"HS256 keyed with the public key PEM", hs(rsaPEM), false},
			{"HS256 keyed with the public key DER", hs(func() []byte { b, _ := pem.Decode(rsaPEM); return b.Bytes }()), false},
			{"alg none", none, false},
		})
	})

	t.Run("EdDSA", func(t *testing.T) {
		srv := startRelay(t, func(c *relay.Config) { c.JWTSecret = ""; c.JWTPublicKey = edPEM })
		c := dial(t, srv, dialOpts{token: ed(jwt.MapClaims{"sub": "eve", "name": "Eve", "role": "bot"}), json: true})
		if h := c.hello; h.str("user") != "eve" || h.str("name") != "Eve" || h.str("role") != "bot" {
			t.Fatalf("hello = %v", h)
		}
		run(t, srv, []tokenCase{
			{"no exp", ed(jwt.MapClaims{"sub": "a"}), true},
			{"HS256 keyed with the public key PEM", hs(edPEM), false},
			{"HS256 keyed with the raw public key", hs(keys.ed.Public().(ed25519.PublicKey)), false},
			{"signed by another Ed25519 key", polSign(t, jwt.SigningMethodEdDSA, keys.edOther, jwt.MapClaims{"sub": "a"}), false},
			{"RS256", rs(jwt.MapClaims{"sub": "a"}), false},
			{"alg none", none, false},
			{"expired", ed(jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Hour).Unix()}), false},
			{"nbf beyond leeway", ed(jwt.MapClaims{"sub": "a", "nbf": now.Add(5 * time.Minute).Unix()}), false},
		})
	})

	t.Run("HS256 only", func(t *testing.T) {
		srv := startRelay(t, nil)
		run(t, srv, []tokenCase{
			{"HS256 without exp", hs([]byte(testSecret)), true},
			{"HS256 nbf within leeway", polToken(t, jwt.MapClaims{"sub": "a", "nbf": now.Add(10 * time.Second).Unix()}), true},
			{"RS256", rs(jwt.MapClaims{"sub": "a"}), false},
			{"EdDSA", ed(jwt.MapClaims{"sub": "a"}), false},
			{"HS256 expired", polToken(t, jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Hour).Unix()}), false},
			{"HS256 nbf beyond leeway", polToken(t, jwt.MapClaims{"sub": "a", "nbf": now.Add(5 * time.Minute).Unix()}), false},
		})
		polMetrics(t, srv, map[string]float64{`roomcast_handshake_failures_total{reason="auth"}`: 4})
	})

	t.Run("bad public key", func(t *testing.T) {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range [][]byte{[]byte("not a PEM"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}),
			polPEM(t, ec.Public())} {
			if _, err := relay.New(relay.Config{JWTPublicKey: k}); err == nil {
				t.Errorf("relay.New accepted JWTPublicKey %q", k)
			}
		}
	})
}

func TestPolicyRoomsClaim(t *testing.T) {
	srv := startRelay(t, nil)
	alice := dial(t, srv, dialOpts{token: polToken(t, jwt.MapClaims{"sub": "alice", "rooms": []string{"lobby:*", "dm:alice"}})})
	alice.join("lobby:eu-1", 1)
	alice.join("dm:alice", 2)
	for i, room := range []string{"stream:x", "dm:bob", "dm:alice2", "lobby"} {
		f := alice.polReply(map[string]any{"t": "join", "room": room, "ref": 10 + i})
		polWantCode(t, "join "+room, f, "forbidden")
		if f.str("room") != room || f.str("message") == "" {
			t.Errorf("join %s: error = %v", room, f)
		}
	}
	// The user can still use the rooms it joined.
	polWantAck(t, "send in lobby:eu-1", alice.polSendTo("lobby:eu-1", "hi", 20))

	none := dial(t, srv, dialOpts{token: polToken(t, jwt.MapClaims{"sub": "nobody", "rooms": []string{}})})
	for i, room := range []string{"lobby:eu-1", "dm:nobody", "x"} {
		polWantCode(t, "empty rooms claim, join "+room, none.polReply(map[string]any{"t": "join", "room": room, "ref": 1 + i}), "forbidden")
	}
	// No claim: every room.
	free := dial(t, srv, dialOpts{token: token(t, "free", "", "")})
	free.join("stream:x", 1)
	free.join("dm:bob", 2)
}

func TestPolicyBadges(t *testing.T) {
	srv := startRelay(t, nil)
	alice := dial(t, srv, dialOpts{token: polToken(t, jwt.MapClaims{"sub": "alice", "name": "Alice", "badges": []string{"sub", "vip"}})})
	plain := dial(t, srv, dialOpts{token: token(t, "pete", "Pete", "")})
	bob := dial(t, srv, dialOpts{token: token(t, "bob", "Bob", ""), json: true})
	for _, c := range []*client{alice, plain, bob} {
		c.join("chat", 1)
	}
	// The badges field of a send frame is ignored: the token decides.
	alice.send(map[string]any{"t": "send", "room": "chat", "body": "one", "badges": []string{"admin"}})
	plain.send(map[string]any{"t": "send", "room": "chat", "body": "two", "badges": []string{"admin"}})
	want := map[string][]string{"one": {"sub", "vip"}, "two": nil}
	for len(want) > 0 {
		for _, m := range bob.expect("batch").list("msgs") {
			msg := m.(map[string]any)
			body, _ := msg["body"].(string)
			w, ok := want[body]
			if !ok {
				t.Fatalf("unexpected message %v", msg)
			}
			var got []string
			for _, b := range frame(msg).list("badges") {
				got = append(got, fmt.Sprint(b))
			}
			if !slices.Equal(got, w) {
				t.Fatalf("message %q carries badges %v, want %v", body, got, w)
			}
			delete(want, body)
		}
	}
}

func TestPolicyRoleLimits(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.SendRate = 0.01; c.SendBurst = 2 })
	userTok := token(t, "ursula", "Ursula", "")
	user := dial(t, srv, dialOpts{token: userTok})
	user2 := dial(t, srv, dialOpts{token: userTok, json: true}) // the same user
	mod := dial(t, srv, dialOpts{token: token(t, "mo", "Mo", "mod")})
	other := dial(t, srv, dialOpts{token: token(t, "otto", "", "")})

	lim := func(c *client) (float64, int64) {
		l := frame(c.hello["limits"].(map[string]any))
		r, _ := l["rate"].(float64)
		return r, l.num("burst")
	}
	if r, b := lim(user); r != 0.01 || b != 2 {
		t.Errorf("user hello limits = %v/%v, want 0.01/2", r, b)
	}
	if r, b := lim(mod); math.Abs(r-100.0/30) > 1e-9 || b != 100 {
		t.Errorf("mod hello limits = %v/%v, want 3.333/100", r, b)
	}
	if a := dial(t, srv, dialOpts{}); toInt(a.hello["limits"].(map[string]any)["burst"]) != 0 {
		t.Errorf("anonymous hello limits = %v, want no sending", a.hello["limits"])
	}

	for _, c := range []*client{user, user2, mod, other} {
		c.join("r", 1)
	}
	polWantAck(t, "user send 1", user.polSendTo("r", "1", 10))
	polWantAck(t, "user send 2 (other connection)", user2.polSendTo("r", "2", 11))
	for i, c := range []*client{user, user2} {
		f := c.polSendTo("r", "3", 12+i)
		polWantCode(t, "user send 3", f, "rate_limited")
		if ms := f.num("retry_ms"); ms <= 0 || ms > 100000 {
			t.Fatalf("retry_ms = %d, want in (0, 100000] at 0.01/s", ms)
		}
	}
	for i := 0; i < 10; i++ {
		polWantAck(t, fmt.Sprint("mod send ", i+1), mod.polSendTo("r", "m", 20+i))
	}
	polWantAck(t, "another user", other.polSendTo("r", "o", 40))
}

func TestPolicyNamespaceSlowMode(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"stream": {SlowMode: polInt(2)}}
	})
	user := dial(t, srv, dialOpts{token: token(t, "ulf", "", "")})
	mod := dial(t, srv, dialOpts{token: token(t, "mia", "", "mod")})
	for _, room := range []string{"stream:x", "stream", "lobby:x", "streamer:x"} {
		user.join(room, 1)
		mod.join(room, 1)
	}
	polWantAck(t, "first send", user.polSendTo("stream:x", "1", 2))
	start := time.Now()
	f := user.polSendTo("stream:x", "2", 3)
	polWantCode(t, "second send within 2s", f, "slow_mode")
	if ms := f.num("retry_ms"); ms <= 0 || ms > 2000 || time.Duration(ms)*time.Millisecond < 2*time.Second-time.Since(start)-100*time.Millisecond {
		t.Fatalf("retry_ms = %d, want in (0, 2000] and about 2s", ms)
	}
	if f.str("room") != "stream:x" {
		t.Errorf("slow_mode error room = %q", f.str("room"))
	}
	// Slow mode is per room: another room of the namespace has its own.
	polWantAck(t, "first send in room stream", user.polSendTo("stream", "1", 4))
	polWantCode(t, "second send in room stream", user.polSendTo("stream", "2", 5), "slow_mode")
	// A mod is exempt.
	for i := 0; i < 3; i++ {
		polWantAck(t, "mod send", mod.polSendTo("stream:x", "m", 10+i))
	}
	// Other namespaces are unaffected.
	for _, room := range []string{"lobby:x", "streamer:x"} {
		for i := 0; i < 3; i++ {
			polWantAck(t, "user send in "+room, user.polSendTo(room, "u", 20+i))
		}
	}
	polMetrics(t, srv, map[string]float64{`roomcast_ratelimit_hits_total{kind="slow_mode"}`: 2, `roomcast_messages_rejected_total{code="slow_mode"}`: 2})
}

func TestPolicyNamespaceAnonymousRead(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"private": {AnonymousRead: polBool(false)}}
	})
	anon := dial(t, srv, dialOpts{})
	polWantCode(t, "anonymous join private:x", anon.polReply(map[string]any{"t": "join", "room": "private:x", "ref": 1}), "forbidden")
	anon.join("lobby:x", 2)
	user := dial(t, srv, dialOpts{token: token(t, "u", "", "")})
	user.join("private:x", 1)
}

func TestPolicyNamespaceMaxMembers(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"small": {MaxMembers: polInt(2)}}
	})
	a := dial(t, srv, dialOpts{token: token(t, "a", "", "")})
	b := dial(t, srv, dialOpts{})
	c := dial(t, srv, dialOpts{token: token(t, "c", "", "")})
	a.join("small:x", 1)
	b.join("small:x", 1) // an anonymous viewer counts too
	polWantCode(t, "third join", c.polReply(map[string]any{"t": "join", "room": "small:x", "ref": 1}), "room_full")
	c.join("small:y", 2)
	c.join("big:x", 3)
	// A place frees up when a member leaves.
	if f := b.polReply(map[string]any{"t": "leave", "room": "small:x", "ref": 2}); f.str("t") != "left" {
		t.Fatalf("leave: %v", f)
	}
	c.join("small:x", 4)
}

func TestPolicyNamespaceMemberList(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"big": {MemberList: polBool(false)}}
		c.Hub.PresenceInterval = 50 * time.Millisecond
	})
	a := dial(t, srv, dialOpts{token: token(t, "a", "A", "")})
	b := dial(t, srv, dialOpts{token: token(t, "b", "B", "")})
	a.join("big:x", 1)
	j := b.join("big:x", 1)
	if _, ok := j["members"]; ok || j.num("count") != 2 {
		t.Fatalf("joined = %v, want count 2 and no members", j)
	}
	// The others hear of the join as a count only. a's own join made the
	// count dirty too: a tick between a's join and b's tells a count 1
	// first (a loaded machine), so read counts until 2, none with joins.
	var p frame
	for p.num("count") != 2 {
		p = a.expect("presence")
		if _, ok := p["joins"]; ok || p.num("count") < 1 || p.num("count") > 2 {
			t.Fatalf("presence = %v, want count 2 (or a count 1 before it) and no joins", p)
		}
	}
	b.polReply(map[string]any{"t": "leave", "room": "big:x", "ref": 2})
	for p.num("count") != 1 {
		p = a.expect("presence")
		if _, ok := p["leaves"]; ok {
			t.Fatalf("presence = %v, want no leaves", p)
		}
	}
	// The default namespace lists members.
	a.join("lobby:x", 2)
	if j := b.join("lobby:x", 3); len(j.list("members")) != 2 {
		t.Fatalf("lobby joined = %v, want 2 members", j)
	}
	if p := a.expect("presence"); len(p.list("joins")) != 1 {
		t.Fatalf("lobby presence = %v, want the join", p)
	}
}

func TestPolicyNamespaceHistory(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"short": {History: polInt(3)}}
	})
	a := dial(t, srv, dialOpts{token: token(t, "a", "", "")})
	for _, room := range []string{"short:x", "long:x"} {
		a.join(room, 1)
		for i := 1; i <= 5; i++ {
			a.send(map[string]any{"t": "send", "room": room, "body": fmt.Sprint(i)})
		}
		// Wait until all five are dispatched, so that history has them.
		for seen := int64(0); seen < 5; {
			for _, m := range a.expect("batch").list("msgs") {
				seen = toInt(m.(map[string]any)["seq"])
			}
		}
	}
	b := dial(t, srv, dialOpts{token: token(t, "b", "", ""), json: true})
	for room, want := range map[string][]int64{"short:x": {3, 4, 5}, "long:x": {1, 2, 3, 4, 5}} {
		j := b.polReply(map[string]any{"t": "join", "room": room, "history": 50, "ref": 1})
		var got []int64
		for _, m := range j.list("history") {
			got = append(got, toInt(m.(map[string]any)["seq"]))
		}
		if j.str("t") != "joined" || !slices.Equal(got, want) {
			t.Errorf("%s: joined with history 50 = %v, want seqs %v", room, j, want)
		}
	}
}

func TestPolicyNamespaceRateLimits(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"tight": {RateLimits: map[string]relay.RateLimit{"user": {Rate: 0.01, Burst: 1}}}}
	})
	user := dial(t, srv, dialOpts{token: token(t, "u", "", "")})
	mod := dial(t, srv, dialOpts{token: token(t, "m", "", "mod")})
	// hello tells the limits of the default namespace.
	if b := toInt(user.hello["limits"].(map[string]any)["burst"]); b != 1000 {
		t.Errorf("hello burst = %d, want the default 1000", b)
	}
	for _, room := range []string{"tight:x", "lobby:x"} {
		user.join(room, 1)
		mod.join(room, 1)
	}
	polWantAck(t, "first send in tight", user.polSendTo("tight:x", "1", 2))
	f := user.polSendTo("tight:x", "2", 3)
	polWantCode(t, "second send in tight", f, "rate_limited")
	if ms := f.num("retry_ms"); ms <= 0 || ms > 100000 {
		t.Errorf("retry_ms = %d", ms)
	}
	for i := 0; i < 5; i++ {
		polWantAck(t, "send in lobby", user.polSendTo("lobby:x", "l", 10+i))
		polWantAck(t, "mod send in tight", mod.polSendTo("tight:x", "m", 20+i))
	}
}

// TestPolicyNamespaceDefaults checks how a listed namespace inherits the
// fields it leaves nil from "default".
func TestPolicyNamespaceDefaults(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{
			"default": {MaxMembers: polInt(1), AnonymousRead: polBool(false)},
			"hist":    {History: polInt(5)},                                  // inherits max_members 1
			"open":    {MaxMembers: polInt(0), AnonymousRead: polBool(true)}, // overrides both
		}
	})
	a := dial(t, srv, dialOpts{token: token(t, "a", "", "")})
	b := dial(t, srv, dialOpts{token: token(t, "b", "", "")})
	anon := dial(t, srv, dialOpts{})
	for i, room := range []string{"any:x", "hist:x"} {
		a.join(room, 1+i)
		polWantCode(t, "second member of "+room, b.polReply(map[string]any{"t": "join", "room": room, "ref": 1}), "room_full")
		polWantCode(t, "anonymous in "+room, anon.polReply(map[string]any{"t": "join", "room": room + "2", "ref": 1}), "forbidden")
	}
	a.join("open:x", 5)
	b.join("open:x", 5)
	anon.join("open:x", 5)
}

// TestPolicyNamespaceDefaultRateLimits: rate limits of "default" apply
// to every namespace that sets none, and hello announces them.
func TestPolicyNamespaceDefaultRateLimits(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{
			"default": {RateLimits: map[string]relay.RateLimit{"user": {Rate: 0.01, Burst: 3}}},
			"hist":    {History: polInt(5)},
		}
	})
	u := dial(t, srv, dialOpts{token: token(t, "u", "", ""), json: true})
	l := frame(u.hello["limits"].(map[string]any))
	if l["rate"] != 0.01 || l.num("burst") != 3 {
		t.Fatalf("hello limits = %v, want rate 0.01 burst 3", l)
	}
	u.join("any:x", 1)
	u.join("hist:x", 2)
	// One bucket for both namespaces: 3 sends in all.
	polWantAck(t, "send 1", u.polSendTo("any:x", "1", 3))
	polWantAck(t, "send 2", u.polSendTo("hist:x", "2", 4))
	polWantAck(t, "send 3", u.polSendTo("any:x", "3", 5))
	polWantCode(t, "send 4", u.polSendTo("hist:x", "4", 6), "rate_limited")
}

func TestPolicyNamespaceInvalid(t *testing.T) {
	cases := map[string]map[string]relay.Namespace{
		"negative slow_mode":     {"stream": {SlowMode: polInt(-1)}},
		"negative max_members":   {"stream": {MaxMembers: polInt(-2)}},
		"default negative slow":  {"default": {SlowMode: polInt(-1)}},
		"unknown role":           {"x": {RateLimits: map[string]relay.RateLimit{"god": {Rate: 1, Burst: 1}}}},
		"viewer role":            {"x": {RateLimits: map[string]relay.RateLimit{"viewer": {Rate: 1, Burst: 1}}}},
		"empty role":             {"x": {RateLimits: map[string]relay.RateLimit{"": {Rate: 1, Burst: 1}}}},
		"zero rate":              {"x": {RateLimits: map[string]relay.RateLimit{"user": {Rate: 0, Burst: 1}}}},
		"zero burst":             {"x": {RateLimits: map[string]relay.RateLimit{"user": {Rate: 1, Burst: 0}}}},
		"default unknown role":   {"default": {RateLimits: map[string]relay.RateLimit{"guest": {Rate: 1, Burst: 1}}}},
		"negative rate of a mod": {"x": {RateLimits: map[string]relay.RateLimit{"mod": {Rate: -1, Burst: 5}}}},
	}
	for name, ns := range cases {
		if _, err := relay.New(relay.Config{Namespaces: ns}); err == nil {
			t.Errorf("%s: relay.New accepted %+v", name, ns)
		}
	}
	if _, err := relay.New(relay.Config{IPExempt: []string{"10.0.0.0/8", "loopback"}}); err == nil {
		t.Error("relay.New accepted IPExempt \"loopback\"")
	}
}

func TestPolicyJoinRate(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.JoinRate = relay.RateLimit{Rate: 0.001, Burst: 2} })
	c := dial(t, srv, dialOpts{token: token(t, "j", "", "")})
	c.join("a", 1)
	c.join("b", 2)
	f := c.polReply(map[string]any{"t": "join", "room": "c", "ref": 3})
	polWantCode(t, "third join", f, "rate_limited")
	if ms := f.num("retry_ms"); ms <= 0 || ms > 1000000 {
		t.Fatalf("retry_ms = %d, want in (0, 1e6]", ms)
	}
	// Per connection: another connection of the same user joins.
	c2 := dial(t, srv, dialOpts{token: token(t, "j", "", "")})
	c2.join("c", 1)
	polMetrics(t, srv, map[string]float64{`roomcast_ratelimit_hits_total{kind="join"}`: 1, `roomcast_messages_rejected_total{code="rate_limited"}`: 1})
}

func TestPolicyAbuseStrikes(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.AbuseStrikes = 3
		c.Namespaces = map[string]relay.Namespace{"tight": {RateLimits: map[string]relay.RateLimit{"user": {Rate: 0.001, Burst: 1}}}}
	})
	c := dial(t, srv, dialOpts{token: token(t, "s", "", "")})
	c.join("tight:x", 1)
	c.join("free", 2)
	polWantAck(t, "first send", c.polSendTo("tight:x", "x", 3))
	refuse := func(ref int) {
		t.Helper()
		polWantCode(t, fmt.Sprint("send ", ref), c.polSendTo("tight:x", "x", ref), "rate_limited")
	}
	refuse(4)
	refuse(5)
	refuse(6)
	// An accepted send ends the row.
	polWantAck(t, "send elsewhere", c.polSendTo("free", "x", 7))
	refuse(8)
	refuse(9)
	refuse(10)
	c.send(map[string]any{"t": "send", "room": "tight:x", "body": "x", "ref": 11})
	c.expectClose(1008)
	polMetrics(t, srv, map[string]float64{`roomcast_disconnects_total{code="1008"}`: 1, `roomcast_ratelimit_hits_total{kind="send"}`: 7,
		`roomcast_messages_rejected_total{code="rate_limited"}`: 6})
}

func TestPolicyIPMaxConns(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IPExempt = []string{}; c.IPMaxConns = 2 })
	a := dial(t, srv, dialOpts{})
	dial(t, srv, dialOpts{token: token(t, "b", "", "")})
	code, body := polUpgrade(t, srv, "")
	if code != 429 || !strings.Contains(body, "too many connections") {
		t.Fatalf("third connection: %d %q, want 429", code, body)
	}
	if _, err := tryDial(t, srv, dialOpts{}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("third connection by a client: %v, want a 429", err)
	}
	a.conn.Close()
	refused := 2
	eventually(t, "a free slot after a close", func() bool {
		code, _ := polUpgrade(t, srv, "")
		if code == 429 {
			refused++
		}
		return code == 101
	})
	polMetrics(t, srv, map[string]float64{`roomcast_handshake_failures_total{reason="ip_limit"}`: float64(refused),
		`roomcast_ratelimit_hits_total{kind="ip"}`: float64(refused)})
}

func TestPolicyIPConnRate(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IPExempt = []string{}; c.IPConnRate = relay.RateLimit{Rate: 0.001, Burst: 3} })
	for i := 0; i < 3; i++ {
		if code, body := polUpgrade(t, srv, ""); code != 101 {
			t.Fatalf("connection %d: %d %q", i+1, code, body)
		}
	}
	code, body := polUpgrade(t, srv, "")
	if code != 429 || !strings.Contains(body, "new connections") {
		t.Fatalf("fourth quick connection: %d %q, want 429", code, body)
	}
	polMetrics(t, srv, map[string]float64{`roomcast_handshake_failures_total{reason="ip_limit"}`: 1, `roomcast_ratelimit_hits_total{kind="ip"}`: 1})
}

func TestPolicyIPExemptLoopback(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IPMaxConns = 2; c.IPConnRate = relay.RateLimit{Rate: 0.001, Burst: 3} })
	for i := 0; i < 50; i++ {
		dial(t, srv, dialOpts{}) // all kept open
	}
	polMetrics(t, srv, map[string]float64{`roomcast_handshake_failures_total{reason="ip_limit"}`: 0, `roomcast_handshakes_total`: 50})
}

func TestPolicyOrigin(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.AllowedOrigins = []string{"https://game.example"} })
	f := func(want int, headers ...string) {
		t.Helper()
		if code, body := polUpgrade(t, srv, "", headers...); code != want {
			t.Errorf("%v: got %d %q, want %d", headers, code, body, want)
		}
	}
	f(403, "Origin: https://evil.example")
	f(403, "Origin: https://game.example.evil.example")
	f(403, "Origin: http://game.example")
	f(101, "Origin: https://game.example")
	f(101)
	polMetrics(t, srv, map[string]float64{`roomcast_handshake_failures_total{reason="origin"}`: 3})
	// Without a list, any Origin.
	open := startRelay(t, nil)
	if code, _ := polUpgrade(t, open, "", "Origin: https://evil.example"); code != 101 {
		t.Errorf("no allow-list: %d", code)
	}
}

func TestPolicyNoAnonymous(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.NoAnonymous = true })
	if code, body := polUpgrade(t, srv, ""); code != 401 || body == "" {
		t.Fatalf("no token: %d %q, want 401", code, body)
	}
	c := dial(t, srv, dialOpts{token: token(t, "n", "N", "")})
	if c.hello.str("user") != "n" {
		t.Fatalf("hello = %v", c.hello)
	}
}

// TestPolicyIPConnRateCountsRefusedUpgrades: IPConnRate limits new
// connections per IP; connections whose upgrade is refused (a bad token
// here) are new connections too, and they cost the relay a signature check.
func TestPolicyIPConnRateCountsRefusedUpgrades(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IPExempt = []string{}; c.IPConnRate = relay.RateLimit{Rate: 0.001, Burst: 3} })
	bad := polSign(t, jwt.SigningMethodHS256, []byte("wrong secret"), jwt.MapClaims{"sub": "a"})
	codes := []int{}
	for i := 0; i < 6; i++ {
		code, _ := polUpgrade(t, srv, bad)
		codes = append(codes, code)
	}
	if code, _ := polUpgrade(t, srv, ""); code != 429 || slices.Contains(codes[3:], 401) {
		t.Fatalf("6 bad-token upgrades answered %v, then a good one %d: want 429 after the burst of 3", codes, code)
	}
}
