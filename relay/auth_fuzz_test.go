package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const fuzzSecret = "k"

// fuzzHS256 signs claims with fuzzSecret.
func fuzzHS256(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(fuzzSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fuzzAuth(t testing.TB, cfg *Config) *authenticator {
	t.Helper()
	a, err := newAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkFuzzIdentity checks what identify promises of a token it accepts: a
// user, a sending role, not anonymous, and a token that really is HS256
// signed with the secret.
func checkFuzzIdentity(t *testing.T, token string, id *identity) {
	t.Helper()
	if id.user == "" || id.anon || !slices.Contains(sendRoles, id.role.String()) {
		t.Fatalf("identify(%q) = %+v: want a user, a role of %v, not anonymous", token, id, sendRoles)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("identify accepted %q, which has %d parts", token, len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	mac := hmac.New(sha256.New, []byte(fuzzSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("identify accepted %q, whose signature is not HMAC-SHA256 with the secret", token)
	}
}

func FuzzIdentify(f *testing.F) {
	for _, c := range identifyCases(f) {
		f.Add(c.token)
	}
	a := fuzzAuth(f, &Config{JWTSecret: fuzzSecret})
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.identify(token)
		switch {
		case err != nil:
			if id != nil {
				t.Fatalf("identify(%q) returned both %+v and %v", token, id, err)
			}
			if err.Error() == "" {
				t.Fatalf("identify(%q): an error without a reason for the 401", token)
			}
		case token == "":
			if !id.anon || id.role != roleViewer || id.user != "" {
				t.Fatalf("identify(\"\") = %+v, want an anonymous viewer", id)
			}
		default:
			checkFuzzIdentity(t, token, id)
		}
	})
}

type identifyCase struct {
	name  string
	token string
	want  *identity // nil: refused
}

func identifyCases(t testing.TB) []identifyCase {
	now := time.Now()
	full := fuzzHS256(t, jwt.MapClaims{"sub": "alice", "name": "Alice", "role": "mod",
		"rooms": []string{"lobby:*", "dm:alice"}, "badges": []string{"sub", "vip"}})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "a"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a"}).SignedString([]byte("not k"))
	hs384, _ := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims{"sub": "a"}).SignedString([]byte(fuzzSecret))
	huge := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("A", 6000)))
	parts := strings.Split(full, ".")
	return []identifyCase{
		{"empty: anonymous", "", &identity{grant: &grant{role: roleViewer, anon: true}}},
		{"all claims", full, &identity{user: "alice", grant: &grant{name: "Alice", role: roleMod,
			lists: &grantLists{rooms: []string{"lobby:*", "dm:alice"}, badges: []string{"sub", "vip"}}}}},
		{"sub only: role user", fuzzHS256(t, jwt.MapClaims{"sub": "u1"}), &identity{user: "u1", grant: &grant{role: roleUser}}},
		{"admin", fuzzHS256(t, jwt.MapClaims{"sub": "x", "role": "admin"}), &identity{user: "x", grant: &grant{role: roleAdmin}}},
		{"bot", fuzzHS256(t, jwt.MapClaims{"sub": "x", "role": "bot"}), &identity{user: "x", grant: &grant{role: roleBot}}},
		{"empty rooms", fuzzHS256(t, jwt.MapClaims{"sub": "x", "rooms": []string{}}), &identity{user: "x", grant: &grant{role: roleUser, lists: &grantLists{rooms: []string{}}}}},
		{"exp in the future", fuzzHS256(t, jwt.MapClaims{"sub": "x", "exp": now.Add(time.Minute).Unix()}), &identity{user: "x", grant: &grant{role: roleUser}}},
		{"nbf within leeway", fuzzHS256(t, jwt.MapClaims{"sub": "x", "nbf": now.Add(10 * time.Second).Unix()}), &identity{user: "x", grant: &grant{role: roleUser}}},
		{"expired 10s ago (no leeway on exp)", fuzzHS256(t, jwt.MapClaims{"sub": "x", "exp": now.Add(-10 * time.Second).Unix()}), nil},
		{"expired", fuzzHS256(t, jwt.MapClaims{"sub": "x", "exp": now.Add(-time.Minute).Unix()}), nil},
		{"nbf beyond leeway", fuzzHS256(t, jwt.MapClaims{"sub": "x", "nbf": now.Add(time.Minute).Unix()}), nil},
		{"iat beyond leeway", fuzzHS256(t, jwt.MapClaims{"sub": "x", "iat": now.Add(time.Minute).Unix()}), nil},
		{"exp not a number", fuzzHS256(t, jwt.MapClaims{"sub": "x", "exp": "tomorrow"}), nil},
		{"sub not a string", fuzzHS256(t, jwt.MapClaims{"sub": 42}), nil},
		{"no sub", fuzzHS256(t, jwt.MapClaims{"name": "x"}), nil},
		{"empty sub", fuzzHS256(t, jwt.MapClaims{"sub": ""}), nil},
		{"unknown role", fuzzHS256(t, jwt.MapClaims{"sub": "a", "role": "god"}), nil},
		{"role viewer", fuzzHS256(t, jwt.MapClaims{"sub": "a", "role": "viewer"}), nil},
		{"rooms not a list", fuzzHS256(t, jwt.MapClaims{"sub": "a", "rooms": "lobby:*"}), nil},
		{"alg none", none, nil},
		{"wrong secret", wrongKey, nil},
		{"HS384", hs384, nil},
		{"truncated", full[:len(full)-10], nil},
		{"no signature", parts[0] + "." + parts[1] + ".", nil},
		{"payload swapped", parts[0] + "." + strings.Split(fuzzHS256(t, jwt.MapClaims{"sub": "mallory"}), ".")[1] + "." + parts[2], nil},
		{"garbage", "\x00\xffnot a token at all\n", nil},
		{"three dots", "...", nil},
		{"two dots", "..", nil},
		{"spaces", "   ", nil},
		{"huge base64", huge + "." + huge + "." + huge, nil},
	}
}

func TestIdentify(t *testing.T) {
	a := fuzzAuth(t, &Config{JWTSecret: fuzzSecret})
	for _, c := range identifyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			id, err := a.identify(c.token)
			if c.want == nil {
				if err == nil {
					t.Fatalf("accepted: %+v", id)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.user != c.want.user || id.name != c.want.name || id.role != c.want.role || id.anon != c.want.anon ||
				!slices.Equal(id.rooms(), c.want.rooms()) || (id.rooms() == nil) != (c.want.rooms() == nil) ||
				!slices.Equal(id.badges(), c.want.badges()) {
				t.Fatalf("identity = %+v, want %+v", id, c.want)
			}
		})
	}
}

func TestIdentifyWithoutVerifier(t *testing.T) {
	a := fuzzAuth(t, &Config{})
	if _, err := a.identify(fuzzHS256(t, jwt.MapClaims{"sub": "a"})); !errors.Is(err, errNoVerifier) {
		t.Fatalf("no key configured: err = %v, want %v", err, errNoVerifier)
	}
	if id, err := a.identify(""); err != nil || !id.anon {
		t.Fatalf("no key, no token: %+v, %v; want an anonymous viewer", id, err)
	}
	a = fuzzAuth(t, &Config{JWTSecret: fuzzSecret, NoAnonymous: true})
	if _, err := a.identify(""); !errors.Is(err, errNoToken) {
		t.Fatalf("NoAnonymous, no token: err = %v, want %v", err, errNoToken)
	}
}

func TestNewAuthenticatorBadKey(t *testing.T) {
	for _, pem := range []string{"not a PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := newAuthenticator(&Config{JWTPublicKey: []byte(pem)}); err == nil {
			t.Errorf("JWTPublicKey %q accepted", pem)
		}
	}
}

func TestRoomAllowed(t *testing.T) {
	f := func(patterns []string, room string, want bool) {
		t.Helper()
		if got := roomAllowed(patterns, room); got != want {
			t.Errorf("roomAllowed(%q, %q) = %v, want %v", patterns, room, got, want)
		}
	}
	claim := []string{"lobby:*", "dm:alice"}
	f(nil, "anything", true)
	f([]string{}, "lobby:eu-1", false)
	f(claim, "lobby:eu-1", true)
	f(claim, "lobby:", true)
	f(claim, "lobby", false)
	f(claim, "dm:alice", true)
	f(claim, "dm:alice2", false)
	f(claim, "dm:bob", false)
	f(claim, "stream:x", false)
	f([]string{"*"}, "stream:x", true)
	f([]string{"a*b"}, "a*b", true)
	f([]string{"a*b"}, "axb", false)
}
