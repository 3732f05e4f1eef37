package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// presenceJoins reads c's frames until it gets the batch carrying body,
// and counts the joins named in the presence frames before it, by user.
func presenceJoins(t *testing.T, c *client, body string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for {
		f := c.next()
		switch f.str("t") {
		case "presence":
			for _, j := range f.list("joins") {
				if m, ok := j.(map[string]any); ok {
					id, _ := m["id"].(string)
					seen[id]++
				}
			}
		case "batch":
			for _, m := range f.list("msgs") {
				if mm, ok := m.(map[string]any); ok && mm["body"] == body {
					return seen
				}
			}
		}
	}
}

// checkSeen checks that seen holds exactly the joins of users, once each.
func checkSeen(t *testing.T, who string, seen map[string]int, users []string) {
	t.Helper()
	for _, u := range users {
		if seen[u] != 1 {
			t.Errorf("%s saw the join of %s %d times, want once", who, u, seen[u])
		}
		delete(seen, u)
	}
	for u, n := range seen {
		t.Errorf("%s saw the join of %s %d times, want never", who, u, n)
	}
}

// joinMany dials n members with tokens and joins them to room, in order.
func joinMany(t *testing.T, srv *relay.Server, room string, n int) ([]*client, []string) {
	t.Helper()
	cs, users := make([]*client, n), make([]string, n)
	for i := range cs {
		users[i] = fmt.Sprintf("pw%02d", i)
		cs[i] = dial(t, srv, dialOpts{token: token(t, users[i], users[i], "")})
		cs[i].join(room, 1)
	}
	return cs, users
}

// Joins into a listed room within the presence window go out in a couple
// of flushes (not one per join); every member sees every later join once,
// and never its own.
func TestPresenceWindowJoinStorm(t *testing.T) {
	// A window far longer than the storm, however loaded the machine: the
	// joins all fall in it, and the message ends it (see the next test).
	srv := startRelay(t, func(c *relay.Config) { c.Hub.PresenceWindow = time.Minute })
	const room = "lobby:pwstorm"
	old := dial(t, srv, dialOpts{token: token(t, "old", "Old", "")})
	old.join(room, 1)
	st := &srv.Hub().Stats
	flushes := st.Flushes.Load()
	const n = 20
	cs, users := joinMany(t, srv, room, n)
	old.send(map[string]any{"t": "send", "room": room, "body": "end", "ref": 2})
	checkSeen(t, "old", presenceJoins(t, old, "end"), users)
	// The joins, and the message.
	if got := st.Flushes.Load() - flushes; got > 3 {
		t.Errorf("%d joins and a message went in %d flushes, want at most 3", n, got)
	}
	for i, c := range cs {
		checkSeen(t, users[i], presenceJoins(t, c, "end"), users[i+1:])
	}
}

// A message sent inside a long presence window arrives without waiting for
// it, after the joins pending before it.
func TestPresenceWindowMessageNotDelayed(t *testing.T) {
	const window = time.Minute // the test fails by timeout if the message waits
	srv := startRelay(t, func(c *relay.Config) { c.Hub.PresenceWindow = window })
	const room = "lobby:pwchat"
	old := dial(t, srv, dialOpts{token: token(t, "old", "Old", "")})
	old.join(room, 1)
	cs, users := joinMany(t, srv, room, 5)
	old.send(map[string]any{"t": "send", "room": room, "body": "mid", "ref": 2})
	checkSeen(t, "old", presenceJoins(t, old, "mid"), users)
	for i, c := range cs {
		checkSeen(t, users[i], presenceJoins(t, c, "mid"), users[i+1:])
	}
}
