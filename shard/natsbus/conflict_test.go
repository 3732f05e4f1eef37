package natsbus

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomcast/roomcast/relaytest"
)

// TestTakingTurnsNoConflicts: three nodes follow one room and take turns
// (node i publishes, every node receives it, then the next publishes), as
// in a chat where A speaks and B answers. Each publisher learns the room's
// latest record from its node's watch, so no turn conflicts (before, each
// node's cached last record was stale at its next turn: about 57 conflicts
// in 60 turns). Seqs are 1..60 on every node, in order.
func TestTakingTurnsNoConflicts(t *testing.T) {
	const nodes, turns = 3, 60
	buses, feeds := watchingNodes(t, nodes, "turns")
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

// watchingNodes starts a NATS server and opens n buses on it (nodes n0,
// n1, ...), each watching room with a feed of its own, synced; the watches
// stop when the test ends.
func watchingNodes(t *testing.T, n int, room string) ([]*Bus, []*recFeed) {
	t.Helper()
	ns := runServer(t, t.TempDir(), -1)
	var (
		buses []*Bus
		feeds []*recFeed
	)
	for i := range n {
		b := open(t, Config{URL: ns.ClientURL(), Name: fmt.Sprint("n", i)})
		f := newRecFeed()
		t.Cleanup(b.Watch(room, f))
		<-f.synced
		buses, feeds = append(buses, b), append(feeds, f)
	}
	return buses, feeds
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

// TestConflictNamesLastRecord: the server's answer to a publish expecting
// a stale last record names the subject's real last record (conflictLast),
// and 0 for a subject without records.
func TestConflictNamesLastRecord(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL()})
	ctx := b.ctx
	subj := Subject("named")
	var last uint64
	for range 3 {
		ack, err := b.js.Publish(ctx, subj, []byte{0x80}, jetstream.WithExpectLastSequencePerSubject(last))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	_, err := b.js.Publish(ctx, subj, []byte{0x80}, jetstream.WithExpectLastSequencePerSubject(last-1))
	if !isConflict(err) {
		t.Fatalf("stale expected sequence: %v, want a conflict", err)
	}
	if got := conflictLast(err); got != last {
		t.Errorf("conflict %q names %d, want the last record %d", err, got, last)
	}
	_, err = b.js.Publish(ctx, Subject("empty"), []byte{0x80}, jetstream.WithExpectLastSequencePerSubject(last))
	if got := conflictLast(err); !isConflict(err) || got != 0 {
		t.Errorf("empty subject: %v names %d, want a conflict naming 0", err, got)
	}
}

// TestConflictsResolvedByWatch: three nodes that all follow the room
// publish at once. Every seq is acked once and every watch sees 1..n in
// order; a conflict is resolved from the node's own watch (the winning
// record is on its way to it), so the stream is read about once per node
// (first publish), not once per conflict.
func TestConflictsResolvedByWatch(t *testing.T) {
	const nodes, per = 3, 30
	buses, feeds := watchingNodes(t, nodes, "busy")
	acked := relaytest.PublishAll(t, nodes, per, func(w, i int) (uint64, error) {
		return publish(t, buses[w], "busy", fmt.Sprint(i))
	})
	n := uint64(nodes * per)
	if !slices.Equal(acked, seqRange(1, n)) {
		t.Fatalf("acked %d seqs, not 1..%d once each: %v", len(acked), n, acked)
	}
	var conflicts, reads float64
	for i, b := range buses {
		waitSeqs(t, feeds[i], int(n), fmt.Sprint("node ", i))
		if got := feeds[i].got(); !slices.Equal(got, seqRange(1, n)) {
			t.Errorf("node %d saw %v, want 1..%d", i, got, n)
		}
		conflicts += testCounter(b.m.conflicts)
		reads += testCounter(b.m.lastReads)
	}
	t.Logf("%v conflicts, %v reads of the last record", conflicts, reads)
	// A read per node for its first publish (the room may be empty, which
	// a watch cannot tell), and a few conflicts whose record came later than
	// tipWait (a loaded machine); not one per conflict.
	if reads > nodes+conflicts/2 && conflicts >= 6 {
		t.Errorf("%v reads of the last record for %v conflicts: conflicts are not resolved from the watch", reads, conflicts)
	}
}
