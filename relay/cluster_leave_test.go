package relay_test

import (
	"testing"

	"github.com/roomcast/roomcast/relay"
)

// TestClusterLeaveWhileJoinWaits: a leave sent right behind a join that
// waits for its room to catch up with the stream is answered after the
// join, in order (joined, then left), and the connection is then not in the
// room.
func TestClusterLeaveWhileJoinWaits(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.DataDir = t.TempDir() })
	c := dial(t, srv, dialOpts{token: token(t, "u", "U", "")})
	for i, room := range []string{"wait:a", "wait:b", "wait:c"} {
		ref := 10 * (i + 1)
		// Both frames before any answer: the room is new to this node, so
		// the join waits for its watch to catch up.
		c.send(map[string]any{"t": "join", "room": room, "ref": ref})
		c.send(map[string]any{"t": "leave", "room": room, "ref": ref + 1})
		if f := c.expect("joined"); f.num("ref") != int64(ref) {
			t.Fatalf("%s: got %v, want joined ref %d first", room, f, ref)
		}
		if f := c.expect("left"); f.num("ref") != int64(ref+1) {
			t.Fatalf("%s: got %v, want left ref %d", room, f, ref+1)
		}
		c.send(map[string]any{"t": "send", "room": room, "ref": ref + 2, "body": "x"})
		if f := c.expect("error"); f.str("code") != "not_joined" {
			t.Fatalf("%s: send after leave: %v, want not_joined", room, f)
		}
	}
}
