package shard

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// taskCountLoop is a fake loop that counts the room flight tasks given to it.
type taskCountLoop struct {
	*fakeLoop
	flights atomic.Int64
}

func (l *taskCountLoop) Execute(r Runnable) error {
	if _, ok := r.(*loopRoom); ok {
		l.flights.Add(1)
	}
	return l.fakeLoop.Execute(r)
}

// A join nobody can hear (the joiner never sees its own join) hands no
// flight to any loop; a later joiner's presence still reaches the members
// already there, on the joiner's loop and on others, and a joiner on an
// empty loop costs that loop nothing.
func TestJoinIntoEmptyLoopStartsNoTask(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, PresenceWindow: -1})
	loops := []*taskCountLoop{{fakeLoop: e.loops[0]}, {fakeLoop: e.loops[1]}}
	const room = "lobby:empty"
	join := func(li int, id string) *recMember {
		t.Helper()
		m := &recMember{loop: e.loops[li], user: id}
		req := JoinRequest{LoopIndex: li, Loop: loops[li], Member: m, User: id, Name: id}
		var err error
		e.loops[li].do(t, func() { _, _, err = e.hub.Join(room, &req) })
		if err != nil {
			t.Fatalf("join %s: %v", id, err)
		}
		settle(t, e.hub)
		return m
	}
	pres := func(count int, id string) proto.Presence {
		return proto.Presence{T: proto.TPresence, Room: room, Count: count, Joins: []proto.Member{{ID: id, Name: id}}}
	}
	st := &e.hub.Stats
	want := func(step string, flushes int64, tasks0, tasks1 int64) {
		t.Helper()
		if got := st.Flushes.Load(); got != flushes {
			t.Errorf("%s: Stats.Flushes = %d, want %d", step, got, flushes)
		}
		if got := loops[0].flights.Load(); got != tasks0 {
			t.Errorf("%s: loop 0 got %d flight tasks, want %d", step, got, tasks0)
		}
		if got := loops[1].flights.Load(); got != tasks1 {
			t.Errorf("%s: loop 1 got %d flight tasks, want %d", step, got, tasks1)
		}
	}

	a := join(0, "a")
	want("a joins the empty room", 0, 0, 0)
	wantPresence(t, "a after its own join", a)

	b := join(0, "b")
	want("b joins a's loop", 1, 1, 0)
	wantPresence(t, "a", a, pres(2, "b"))
	wantPresence(t, "b after its own join", b)

	c := join(1, "c")
	want("c joins an empty loop", 2, 2, 0)
	wantPresence(t, "a", a, pres(3, "c"))
	wantPresence(t, "b", b, pres(3, "c"))
	wantPresence(t, "c after its own join", c)

	d := join(1, "d")
	want("d joins c's loop", 3, 3, 1)
	wantPresence(t, "c", c, pres(4, "d"))
	wantPresence(t, "d after its own join", d)
}

// Joins of one presence window into an empty loop go out in one flight:
// the first joiner hears the later ones, each joiner none before its own.
func TestJoinStormIntoEmptyLoop(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, PresenceWindow: time.Hour, MaxBatchMsgs: 2})
	const room = "lobby:storm"
	var ms [3]*recMember
	for i := range ms {
		ms[i], _, _ = e.join(t, room, 0, JoinRequest{User: fmt.Sprint("s", i), Name: "S"})
	}
	settle(t, e.hub) // two pending events end the window (MaxBatchMsgs); the first join, heard by nobody, is not pending
	s := func(i int) []proto.Member { return []proto.Member{{ID: fmt.Sprint("s", i), Name: "S"}} }
	pres := func(count int, joins []proto.Member) proto.Presence {
		return proto.Presence{T: proto.TPresence, Room: room, Count: count, Joins: joins}
	}
	wantPresence(t, "s0", ms[0], pres(2, s(1)), pres(3, s(2)))
	wantPresence(t, "s1", ms[1], pres(3, s(2)))
	wantPresence(t, "s2", ms[2])
}

// countUser is a countMember that names its user (UserMember), as a
// relay session does: the room keeps no copy of its id (Room.userOf).
type countUser struct {
	countMember
	user string
}

func (m *countUser) MemberUser() string { return m.user }

// A join and leave on an existing room allocates a bounded number of
// times, whatever the number of members.
func TestJoinLeaveAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops items at random under the race detector; allocation counts are noisy")
	}
	for _, tc := range []struct{ n, maxAllocs int }{
		{0, 5},   // alone: no presence event, no flight; the users index's slice is made for the joiner and dropped when it leaves (an index without users holds nothing)
		{1, 14},  // a listed room: presence events for the join and the leave, and their flights
		{100, 5}, // past ListMax: presence is a count, now and then
	} {
		n, maxAllocs := tc.n, float64(tc.maxAllocs)
		e, r, _ := countRoom(t, n)
		m := &countUser{user: "joiner"} // a relay session names its user
		barrier := make(signal)
		var ms *Membership
		var err error
		req := JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: m, User: "joiner", Name: "J", History: -1}
		cycle := func() {
			e.loops[0].do(t, func() {
				ms, _, err = e.hub.Join(r.name, &req)
				if err == nil {
					ms.Leave()
				}
			})
			barrier.wait(t, e.loops[0])
		}
		for range 10 {
			cycle()
		}
		allocs := testing.AllocsPerRun(200, cycle) - loopDoAllocs(t, e.loops[0], barrier)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("join+leave in a room of %d: %v allocations", n, allocs)
		if allocs > maxAllocs {
			t.Errorf("join+leave in a room of %d: %v allocations, want at most %v", n, allocs, maxAllocs)
		}
	}
}

// loopDoAllocs is what the test's own loop round trips allocate.
func loopDoAllocs(t *testing.T, l *fakeLoop, barrier signal) float64 {
	return testing.AllocsPerRun(200, func() {
		l.do(t, func() {})
		barrier.wait(t, l)
	})
}

// A lone joiner and the last leaver queue nothing: no presence window
// opens, no timer is armed, nothing waits to be flushed.
func TestLoneJoinQueuesNothing(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, PresenceWindow: time.Hour})
	const room = "lobby:lone"
	idle := func(step string) {
		t.Helper()
		r := e.hub.Lookup(room)
		if r == nil {
			return // dropped: nothing left at all
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.pending) != 0 || r.window != nil || r.inFlight {
			t.Errorf("%s: %d events pending, timer %v, in flight %v; want none", step, len(r.pending), r.window != nil, r.inFlight)
		}
	}
	a, ams, _ := e.join(t, room, 0, JoinRequest{User: "a"})
	idle("a joined")
	e.leave(t, a, ams)
	idle("a left")
	a, ams, _ = e.join(t, room, 0, JoinRequest{User: "a"})
	b, bms, _ := e.join(t, room, 0, JoinRequest{User: "b"})
	r := e.hub.Lookup(room)
	r.mu.Lock()
	pending := len(r.pending)
	r.mu.Unlock()
	if pending != 1 {
		t.Errorf("b joined a: %d events pending, want b's join", pending)
	}
	e.leave(t, b, bms)
	e.leave(t, a, ams)
	idle("both left")
}
