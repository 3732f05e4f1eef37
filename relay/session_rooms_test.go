package relay_test

import (
	"slices"
	"testing"
	"time"
)

// TestTokenRefreshLeavesRoomsAnywhereInTheSet: a refresh that takes away
// rooms in every place of the connection's set (its first room, held
// inline, rooms in the middle and the last) leaves each of them once, with
// kicked, and keeps the others joined: the walk from the end over a set
// whose remove moves the last room into the emptied place.
func TestTokenRefreshLeavesRoomsAnywhereInTheSet(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Add(time.Hour)
	c := dial(t, srv, dialOpts{token: expiring(t, "cat", exp, []string{"a:*", "b:*"})})
	rooms := []string{"a:1", "b:1", "a:2", "b:2", "a:3"}
	for i, r := range rooms {
		c.join(r, i+1)
	}
	c.send(map[string]any{"t": "refresh", "ref": 10, "token": expiring(t, "cat", exp, []string{"b:*"})})
	var kicked []string
	for range 3 {
		f := c.expect("kicked")
		if f.str("reason") != "token" {
			t.Fatalf("got %v, want kicked for the token", f)
		}
		kicked = append(kicked, f.str("room"))
	}
	if f := c.expect("ack"); f.num("ref") != 10 {
		t.Fatalf("got %v, want ack 10", f)
	}
	slices.Sort(kicked)
	if !slices.Equal(kicked, []string{"a:1", "a:2", "a:3"}) {
		t.Fatalf("kicked from %v, want a:1, a:2, a:3 once each", kicked)
	}
	for i, r := range []string{"a:1", "a:2", "a:3"} {
		c.send(map[string]any{"t": "send", "room": r, "body": "hi", "ref": 20 + i})
		if f := c.expect("error"); f.str("code") != "not_joined" {
			t.Fatalf("send to %s after the refresh: %v, want not_joined", r, f)
		}
	}
	for i, r := range []string{"b:1", "b:2"} { // still joined (acks; the batches of its own messages skipped)
		c.send(map[string]any{"t": "send", "room": r, "body": "hi", "ref": 30 + i})
		c.expectAck(30 + i)
	}
}
