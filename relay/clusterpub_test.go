package relay_test

import (
	"fmt"
	"testing"

	"github.com/roomcast/roomcast/relay"
)

// Three relays, one member on each, taking turns in one room (each sends
// once every member saw the previous message): no publish conflicts, since
// each node learns the room's latest record from its own watch of the
// room; every member sees 1..turns.
func TestClusterTurnsNoConflicts(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	const room, turns = "cl:turns", 30
	var (
		nodes   []*relay.Server
		members []*client
	)
	for i := range 3 {
		n := startNode(t, ns.ClientURL(), fmt.Sprint("n", i))
		c := dial(t, n, dialOpts{token: token(t, fmt.Sprint("u", i), "U", "")})
		c.join(room, 1)
		nodes, members = append(nodes, n), append(members, c)
	}
	seens := make([]seen, len(members))
	for turn := 1; turn <= turns; turn++ {
		sender := (turn - 1) % len(members)
		members[sender].send(map[string]any{"t": "send", "room": room, "ref": 100 + turn, "body": fmt.Sprint("m", turn)})
		for i, c := range members {
			err := c.collect(&seens[i], func(s *seen) bool {
				_, acked := s.acks[int64(100+turn)]
				return len(s.seqs) >= turn && (i != sender || acked || len(s.errs) > 0)
			})
			if err != nil || len(seens[i].errs) > 0 {
				t.Fatalf("turn %d, member %d: %v %v", turn, i, err, seens[i].errs)
			}
		}
	}
	for i, s := range seens {
		if err := contiguous(s.seqs, 1, turns); err != nil {
			t.Errorf("member %d saw %v: %v", i, s.seqs, err)
		}
	}
	if conflicts := busConflicts(t, nodes); conflicts != 0 {
		t.Errorf("%v publish conflicts in %d turns, want 0", conflicts, turns)
	}
}

// busConflicts sums roomcast_bus_conflicts_total over nodes.
func busConflicts(t *testing.T, nodes []*relay.Server) float64 {
	t.Helper()
	var sum float64
	for _, n := range nodes {
		sum += metricsOf(t, n)["roomcast_bus_conflicts_total"]
	}
	return sum
}
