package relay_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestTokenCacheExpiredReconnect: a token the relay has verified (and
// cached) lets the same client back in until its exp, and from its exp on
// the reconnect is refused with 401 "token is expired", as an unseen
// token would be.
func TestTokenCacheExpiredReconnect(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Unix() + 2
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "name": "One", "exp": exp}).
		SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the first verifies, the others come from the cache
		c := dial(t, srv, dialOpts{token: tok})
		if c.hello.str("user") != "u1" || c.hello.str("name") != "One" {
			t.Fatalf("connection %d: hello %v", i, c.hello)
		}
		c.conn.Close()
	}
	before := metricsOf(t, srv)[`roomcast_handshake_failures_total{reason="auth"}`]
	time.Sleep(time.Until(time.Unix(exp, 0)) + 20*time.Millisecond)
	status, body := rawUpgrade(t, srv, upgradeRequest("/ws?token="+tok, "Sec-WebSocket-Protocol: roomcast.v1.msgpack"))
	if status != http.StatusUnauthorized || !strings.Contains(body, "token is expired") {
		t.Fatalf("expired cached token: %d %q, want 401 token is expired", status, body)
	}
	if after := metricsOf(t, srv)[`roomcast_handshake_failures_total{reason="auth"}`]; after != before+1 {
		t.Fatalf("auth failures %v -> %v, want one more", before, after)
	}
}
