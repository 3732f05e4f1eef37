package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/relaytest"
)

// ---------------------------------------------------------------------------
// Moderation scaffolding. recMember.frames knows batch and presence frames
// only; modFrames decodes every frame a member got, delete and clear too.

// modWire is any frame the room engine sends.
type modWire struct {
	T      string          `msgpack:"t" json:"t"`
	Room   string          `msgpack:"room" json:"room"`
	Seq    uint64          `msgpack:"seq" json:"seq"`
	Msgs   []proto.Message `msgpack:"msgs" json:"msgs"`
	Count  int             `msgpack:"count" json:"count"`
	Leaves []string        `msgpack:"leaves" json:"leaves"`
}

// modFrames decodes every frame delivered to m so far.
func modFrames(t testing.TB, m *recMember) []modWire {
	t.Helper()
	m.mu.Lock()
	calls := slices.Clone(m.calls)
	errs := slices.Clone(m.errs)
	m.mu.Unlock()
	for _, e := range errs {
		t.Errorf("member %s: %s", m.user, e)
	}
	var out []modWire
	for _, c := range calls {
		for _, f := range splitFrames(t, c) {
			var w modWire
			decodePayload(t, m.format, f.payload, &w)
			switch w.T {
			case proto.TBatch, proto.TPresence, proto.TDelete, proto.TClear:
			default:
				t.Fatalf("member %s: unexpected frame type %q", m.user, w.T)
			}
			out = append(out, w)
		}
	}
	return out
}

// modEvents lists a member's room traffic as [b1 b2 d2 c b3]: bN a message
// in a batch, dN a delete event, c a clear. Presence is left out.
func modEvents(t testing.TB, m *recMember, room string) []string {
	t.Helper()
	var out []string
	for _, w := range modFrames(t, m) {
		if w.Room != room {
			t.Errorf("member %s: frame of room %q, want %q", m.user, w.Room, room)
		}
		switch w.T {
		case proto.TBatch:
			for _, msg := range w.Msgs {
				out = append(out, fmt.Sprint("b", msg.Seq))
			}
		case proto.TDelete:
			out = append(out, fmt.Sprint("d", w.Seq))
		case proto.TClear:
			out = append(out, "c")
		}
	}
	return out
}

// modRaw returns every byte delivered to m.
func modRaw(m *recMember) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Join(m.calls, nil)
}

// modClock is a test clock for Config.Now.
type modClock = relaytest.Clock

func newModClock() *modClock { return relaytest.NewClock() }

// modHist joins room with a fresh member on loop 0 and returns the seqs of
// its history and its gap.
func modHist(t testing.TB, e *testEnv, room string, req JoinRequest) ([]uint64, JoinResult) {
	t.Helper()
	_, _, res := e.join(t, room, 0, req)
	return msgSeqs(histMsgs(t, req.Format, res)), res
}

// modCheckForgotten checks that the room keeps no content of a deleted
// message in its history ring.
func modCheckForgotten(t testing.TB, r *Room, bodies ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.ring {
		if !e.deleted {
			continue
		}
		if e.mp != nil {
			t.Errorf("deleted entry seq %d keeps its payload %q", e.seq, e.mp)
		}
		for _, body := range bodies {
			if bytes.Contains(e.mp, []byte(body)) {
				t.Errorf("deleted entry seq %d keeps %q", e.seq, body)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Delete

// A message deleted before its flush is never delivered, in any format; the
// delete event still follows, in order.
func TestDeletePendingNeverDelivered(t *testing.T) {
	e := newEnv(t, Config{Loops: 1})
	const room = "mod:pending"
	mp, _, _ := e.join(t, room, 0, JoinRequest{Format: proto.Msgpack})
	js, _, _ := e.join(t, room, 0, JoinRequest{Format: proto.JSON})
	settle(t, e.hub)

	b := e.loops[0].block(t)
	e.publish(t, room, Message{From: "x", Body: "first"}) // flight 1, queued behind the blocker
	e.publish(t, room, Message{From: "x", Body: "secret-2", Meta: map[string]string{"k": "secret-meta"}})
	e.publish(t, room, Message{From: "x", Body: "three"})
	r := e.hub.Lookup(room)
	r.mu.Lock()
	inFlight, pending := r.inFlight, len(r.pending)
	r.mu.Unlock()
	if !inFlight || pending != 2 {
		t.Fatalf("with the loop blocked: inFlight %v, %d pending; want true, 2", inFlight, pending)
	}
	if !r.Delete(2) {
		t.Fatalf("Delete of a pending message reported false")
	}
	b.release()
	settle(t, e.hub)

	for _, m := range []*recMember{mp, js} {
		if got := modEvents(t, m, room); !slices.Equal(got, []string{"b1", "b3", "d2"}) {
			t.Errorf("%v member: %v, want [b1 b3 d2]", m.format, got)
		}
		if raw := modRaw(m); bytes.Contains(raw, []byte("secret")) {
			t.Errorf("%v member got the deleted message's content", m.format)
		}
	}
	for _, f := range []proto.Format{proto.Msgpack, proto.JSON} {
		if got, res := modHist(t, e, room, JoinRequest{Format: f, History: -1}); !slices.Equal(got, []uint64{1, 3}) || res.Seq != 3 {
			t.Errorf("%v history %v seq %d, want [1 3] seq 3", f, got, res.Seq)
		}
		if got, res := modHist(t, e, room, JoinRequest{Format: f, HasSince: true, Since: 1, History: -1}); !slices.Equal(got, []uint64{3}) || res.Gap {
			t.Errorf("%v since 1: %v gap %v, want [3] gap false", f, got, res.Gap)
		}
	}
	modCheckForgotten(t, r, "secret")
	if r.Delete(2) {
		t.Errorf("a second Delete of seq 2 reported true")
	}
}

// A message deleted after its flush gets a delete event after its batch, in
// both formats and on every loop; joiners after it do not get it.
func TestDeleteFlushedQueuesDeleteEvent(t *testing.T) {
	e := newEnv(t, Config{Loops: 2})
	const room = "mod:flushed"
	mp, _, _ := e.join(t, room, 0, JoinRequest{Format: proto.Msgpack})
	js, _, _ := e.join(t, room, 1, JoinRequest{Format: proto.JSON})
	for i := 1; i <= 3; i++ {
		e.publish(t, room, Message{From: "x", Body: fmt.Sprint("m", i)})
	}
	settle(t, e.hub)
	r := e.hub.Lookup(room)
	if !r.Delete(2) {
		t.Fatalf("Delete(2) = false")
	}
	settle(t, e.hub)
	late, _, _ := e.join(t, room, 1, JoinRequest{Format: proto.JSON})
	e.publish(t, room, Message{From: "x", Body: "m4"})
	settle(t, e.hub)
	for _, m := range []*recMember{mp, js} {
		if got := modEvents(t, m, room); !slices.Equal(got, []string{"b1", "b2", "b3", "d2", "b4"}) {
			t.Errorf("%v member: %v, want [b1 b2 b3 d2 b4]", m.format, got)
		}
	}
	for _, w := range modFrames(t, mp) {
		if w.T == proto.TDelete && (w.Room != room || w.Seq != 2) {
			t.Errorf("delete frame %+v", w)
		}
	}
	if got := modEvents(t, late, room); !slices.Equal(got, []string{"b4"}) {
		t.Errorf("member joined after the delete went out: %v, want [b4]", got)
	}
	for _, seq := range []uint64{0, 2, 5, 99} {
		if r.Delete(seq) {
			t.Errorf("Delete(%d) = true", seq)
		}
	}
	settle(t, e.hub)
	if got := modEvents(t, mp, room); len(got) != 5 {
		t.Errorf("refused deletes sent events: %v", got)
	}
}

// History skips deleted messages: History n gives the latest n kept, and
// since resumes without a gap, also once the ring wrapped.
func TestHistorySkipsDeleted(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, Policy: policies(map[string]Policy{"h": {History: 10}})})
	const room = "h:1"
	for i := 1; i <= 8; i++ {
		e.publish(t, room, Message{From: "x", Body: fmt.Sprint("body-", i)})
	}
	r := e.hub.Lookup(room)
	for _, s := range []uint64{3, 6, 8} {
		if !r.Delete(s) {
			t.Fatalf("Delete(%d) = false", s)
		}
	}
	settle(t, e.hub)
	type tc struct {
		req  JoinRequest
		want []uint64
		gap  bool
	}
	since := func(s uint64, hist int) JoinRequest { return JoinRequest{HasSince: true, Since: s, History: hist} }
	run := func(when string, cases []tc) {
		t.Helper()
		for _, c := range cases {
			for _, f := range []proto.Format{proto.Msgpack, proto.JSON} {
				req := c.req
				req.Format = f
				got, res := modHist(t, e, room, req)
				if !slices.Equal(got, c.want) || res.Gap != c.gap {
					t.Errorf("%s: %v join %+v: history %v gap %v, want %v gap %v", when, f, c.req, got, res.Gap, c.want, c.gap)
				}
			}
		}
	}
	run("8 kept, 3 deleted", []tc{
		{JoinRequest{History: -1}, []uint64{1, 2, 4, 5, 7}, false},
		{JoinRequest{History: 3}, []uint64{4, 5, 7}, false},
		{JoinRequest{History: 1}, []uint64{7}, false},
		{JoinRequest{History: 0}, []uint64{}, false},
		{since(0, -1), []uint64{1, 2, 4, 5, 7}, false},
		{since(2, -1), []uint64{4, 5, 7}, false},
		{since(3, -1), []uint64{4, 5, 7}, false},
		{since(5, -1), []uint64{7}, false},
		{since(6, -1), []uint64{7}, false},
		{since(7, -1), []uint64{}, false},
		{since(8, -1), []uint64{}, false},
	})
	for i := 9; i <= 14; i++ {
		e.publish(t, room, Message{From: "x", Body: fmt.Sprint("body-", i)})
	}
	if !r.Delete(14) {
		t.Fatalf("Delete(14) = false")
	}
	if !r.Delete(3) || !r.Delete(4) {
		t.Errorf("Delete of a message aged out of history reported false: members that showed it are never told")
	}
	settle(t, e.hub)
	run("ring wrapped: 5..14 kept, 6 8 14 deleted", []tc{
		{JoinRequest{History: -1}, []uint64{5, 7, 9, 10, 11, 12, 13}, false},
		{JoinRequest{History: 3}, []uint64{11, 12, 13}, false},
		{since(4, -1), []uint64{5, 7, 9, 10, 11, 12, 13}, false},
		{since(5, -1), []uint64{7, 9, 10, 11, 12, 13}, false},
		{since(13, -1), []uint64{}, false},
		{since(3, -1), []uint64{5, 7, 9, 10, 11, 12, 13}, true}, // 4 aged out: a real gap
		{since(1, 2), []uint64{12, 13}, true},
	})
	// A member's repeated join skips them too.
	m, ms, _ := e.join(t, room, 0, JoinRequest{})
	var res JoinResult
	m.loop.do(t, func() { res = ms.Rejoin(&JoinRequest{HasSince: true, Since: 4, History: -1}) })
	if got := msgSeqs(histMsgs(t, proto.Msgpack, res)); !slices.Equal(got, []uint64{5, 7, 9, 10, 11, 12, 13}) {
		t.Errorf("rejoin since 4: %v", got)
	}
	modCheckForgotten(t, r, "body-6", "body-8", "body-14")
}

// ---------------------------------------------------------------------------
// Clear

func TestClear(t *testing.T) {
	e := newEnv(t, Config{Loops: 2})
	const room = "mod:clear"
	mp, _, _ := e.join(t, room, 0, JoinRequest{Format: proto.Msgpack})
	js, _, _ := e.join(t, room, 1, JoinRequest{Format: proto.JSON})
	for i := 1; i <= 5; i++ {
		e.publish(t, room, Message{From: "x", Body: fmt.Sprint("body-", i)})
	}
	settle(t, e.hub)
	r := e.hub.Lookup(room)
	r.Clear()
	settle(t, e.hub)
	for _, m := range []*recMember{mp, js} {
		if got := modEvents(t, m, room); !slices.Equal(got, []string{"b1", "b2", "b3", "b4", "b5", "c"}) {
			t.Errorf("%v member: %v", m.format, got)
		}
	}
	check := func(when string, want []uint64) {
		t.Helper()
		for _, f := range []proto.Format{proto.Msgpack, proto.JSON} {
			for _, req := range []JoinRequest{
				{History: -1}, {History: 2},
				{HasSince: true, Since: 0, History: -1}, {HasSince: true, Since: 3, History: -1}, {HasSince: true, Since: 5, History: -1},
			} {
				w := []uint64{}
				for _, s := range want {
					if !req.HasSince || s > req.Since {
						w = append(w, s)
					}
				}
				req.Format = f
				if got, res := modHist(t, e, room, req); !slices.Equal(got, w) || res.Gap {
					t.Errorf("%s: %v join %+v: %v gap %v, want %v gap false", when, f, req, got, res.Gap, w)
				}
			}
		}
	}
	check("after clear", nil)
	modCheckForgotten(t, r, "body-")

	// Messages after a clear are kept.
	e.publish(t, room, Message{From: "x", Body: "after"})
	settle(t, e.hub)
	check("a message after clear", []uint64{6})

	// A clear while messages are pending: those never go out.
	settle(t, e.hub)
	b := e.loops[0].block(t)
	b2 := e.loops[1].block(t)
	e.publish(t, room, Message{From: "x", Body: "in-flight-7"})
	e.publish(t, room, Message{From: "x", Body: "secret-8"})
	r.mu.Lock()
	inFlight, pending := r.inFlight, len(r.pending)
	r.mu.Unlock()
	if !inFlight || pending != 1 {
		t.Fatalf("with the loops blocked: inFlight %v, %d pending; want true, 1", inFlight, pending)
	}
	r.Clear()
	b.release()
	b2.release()
	settle(t, e.hub)
	for _, m := range []*recMember{mp, js} {
		got := modEvents(t, m, room)
		if tail := got[len(got)-4:]; !slices.Equal(tail, []string{"c", "b6", "b7", "c"}) {
			t.Errorf("%v member: %v, want it to end with [c b6 b7 c]", m.format, got)
		}
		if bytes.Contains(modRaw(m), []byte("secret-8")) {
			t.Errorf("%v member got a message cleared before its flush", m.format)
		}
	}
	check("after a clear with pending messages", nil)
}

// ---------------------------------------------------------------------------
// Ban and timeout

func TestBanBlocksJoinAndPublish(t *testing.T) {
	e := newEnv(t, Config{Loops: 1})
	const room, other = "ban:1", "ban:2"
	e.join(t, room, 0, JoinRequest{User: "inside"})
	r := e.hub.Room(room)
	r.Ban("bad")
	r.Ban("inside") // the relay removes its memberships; its messages stop here
	if !r.Banned("bad") || r.Banned("good") {
		t.Fatalf("Banned: bad %v good %v", r.Banned("bad"), r.Banned("good"))
	}
	if _, ms, _, err := e.tryJoin(t, room, 0, JoinRequest{User: "bad"}); !errors.Is(err, ErrBanned) || ms != nil {
		t.Errorf("join of a banned user: %v %v, want ErrBanned", ms, err)
	}
	for _, u := range []string{"bad", "inside"} {
		if _, err := e.hub.Publish(room, &Message{From: u, Body: "hi", SlowExempt: true}); !errors.Is(err, ErrBanned) {
			t.Errorf("publish of banned %s: %v, want ErrBanned", u, err)
		}
	}
	if in := r.Info(); in.Seq != 0 || in.Count != 1 {
		t.Errorf("after refused joins and publishes: %+v", in)
	}
	e.join(t, room, 0, JoinRequest{User: "good"})
	e.publish(t, room, Message{From: "good", Body: "hi"})
	e.join(t, other, 0, JoinRequest{User: "bad"}) // other rooms unaffected
	e.publish(t, other, Message{From: "bad", Body: "hi"})

	if !r.Unban("bad") {
		t.Errorf("Unban of a banned user = false")
	}
	if r.Unban("bad") || r.Unban("never") {
		t.Errorf("Unban of a user not banned = true")
	}
	e.join(t, room, 0, JoinRequest{User: "bad"})
	if seq := e.publish(t, room, Message{From: "bad", Body: "back"}); seq != 2 {
		t.Errorf("seq %d after unban, want 2", seq)
	}
}

func TestTimeoutExpiresOnConfigClock(t *testing.T) {
	clk := newModClock()
	e := newEnv(t, Config{Loops: 1, Now: clk.Now})
	const room, other = "to:1", "to:2"
	r := e.hub.Room(room)
	r.Timeout("u", 30*time.Second)
	muted := func(what string, want time.Duration) {
		t.Helper()
		_, err := e.hub.Publish(room, &Message{From: "u", Body: "x", SlowExempt: true})
		var me *MutedError
		if !errors.As(err, &me) || me.Retry != want {
			t.Errorf("%s: %v, want MutedError retry %v", what, err, want)
		}
	}
	muted("at once", 30*time.Second)
	// A muted user may still join (and read).
	e.join(t, room, 0, JoinRequest{User: "u"})
	e.publish(t, room, Message{From: "v", Body: "others speak"})
	e.publish(t, other, Message{From: "u", Body: "other rooms too"})
	clk.Advance(10 * time.Second)
	muted("after 10s", 20*time.Second)
	clk.Advance(20*time.Second - time.Nanosecond)
	muted("a nanosecond before the end", time.Nanosecond)
	clk.Advance(time.Nanosecond)
	if seq := e.publish(t, room, Message{From: "u", Body: "free"}); seq != 2 {
		t.Errorf("seq %d after the timeout, want 2 (muted messages are not sequenced)", seq)
	}

	// The last timeout wins; zero lifts it.
	r.Timeout("u", time.Hour)
	r.Timeout("u", 5*time.Second)
	muted("replaced", 5*time.Second)
	r.Timeout("u", 0)
	e.publish(t, room, Message{From: "u", Body: "lifted"})
}

// Ended timeouts (and slow mode's last-sent times) are pruned by the
// housekeeper, so a busy room's moderation state does not grow forever.
func TestMutesPrunedByHousekeeper(t *testing.T) {
	clk := newModClock()
	e := newEnv(t, Config{Loops: 1, Now: clk.Now, EmptyRoomTTL: 4 * time.Millisecond})
	const room = "prune:1"
	e.join(t, room, 0, JoinRequest{}) // a member: the room itself stays
	r := e.hub.Lookup(room)
	for i := range 1000 {
		r.Timeout(fmt.Sprint("short-", i), time.Second)
	}
	r.Timeout("long", time.Hour)
	r.SetSlowMode(5 * time.Second)
	for i := range 100 {
		e.publish(t, room, Message{From: fmt.Sprint("talker-", i), Body: "x"})
	}
	sizes := func() (int, int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.mod.mutes), len(r.lastSent)
	}
	if m, s := sizes(); m != 1001 || s != 100 {
		t.Fatalf("%d mutes, %d last-sent; want 1001, 100", m, s)
	}
	clk.Advance(6 * time.Second)
	waitFor(t, "ended timeouts to be pruned", func() bool { m, s := sizes(); return m == 1 && s == 0 })
	if e.hub.Lookup(room) != r {
		t.Fatalf("a room with a member was dropped")
	}
	if _, err := e.hub.Publish(room, &Message{From: "long", Body: "x"}); err == nil {
		t.Errorf("the timeout that has not ended was pruned")
	}
}

// A room with bans is never dropped, however long it stays empty; once the
// last ban is lifted it is.
func TestRoomWithBansIsNotReaped(t *testing.T) {
	clk := newModClock()
	e := newEnv(t, Config{Loops: 1, Now: clk.Now, EmptyRoomTTL: 4 * time.Millisecond})
	r := e.hub.Room("keep:banned")
	r.Ban("x")
	e.hub.Room("gone:control")
	clk.Advance(time.Minute)
	waitFor(t, "the control room to be reaped", func() bool { return e.hub.Lookup("gone:control") == nil })
	time.Sleep(10 * time.Millisecond) // a few more reap passes
	if e.hub.Lookup("keep:banned") != r || !r.Banned("x") {
		t.Fatalf("a room with a ban was dropped")
	}
	if _, _, _, err := e.tryJoin(t, "keep:banned", 0, JoinRequest{User: "x"}); !errors.Is(err, ErrBanned) {
		t.Errorf("join after a long empty spell: %v, want ErrBanned", err)
	}
	r.Unban("x")
	settle(t, e.hub)
	clk.Advance(time.Minute)
	waitFor(t, "the room to be reaped once unbanned", func() bool { return e.hub.Lookup("keep:banned") == nil })
}

// A timeout still running when its room empties must not be lost.
func TestTimeoutSurvivesEmptyRoomReap(t *testing.T) {
	clk := newModClock()
	e := newEnv(t, Config{Loops: 1, Now: clk.Now, EmptyRoomTTL: 4 * time.Millisecond})
	e.hub.Room("to:empty").Timeout("u", time.Hour)
	e.hub.Room("gone:control")
	clk.Advance(time.Minute)
	waitFor(t, "the control room to be reaped", func() bool { return e.hub.Lookup("gone:control") == nil })
	_, err := e.hub.Publish("to:empty", &Message{From: "u", Body: "x"})
	var me *MutedError
	if !errors.As(err, &me) || me.Retry != time.Hour-time.Minute {
		t.Errorf("publish of a timed-out user after the room was empty: %v, want MutedError retry 59m", err)
	}
}

// ---------------------------------------------------------------------------
// Concurrency

// Delete, Clear, Ban, Timeout and slow mode racing publishers, flushes on
// two loops and joiners: no data race (under -race), each member's batches
// in seq order, no message delivered after its delete event, and no joiner
// history holding a message deleted before the join.
func TestModConcurrentWithTraffic(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, MaxBatchMsgs: 16, Policy: policies(map[string]Policy{"ham": {History: 64}})})
	const room = "ham:1"
	mp, _, _ := e.join(t, room, 0, JoinRequest{Format: proto.Msgpack, User: "reader-mp"})
	js, _, _ := e.join(t, room, 1, JoinRequest{Format: proto.JSON, User: "reader-js"})
	r := e.hub.Room(room)

	var (
		mu      sync.Mutex
		deleted = map[uint64]bool{}
		errs    []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if _, err := e.hub.Publish(room, &Message{From: fmt.Sprint("pub-", p), Body: fmt.Sprint("m-", p, "-", i),
					Meta: map[string]string{"i": fmt.Sprint(i)}, SlowExempt: true}); err != nil {
					fail("publish: %v", err)
					return
				}
				if i%20 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // deletes of recent messages, some still pending
		defer wg.Done()
		for i := 0; time.Now().Before(deadline); i++ {
			seq := r.Info().Seq
			if seq > uint64(i%5) {
				seq -= uint64(i % 5)
			}
			if r.Delete(seq) {
				mu.Lock()
				deleted[seq] = true
				mu.Unlock()
			}
			time.Sleep(20 * time.Microsecond)
		}
	}()
	wg.Add(1)
	go func() { // clears, bans, timeouts, slow mode
		defer wg.Done()
		for i := 0; time.Now().Before(deadline); i++ {
			switch i % 6 {
			case 0:
				r.Clear()
			case 1:
				r.Ban(fmt.Sprint("victim-", i%10))
			case 2:
				r.Unban(fmt.Sprint("victim-", (i+5)%10))
			case 3:
				r.Timeout(fmt.Sprint("victim-", i%10), time.Duration(i%3)*time.Millisecond)
			case 4:
				r.SetSlowMode(time.Duration(i%2) * time.Millisecond)
			case 5:
				_, _ = e.hub.Publish(room, &Message{From: fmt.Sprint("victim-", i%10), Body: "v"})
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for li := range 2 {
		wg.Add(1)
		go func() { // joiners: history never holds a message deleted before the join
			defer wg.Done()
			var held []*Membership
			m := &recMember{loop: e.loops[li], format: proto.Format(li), user: fmt.Sprint("joiner-", li)}
			for i := 0; time.Now().Before(deadline); i++ {
				mu.Lock()
				before := make(map[uint64]bool, len(deleted))
				for s := range deleted {
					before[s] = true
				}
				mu.Unlock()
				done := make(chan struct{})
				_ = e.loops[li].Execute(funcTask(func() {
					defer close(done)
					req := JoinRequest{LoopIndex: li, Loop: e.loops[li], Member: m, Format: proto.Format(li),
						User: fmt.Sprint("joiner-", li, "-", i%3), History: -1}
					if i%2 == 1 {
						req.HasSince, req.Since = true, r.Info().Seq/2
					}
					ms, res, err := e.hub.Join(room, &req)
					if err != nil {
						fail("join: %v", err)
						return
					}
					held = append(held, ms)
					if len(held) > 3 {
						held[0].Leave()
						held = held[1:]
					}
					var last uint64
					for _, b := range res.History {
						var msg proto.Message
						if err := decodeInto(req.Format, b, &msg); err != nil {
							fail("history: %v", err)
							return
						}
						if before[msg.Seq] {
							fail("joined history holds seq %d, deleted before the join", msg.Seq)
						}
						if msg.Seq <= last {
							fail("joined history out of order: %d after %d", msg.Seq, last)
						}
						last = msg.Seq
					}
				}))
				<-done
			}
			done := make(chan struct{})
			_ = e.loops[li].Execute(funcTask(func() {
				defer close(done)
				for _, ms := range held {
					ms.Leave()
				}
			}))
			<-done
		}()
	}
	wg.Wait()
	settle(t, e.hub)
	for _, s := range errs[:min(10, len(errs))] {
		t.Error(s)
	}

	for _, m := range []*recMember{mp, js} {
		var last uint64
		gone := map[uint64]bool{}
		msgs, dels, clears := 0, 0, 0
		for _, w := range modFrames(t, m) {
			switch w.T {
			case proto.TBatch:
				for _, msg := range w.Msgs {
					if msg.Seq <= last {
						t.Fatalf("%v member: seq %d after %d", m.format, msg.Seq, last)
					}
					if gone[msg.Seq] {
						t.Fatalf("%v member: seq %d delivered after its delete event", m.format, msg.Seq)
					}
					last = msg.Seq
					msgs++
				}
			case proto.TDelete:
				gone[w.Seq] = true
				dels++
			case proto.TClear:
				clears++
			}
		}
		t.Logf("%v member: %d messages (last seq %d), %d deletes, %d clears", m.format, msgs, last, dels, clears)
		if msgs == 0 || dels == 0 || clears == 0 {
			t.Errorf("%v member: %d messages, %d deletes, %d clears: the test did not exercise moderation", m.format, msgs, dels, clears)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range []proto.Format{proto.Msgpack, proto.JSON} {
		got, _ := modHist(t, e, room, JoinRequest{Format: f, History: -1})
		for _, s := range got {
			if deleted[s] {
				t.Errorf("%v history holds deleted seq %d", f, s)
			}
		}
	}
	modCheckForgotten(t, r)
}

func decodeInto(f proto.Format, b []byte, v any) error {
	if f == proto.JSON {
		return json.Unmarshal(b, v)
	}
	return msgpack.Unmarshal(b, v)
}
