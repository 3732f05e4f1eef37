package relay_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestRefreshLeavesSharedIdentity: connections presenting the same token
// share one identity (memory per connection). A refresh to that token by a
// connection with another name keeps its own name without renaming the
// token's other connections, before or after.
func TestRefreshLeavesSharedIdentity(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	first := tokenClaims(t, jwt.MapClaims{"sub": "ann", "name": "Ann", "exp": exp})
	second := tokenClaims(t, jwt.MapClaims{"sub": "ann", "name": "Annie", "exp": exp + 1})
	a := dial(t, srv, dialOpts{token: first})
	b := dial(t, srv, dialOpts{token: second})
	a.send(map[string]any{"t": "refresh", "ref": 1, "token": second})
	a.expect("ack")
	c := dial(t, srv, dialOpts{token: second}) // the cache's identity of second
	d := dial(t, srv, dialOpts{})              // reads the messages
	for _, x := range []*client{a, b, c, d} {
		x.join("r", 2)
	}
	for i, x := range []*client{a, b, c} { // one at a time: in this order
		x.send(map[string]any{"t": "send", "room": "r", "body": "hi", "ref": 3 + i})
		x.expectAck(3 + i)
	}
	want := []string{"Ann", "Annie", "Annie"}
	var got []string
	for len(got) < len(want) {
		for _, m := range d.expect("batch").list("msgs") {
			got = append(got, m.(map[string]any)["name"].(string))
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("names %v, want %v", got, want)
		}
	}
}
