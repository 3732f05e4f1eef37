package shard

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// ---------------------------------------------------------------------------
// Epochs

func TestEpochs(t *testing.T) {
	e := newEnv(t, Config{Loops: 1})
	const room = "lobby:epoch"
	_, _, res := e.join(t, room, 0, JoinRequest{})
	epoch := res.Epoch
	if len(epoch) != 8 || strings.Trim(epoch, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("epoch %q, want 8 base32 characters", epoch)
	}
	if info := e.hub.Lookup(room).Info(); info.Epoch != epoch {
		t.Fatalf("Info().Epoch %q, joined %q", info.Epoch, epoch)
	}
	for i := 0; i < 3; i++ {
		e.publish(t, room, Message{From: "x", Body: fmt.Sprint(i)})
	}
	settle(t, e.hub)

	f := func(what string, req JoinRequest, gap bool, want ...uint64) {
		t.Helper()
		_, _, res := e.join(t, room, 0, req)
		if got := msgSeqs(histMsgs(t, req.Format, res)); res.Gap != gap || res.Epoch != epoch || !slices.Equal(got, want) {
			t.Errorf("%s: gap %v epoch %q history %v, want gap %v epoch %q history %v", what, res.Gap, res.Epoch, got, gap, epoch, want)
		}
	}
	f("since, same epoch", JoinRequest{Since: 1, HasSince: true, Epoch: epoch, History: -1}, false, 2, 3)
	f("since, no epoch", JoinRequest{Since: 1, HasSince: true, History: -1}, false, 2, 3)
	f("since, other epoch", JoinRequest{Since: 1, HasSince: true, Epoch: "other", History: -1}, true, 1, 2, 3)
	f("since, other epoch, history 1", JoinRequest{Format: proto.JSON, Since: 1, HasSince: true, Epoch: "other", History: 1}, true, 3)
	f("epoch without since", JoinRequest{Epoch: "other"}, false)

	// Another hub (a restarted relay) names its room's history otherwise.
	other := newEnv(t, Config{Loops: 1})
	if _, _, res := other.join(t, room, 0, JoinRequest{}); res.Epoch == epoch || res.Epoch == "" {
		t.Fatalf("epoch in another hub %q, first %q", res.Epoch, epoch)
	}
}

// A room reaped and created again has a new epoch.
func TestEpochAfterReap(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, EmptyRoomTTL: 20 * time.Millisecond})
	const room = "lobby:reaped"
	m, ms, res := e.join(t, room, 0, JoinRequest{})
	e.publish(t, room, Message{From: "x", Body: "kept"})
	settle(t, e.hub)
	e.leave(t, m, ms)
	waitFor(t, "the room to be reaped", func() bool { return e.hub.Lookup(room) == nil })
	_, _, again := e.join(t, room, 0, JoinRequest{Since: 1, HasSince: true, Epoch: res.Epoch, History: -1})
	if again.Epoch == res.Epoch || again.Epoch == "" || !again.Gap || again.Seq != 0 {
		t.Fatalf("rejoin after reap: %+v, want a new epoch and a gap (old epoch %q)", again, res.Epoch)
	}
}

// SSE ids carry the epoch, live and in joined history (transcoded).
func TestEpochSSEIDs(t *testing.T) {
	e := newEnv(t, Config{Loops: 1})
	const room = "sse:ids"
	m, _, res := e.join(t, room, 0, JoinRequest{Format: proto.SSE, Anon: true})
	e.publish(t, room, Message{From: "x", Body: "one"})
	settle(t, e.hub)
	m.mu.Lock()
	calls := slices.Clone(m.calls)
	m.mu.Unlock()
	want := "id: " + res.Epoch + ":1\nevent: msg\n"
	if len(calls) != 1 || !strings.HasPrefix(string(calls[0]), want) {
		t.Fatalf("live SSE %q, want it to start %q", calls, want)
	}
	_, _, res2 := e.join(t, room, 0, JoinRequest{Format: proto.SSE, Anon: true, History: 5})
	if len(res2.History) != 1 || string(res2.History[0]) != string(calls[0]) {
		t.Fatalf("SSE history %q, want the live event %q", res2.History, calls[0])
	}
}

// ---------------------------------------------------------------------------
// Room lifetime and limits

// Rooms that never held a message go with their last member.
func TestIdleRoomsGoAtOnce(t *testing.T) {
	e := newEnv(t, Config{Loops: 2})
	const n = 5000
	e.loops[0].do(t, func() {
		m := &countMember{}
		for i := 0; i < n; i++ {
			ms, _, err := e.hub.Join(fmt.Sprint("r:", i), &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: m, User: "u"})
			if err != nil {
				t.Error(err)
				return
			}
			ms.Leave()
		}
	})
	if rooms := e.hub.Stats.Rooms.Load(); rooms != 0 {
		t.Fatalf("Stats.Rooms = %d after %d joins and leaves, want 0", rooms, n)
	}
	// A room that held a message stays (it has history to resume).
	m, ms, _ := e.join(t, "kept:1", 0, JoinRequest{})
	e.publish(t, "kept:1", Message{From: "x", Body: "hi"})
	settle(t, e.hub)
	e.leave(t, m, ms)
	// A refused join leaves no room behind.
	if _, _, _, err := e.tryJoin(t, "noanon:1", 1, JoinRequest{Anon: true}); err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t, Config{Loops: 1, Policy: policies(map[string]Policy{"private": {NoAnonRead: true}})})
	if _, _, _, err := e2.tryJoin(t, "private:1", 0, JoinRequest{Anon: true}); !errors.Is(err, ErrNoAnon) {
		t.Fatalf("anonymous join of a private room: %v", err)
	}
	if n := e2.hub.Stats.Rooms.Load(); n != 0 || e2.hub.Lookup("private:1") != nil {
		t.Fatalf("a refused join left %d rooms", n)
	}
	// One more for the viewer above, which is still in noanon:1.
	if rooms := e.hub.Stats.Rooms.Load(); rooms != 2 || e.hub.Lookup("kept:1") == nil {
		t.Fatalf("Stats.Rooms = %d, want kept:1 and noanon:1", rooms)
	}
}

// Moderation state and a recent Room lookup keep an empty room; without
// them, a room that never held a message goes with its last member.
func TestIdleRoomKeptByModeration(t *testing.T) {
	clk := newModClock()
	e := newEnv(t, Config{Loops: 1, Now: clk.Now, EmptyRoomTTL: time.Minute})
	e.hub.Room("ban:1").Ban("x")
	e.hub.Room("mute:1").Timeout("x", time.Hour)
	e.hub.Room("slow:1").SetSlowMode(time.Second)
	e.hub.Room("plain:1")
	e.hub.Room("recent:1")
	clk.Advance(2 * time.Minute) // the lookups above are old now
	e.hub.Room("recent:1")       // a moderator looked this one up just now
	for _, room := range []string{"ban:1", "mute:1", "slow:1", "plain:1", "recent:1"} {
		m, ms, _ := e.join(t, room, 0, JoinRequest{User: "u"})
		e.leave(t, m, ms)
	}
	for room, kept := range map[string]bool{"ban:1": true, "mute:1": true, "slow:1": true, "plain:1": false, "recent:1": true} {
		if got := e.hub.Lookup(room) != nil; got != kept {
			t.Errorf("%s kept %v, want %v", room, got, kept)
		}
	}
	if n := e.hub.Stats.Rooms.Load(); n != 4 {
		t.Errorf("Stats.Rooms = %d, want 4", n)
	}
}

func TestMaxRooms(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, MaxRooms: 3})
	var held []func()
	for i := 0; i < 3; i++ {
		m, ms, _ := e.join(t, fmt.Sprint("r:", i), 0, JoinRequest{})
		held = append(held, func() { e.leave(t, m, ms) })
	}
	if _, _, _, err := e.tryJoin(t, "r:3", 0, JoinRequest{}); !errors.Is(err, ErrRoomLimit) {
		t.Fatalf("join past MaxRooms: %v, want ErrRoomLimit", err)
	}
	if _, err := e.hub.Publish("r:3", &Message{From: "x", Body: "b"}); !errors.Is(err, ErrRoomLimit) {
		t.Fatalf("publish past MaxRooms: %v, want ErrRoomLimit", err)
	}
	if _, err := e.hub.Open("r:3"); !errors.Is(err, ErrRoomLimit) {
		t.Fatalf("Open past MaxRooms: %v, want ErrRoomLimit", err)
	}
	e.join(t, "r:0", 0, JoinRequest{}) // an existing room is no new one
	if n := e.hub.Stats.Rooms.Load(); n != 3 || e.hub.Lookup("r:3") != nil {
		t.Fatalf("Stats.Rooms = %d after refusals, want 3", n)
	}
	held[1]()
	e.join(t, "r:3", 0, JoinRequest{})
	// Room (moderation) creates even at the limit.
	if e.hub.Room("mod:1") == nil || e.hub.Stats.Rooms.Load() != 4 {
		t.Fatalf("Room at the limit: Stats.Rooms = %d, want 4", e.hub.Stats.Rooms.Load())
	}
}

// Racing joins of new rooms never pass MaxRooms.
func TestMaxRoomsRace(t *testing.T) {
	const limit, tries = 50, 400
	e := newEnv(t, Config{Loops: 4, MaxRooms: limit})
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for li := range e.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.loops[li].do(t, func() {
				for i := 0; i < tries/4; i++ {
					_, _, err := e.hub.Join(fmt.Sprintf("r:%d:%d", li, i), &JoinRequest{LoopIndex: li, Loop: e.loops[li], Member: &countMember{}, User: "u"})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrRoomLimit):
						refused.Add(1)
					}
				}
			})
		}()
	}
	wg.Wait()
	if ok.Load() != limit || refused.Load() != tries-limit || e.hub.Stats.Rooms.Load() != limit {
		t.Fatalf("%d joined, %d refused, Stats.Rooms %d; want %d, %d, %d", ok.Load(), refused.Load(), e.hub.Stats.Rooms.Load(), limit, tries-limit, limit)
	}
}

// JoinRequest.Create is asked only for a join that creates the room; its
// error fails the join and creates nothing.
func TestJoinCreateHook(t *testing.T) {
	e := newEnv(t, Config{Loops: 1})
	var calls int
	var refuse error
	create := func() error { calls++; return refuse }
	e.join(t, "a:1", 0, JoinRequest{Create: create})
	e.join(t, "a:1", 0, JoinRequest{Create: create})
	if calls != 1 {
		t.Fatalf("Create called %d times for one new room, want 1", calls)
	}
	refuse = errors.New("too many rooms from this address")
	if _, _, _, err := e.tryJoin(t, "a:2", 0, JoinRequest{Create: create}); err != refuse {
		t.Fatalf("join refused by Create: %v", err)
	}
	if e.hub.Lookup("a:2") != nil || e.hub.Stats.Rooms.Load() != 1 || calls != 2 {
		t.Fatalf("after a refused creation: Stats.Rooms %d, calls %d", e.hub.Stats.Rooms.Load(), calls)
	}
	e.join(t, "a:1", 0, JoinRequest{Create: create}) // existing: not asked
	if calls != 2 {
		t.Fatalf("Create called for an existing room")
	}
}

// ---------------------------------------------------------------------------
// History memory

// A kept message costs about its msgpack payload, whatever formats the
// room's members use.
func TestHistoryBytesPerMessage(t *testing.T) {
	const n, body = 2000, 1000
	e := newEnv(t, Config{Loops: 1, Policy: func(string) Policy { return Policy{History: n} }})
	const room = "mem:1"
	e.loops[0].do(t, func() {
		for f := proto.Format(0); f < proto.NumFormats; f++ {
			if _, _, err := e.hub.Join(room, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: &countMember{}, Format: f, User: fmt.Sprint("u", f)}); err != nil {
				t.Error(err)
			}
		}
	})
	warm := strings.Repeat("w", body)
	for i := 0; i < 50; i++ { // the flight's buffers grow to their size
		e.publish(t, room, Message{From: "x", Name: "X", Body: warm})
	}
	settle(t, e.hub)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		b := []byte(strings.Repeat("b", body)) // a fresh body each: nothing shared
		copy(b, fmt.Sprint(i))
		e.publish(t, room, Message{From: "x", Name: "X", Body: string(b)})
		if i%100 == 0 {
			settle(t, e.hub)
		}
	}
	settle(t, e.hub)
	runtime.GC()
	runtime.ReadMemStats(&after)
	r := e.hub.Lookup(room)
	r.mu.Lock()
	mp := len(r.at(len(r.ring) - 1).mp)
	kept := len(r.ring)
	r.mu.Unlock()
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d messages kept, msgpack payload %d bytes, %d bytes retained per message", kept, mp, per)
	if kept != n {
		t.Fatalf("%d kept, want %d", kept, n)
	}
	if limit := int64(2*mp + 256); per > limit {
		t.Errorf("%d bytes retained per kept message, want at most %d (2x payload + 256)", per, limit)
	}
	runtime.KeepAlive(r)
}

// ---------------------------------------------------------------------------
// Panics

// panicMember panics in its first Deliver, then counts like countMember.
type panicMember struct {
	countMember
	panicked bool
}

func (m *panicMember) Deliver(frame []byte) {
	if !m.panicked {
		m.panicked = true
		panic("member bug")
	}
	m.countMember.Deliver(frame)
}

// A panic in a member's Deliver is counted, and the room's flights go on:
// the loop's other members get this flush and the later ones.
func TestPanicInDeliver(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, Policy: func(string) Policy { return Policy{MemberListMax: -1} }})
	const room = "panic:1"
	members := []Member{&countMember{}, &panicMember{}, &countMember{}}
	e.loops[0].do(t, func() {
		for i, m := range members {
			if _, _, err := e.hub.Join(room, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: m, User: fmt.Sprint("u", i)}); err != nil {
				t.Error(err)
			}
		}
	})
	e.publish(t, room, Message{From: "x", Body: "one"})
	settle(t, e.hub)
	e.publish(t, room, Message{From: "x", Body: "two"})
	settle(t, e.hub)
	if p := e.hub.Stats.Panics.Load(); p != 1 {
		t.Errorf("Stats.Panics = %d, want 1", p)
	}
	barrier := make(signal)
	barrier.wait(t, e.loops[0]) // the loop still runs; the members' counts are its own
	got := []int64{members[0].(*countMember).calls, members[1].(*panicMember).calls, members[2].(*countMember).calls}
	if !slices.Equal(got, []int64{2, 1, 2}) {
		t.Errorf("Deliver calls %v, want [2 1 2] (the panicking member misses the first)", got)
	}
}

// ---------------------------------------------------------------------------
// Member lists hidden from viewers

func TestViewersGetCounts(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, Policy: func(string) Policy { return Policy{NoViewerList: true} }})
	const room = "quiet:1"
	user, _, res := e.join(t, room, 0, JoinRequest{Name: "U"})
	if len(res.Members) != 1 {
		t.Fatalf("user joined with members %v", res.Members)
	}
	viewer, _, vres := e.join(t, room, 1, JoinRequest{Anon: true, Format: proto.JSON})
	if vres.Members != nil || vres.Count != 2 {
		t.Fatalf("viewer joined %+v, want count 2 and no members", vres)
	}
	e.join(t, room, 1, JoinRequest{User: "third", Name: "T"})
	e.publish(t, room, Message{From: "x", Body: "hi"})
	settle(t, e.hub)
	uw, vw := user.next(t), viewer.next(t)
	if p := presences(uw); len(p) != 2 || len(p[1].Joins) != 1 || p[1].Joins[0].ID != "third" {
		t.Errorf("user presence %+v, want the viewer's count and third's join", p)
	}
	if p := presences(vw); len(p) != 1 || p[0].Joins != nil || p[0].Count != 3 {
		t.Errorf("viewer presence %+v, want count 3 and no joins", p)
	}
	if len(batchMsgs(t, vw)) != 1 || len(batchMsgs(t, uw)) != 1 {
		t.Errorf("the message reached user %d, viewer %d times", len(batchMsgs(t, uw)), len(batchMsgs(t, vw)))
	}
}

// Writing a flight with a listed presence event to viewers and members
// allocates nothing.
func TestDeliverViewerFlightNoAllocs(t *testing.T) {
	const n = 500
	e := newEnv(t, Config{Loops: 1, Policy: func(string) Policy { return Policy{NoViewerList: true, MemberListMax: 10 * n} }})
	const room = "quiet:alloc"
	members := make([]*countMember, 2*n)
	e.loops[0].do(t, func() {
		for i := range members {
			members[i] = &countMember{}
			_, _, err := e.hub.Join(room, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: members[i], User: fmt.Sprint("u", i), Anon: i%2 == 0})
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	settle(t, e.hub)
	r := e.hub.Lookup(room)
	e.stopHousekeeper() // the test writes the flight again, long after it went out
	e.publish(t, room, Message{From: "x", Body: "m"})
	e.join(t, room, 0, JoinRequest{User: "last"}) // a listed join, written after the message
	settle(t, e.hub)
	if !r.fl.split {
		t.Fatalf("the last flight has no viewers' variant")
	}
	lr := r.loops[0]
	allocs := testing.AllocsPerRun(20, func() {
		for _, ms := range lr.members {
			ms.deliver(r.fl)
		}
	})
	if allocs != 0 {
		t.Errorf("deliver to %d members and viewers: %v allocations per flight, want 0", len(lr.members), allocs)
	}
	ctx := context.Background()
	allocs = testing.AllocsPerRun(20, func() {
		r.remaining.Store(1)
		_ = lr.Run(ctx)
	})
	if allocs != 0 {
		t.Errorf("loopRoom.Run with viewers: %v allocations, want 0", allocs)
	}
}
