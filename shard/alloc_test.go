package shard

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"
)

// countMember counts what it is given and keeps nothing.
type countMember struct {
	bytes, calls int64 // owned by the member's loop
}

func (m *countMember) Deliver(frame []byte) {
	m.bytes += int64(len(frame))
	m.calls++
}

// signal is a reusable task that reports it ran: a barrier that allocates
// nothing.
type signal chan struct{}

func (s signal) Run(context.Context) error { s <- struct{}{}; return nil }

func (s signal) wait(t testing.TB, l *fakeLoop) {
	if err := l.Execute(s); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s:
	case <-time.After(waitLimit):
		t.Fatalf("loop barrier did not run within %v", waitLimit)
	}
}

// raceEnabled reports whether the test binary was built with -race. Under
// the race detector sync.Pool drops items at random, which puts noise into
// allocation counts of paths that use the encoder pool.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// countRoom is a room of n counting members on one fake loop, with one
// message delivered, so r.fl holds a prepared flight.
func countRoom(t testing.TB, n int) (*testEnv, *Room, []*countMember) {
	t.Helper()
	// No count-only presence flight may replace the one under test.
	e := newEnv(t, Config{Loops: 1, PresenceInterval: time.Hour})
	const room = "alloc:1"
	members := make([]*countMember, n)
	var err error
	e.loops[0].do(t, func() {
		for i := range members {
			members[i] = &countMember{}
			_, _, err = e.hub.Join(room, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: members[i],
				User: fmt.Sprint("u", i), Name: "N"})
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	e.stopHousekeeper() // the tests write its flight again, long after it went out
	e.publish(t, room, Message{From: "x", Name: "X", Body: "hello"})
	settle(t, e.hub)
	return e, e.hub.Lookup(room), members
}

// Writing a prepared flight to its members allocates nothing.
func TestDeliverFlightNoAllocs(t *testing.T) {
	const n = 1000
	_, r, members := countRoom(t, n)
	lr := r.loops[0]
	if len(lr.members) != n || r.fl.msgs != 1 {
		t.Fatalf("%d members, flight of %d messages", len(lr.members), r.fl.msgs)
	}
	calls0 := members[n-1].calls
	const runs = 20 // each run writes to every member: one allocation per member would show as 1000

	// The loop is idle (settled): this goroutine may use the loop's state.
	allocs := testing.AllocsPerRun(runs, func() {
		for _, ms := range lr.members {
			ms.deliver(r.fl)
		}
	})
	if allocs != 0 {
		t.Errorf("deliver to %d members: %v allocations per flight, want 0", n, allocs)
	}

	// The whole loop task, as the loop runs it: Run, stats, taskDone.
	deliveries := r.hub.Stats.Deliveries.Load()
	ctx := context.Background()
	allocs = testing.AllocsPerRun(runs, func() {
		r.remaining.Store(1) // this Run is the flight's last loop task
		_ = lr.Run(ctx)
	})
	if allocs != 0 {
		t.Errorf("loopRoom.Run for %d members: %v allocations, want 0", n, allocs)
	}
	if d := r.hub.Stats.Deliveries.Load() - deliveries; d != (runs+1)*n {
		t.Errorf("Run counted %d deliveries, want %d", d, (runs+1)*n)
	}
	if c := members[n-1].calls - calls0; c != 2*(runs+1) {
		t.Errorf("last member got %d Deliver calls, want %d", c, 2*(runs+1))
	}
	r.mu.Lock()
	inFlight := r.inFlight
	r.mu.Unlock()
	if inFlight {
		t.Errorf("room still in flight after its last task")
	}

	// A joiner that skips part of a flight takes the slow path: no
	// allocations either.
	for _, ms := range lr.members[:n/2] {
		ms.joinDisp = r.fl.minMsg
	}
	allocs = testing.AllocsPerRun(runs, func() {
		for _, ms := range lr.members {
			ms.deliver(r.fl)
		}
	})
	if allocs != 0 {
		t.Errorf("deliver with skipping members: %v allocations, want 0", allocs)
	}
}

// publishCycleAllocs measures one Publish, its flush and its delivery to n
// members on one loop.
func publishCycleAllocs(t *testing.T, n int) float64 {
	e, r, members := countRoom(t, n)
	msg := &Message{From: "x", Name: "X", Body: "a message of some length"}
	barrier := make(signal)
	cycle := func() {
		if _, err := e.hub.Publish(r.name, msg); err != nil {
			t.Fatal(err)
		}
		barrier.wait(t, e.loops[0]) // the flight's task ran before the barrier
	}
	for range 2 * r.histCap() { // fill the history ring and warm the buffers
		cycle()
	}
	before := members[0].calls
	allocs := testing.AllocsPerRun(500, cycle)
	if got := members[0].calls - before; got != 501 {
		t.Fatalf("member got %d writes for 501 publishes", got)
	}
	r.mu.Lock()
	inFlight := r.inFlight
	r.mu.Unlock()
	if inFlight {
		t.Fatalf("room still in flight after the barrier")
	}
	return allocs
}

// A publish costs the same allocations whatever the number of members.
func TestPublishAllocsIndependentOfMembers(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops items at random under the race detector; allocation counts are noisy")
	}
	small := publishCycleAllocs(t, 10)
	big := publishCycleAllocs(t, 1000)
	t.Logf("allocations per publish: %v with 10 members, %v with 1000", small, big)
	if big-small >= 1 {
		t.Errorf("a publish to 1000 members allocates %v, to 10 members %v: allocations grow with members", big, small)
	}
}
