package natsbus

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestTakingTurnsNoConflicts: three nodes follow one room and take turns
// (node i publishes, every node receives it, then the next publishes), as
// in a chat where A speaks and B answers. Each publisher learns the room's
// latest record from its node's watch, so no turn conflicts (before, each
// node's cached last record was stale at its next turn: about 57 conflicts
// in 60 turns). Seqs are 1..60 on every node, in order.
func TestTakingTurnsNoConflicts(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	const nodes, turns = 3, 60
	var (
		buses []*Bus
		feeds []*recFeed
	)
	for i := range nodes {
		b := open(t, Config{URL: ns.ClientURL(), Name: fmt.Sprint("n", i)})
		f := newRecFeed()
		defer b.Watch("turns", f)()
		<-f.synced
		buses, feeds = append(buses, b), append(feeds, f)
	}
	for turn := range turns {
		want := uint64(turn + 1)
		seq, err := publish(t, buses[turn%nodes], "turns", fmt.Sprint(turn))
		if err != nil || seq != want {
			t.Fatalf("turn %d: seq %d err %v, want seq %d", turn, seq, err, want)
		}
		for i, f := range feeds {
			waitSeqs(t, f, int(want), fmt.Sprintf("node %d, turn %d", i, turn))
		}
	}
	var conflicts float64
	for i, b := range buses {
		conflicts += testCounter(b.m.conflicts)
		if got := feeds[i].got(); !slices.Equal(got, seqRange(1, turns)) {
			t.Errorf("node %d saw %v, want 1..%d", i, got, turns)
		}
	}
	// Every turn starts after every watch applied the previous record, so
	// a publisher always knows the latest one: nothing can conflict.
	if conflicts != 0 {
		t.Errorf("%v conflicts in %d turns, want 0", conflicts, turns)
	}
}

// waitSeqs waits until f got n messages.
func waitSeqs(t *testing.T, f *recFeed, n int, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); len(f.got()) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: got %v, want %d messages", what, f.got(), n)
		}
	}
}
