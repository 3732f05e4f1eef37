package relay

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestIdentityFarExpiry: an exp past 2262 (where Unix nanoseconds
// overflow) is a token that does not expire, not one expired long ago.
func TestIdentityFarExpiry(t *testing.T) {
	a, err := newAuthenticator(&Config{JWTSecret: benchSecret})
	if err != nil {
		t.Fatal(err)
	}
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 2 { // verified, then from the cache
		id, err := a.identify(mintToken(t, jwt.MapClaims{"sub": "u1", "exp": far.Unix()}))
		if err != nil {
			t.Fatal(err)
		}
		if id.expired(time.Now()) || id.expired(time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("exp in year 3000 reported expired (exp %d)", id.exp)
		}
	}
}

// TestAnonymousIdentitiesShareGrant: anonymous viewers differ only by user
// id, so each holds 24 bytes of its own, and setting one's id leaves the
// others alone.
func TestAnonymousIdentitiesShareGrant(t *testing.T) {
	a, err := newAuthenticator(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := a.identify("")
	y, _ := a.identify("")
	x.user = "anon-1"
	if x == y || x.grant != y.grant || y.user != "" || !y.anon || y.role != roleViewer {
		t.Fatalf("anonymous identities %+v and %+v", x, y)
	}
}
