package relaytest

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Secret is the HS256 secret test relays are started with unless a test
// picks its own.
const Secret = "test-secret"

// Sign mints an HS256 token with secret over claims. An "exp" claim is
// added, an hour from now, unless claims has one.
func Sign(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Token mints an HS256 token with secret for user sub, valid for an hour.
// An empty name or role leaves the claim out.
func Token(t testing.TB, secret, sub, name, role string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub}
	if name != "" {
		c["name"] = name
	}
	if role != "" {
		c["role"] = role
	}
	return Sign(t, secret, c)
}
