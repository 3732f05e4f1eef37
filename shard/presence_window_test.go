package shard

import (
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// presWinMember is a member joined in a presence window test.
type presWinMember struct {
	m  *recMember
	ms *Membership
}

// joinStorm joins n members to room, alternating loops, and returns them in
// join order.
func joinStorm(t *testing.T, e *testEnv, room string, n int) []presWinMember {
	t.Helper()
	out := make([]presWinMember, n)
	for i := range out {
		m, ms, _ := e.join(t, room, i%len(e.loops), JoinRequest{User: fmt.Sprintf("j%02d", i)})
		out[i] = presWinMember{m: m, ms: ms}
	}
	return out
}

// checkJoinsSeen checks that m saw exactly the joins of users (each once)
// in the frames ws, and reports how many Deliver calls carried them.
func checkJoinsSeen(t *testing.T, who string, ws []wire, users []string) {
	t.Helper()
	seen := map[string]int{}
	for _, w := range presences(ws) {
		for _, j := range w.Joins {
			seen[j.ID]++
		}
	}
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

func writesOf(ws []wire) int {
	calls := map[int]bool{}
	for _, w := range ws {
		calls[w.call] = true
	}
	return len(calls)
}

// With a presence window, joins into a listed room wait for it and go out
// as one flight: one write per member, every join seen once by every other
// member, none by its own joiner. No timing: the window is ended by hand.
func TestPresenceWindowCoalescesJoins(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, PresenceWindow: time.Hour})
	const room = "pw:storm"
	r, m0 := oldMember(t, e, room)

	st := &e.hub.Stats
	flushes := st.Flushes.Load()
	const n = 20
	js := joinStorm(t, e, room, n)
	r.mu.Lock()
	pending, armed := len(r.pending), r.windowSet
	r.mu.Unlock()
	if got := st.Flushes.Load() - flushes; got != 0 || pending != n || !armed {
		t.Fatalf("during the window: %d flushes, %d pending, timer armed %v; want 0, %d, true", got, pending, armed, n)
	}
	endWindow(r)
	settle(t, e.hub)
	if got := st.Flushes.Load() - flushes; got != 1 {
		t.Errorf("%d joins went in %d flushes, want 1", n, got)
	}

	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("j%02d", i)
	}
	ws := m0.next(t)
	checkJoinsSeen(t, "the member already there", ws, users)
	if w := writesOf(ws); w != 1 {
		t.Errorf("the member already there got the joins in %d writes, want 1", w)
	}
	for i, j := range js {
		ws := j.m.next(t)
		checkJoinsSeen(t, users[i], ws, users[i+1:])
		if w, want := writesOf(ws), min(1, n-1-i); w != want {
			t.Errorf("%s got the later joins in %d writes, want %d", users[i], w, want)
		}
		for _, w := range presences(ws) {
			if w.Count <= i+2 {
				t.Errorf("%s got a presence of count %d, from before its join (count %d)", users[i], w.Count, i+2)
			}
		}
	}
}

// A message published into a presence window does not wait for it: it
// flushes at once (the room has no flush window), after the presence
// pending before it, in the same write.
func TestPresenceWindowMessageGoesAtOnce(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, PresenceWindow: time.Hour})
	const room = "pw:chat"
	_, m0 := oldMember(t, e, room)

	st := &e.hub.Stats
	js := joinStorm(t, e, room, 5)
	flushes := st.Flushes.Load()
	e.publish(t, room, Message{From: "old", Body: "hi"})
	if got := st.Flushes.Load() - flushes; got != 1 {
		t.Fatalf("a publish into a presence window made %d flushes before it returned, want 1", got)
	}
	settle(t, e.hub)
	ws := m0.next(t)
	if len(ws) != 6 || writesOf(ws) != 1 {
		t.Fatalf("got %d frames in %d writes, want 5 presence and a batch in 1", len(ws), writesOf(ws))
	}
	for i, w := range ws[:5] {
		if w.T != proto.TPresence || len(w.Joins) != 1 || w.Joins[0].ID != fmt.Sprintf("j%02d", i) {
			t.Errorf("frame %d: %+v, want the presence of j%02d", i, w, i)
		}
	}
	if got := batchMsgs(t, ws); len(got) != 1 || got[0].Body != "hi" {
		t.Errorf("got messages %+v, want hi after the presence", got)
	}
	for i, j := range js {
		ws := j.m.next(t)
		if got := batchMsgs(t, ws); len(got) != 1 {
			t.Errorf("j%02d got %d messages, want 1", i, len(got))
		}
		if writesOf(ws) != 1 {
			t.Errorf("j%02d got its frames in %d writes, want 1", i, writesOf(ws))
		}
	}
}

// The room's flush window still applies: a presence-only flight waits the
// longer of it and the presence window; a message cuts the wait back to the
// flush window counted from the window's start. With a short flush window
// the re-armed timer sends the message without an hour's wait.
func TestPresenceWindowWithFlushInterval(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, PresenceWindow: 2 * time.Hour, Policy: policies(map[string]Policy{
		"long":  {FlushInterval: time.Hour},
		"short": {FlushInterval: 20 * time.Millisecond},
		"big":   {FlushInterval: 3 * time.Hour},
	})})

	m, _, _ := e.join(t, "long:1", 0, JoinRequest{User: "old"})
	r := e.hub.Lookup("long:1")
	endWindow(r)
	settle(t, e.hub)
	m.next(t)
	t0 := time.Now()
	e.join(t, "long:1", 0, JoinRequest{User: "new"})
	t1 := time.Now()
	r.mu.Lock()
	end := r.windowEnd.time()
	r.mu.Unlock()
	if end.Before(t0.Add(2*time.Hour)) || end.After(t1.Add(2*time.Hour)) {
		t.Errorf("presence only: window ends %v after the join, want 2h", end.Sub(t0))
	}
	e.publish(t, "long:1", Message{From: "old", Body: "hi"})
	r.mu.Lock()
	end, pending := r.windowEnd.time(), len(r.pending)
	r.mu.Unlock()
	if end.Before(t0.Add(time.Hour)) || end.After(t1.Add(time.Hour)) || pending != 2 {
		t.Errorf("with a message: window ends %v after the join with %d pending, want 1h and 2", end.Sub(t0), pending)
	}
	endWindow(r)
	settle(t, e.hub)

	e.join(t, "big:1", 0, JoinRequest{User: "old"})
	r = e.hub.Lookup("big:1")
	endWindow(r)
	settle(t, e.hub)
	t0 = time.Now()
	e.join(t, "big:1", 0, JoinRequest{User: "new"})
	t1 = time.Now()
	r.mu.Lock()
	end = r.windowEnd.time()
	r.mu.Unlock()
	if end.Before(t0.Add(3*time.Hour)) || end.After(t1.Add(3*time.Hour)) {
		t.Errorf("flush window longer than the presence window: ends %v after the join, want 3h", end.Sub(t0))
	}
	endWindow(r)
	settle(t, e.hub)

	m, _, _ = e.join(t, "short:1", 0, JoinRequest{User: "old"})
	r = e.hub.Lookup("short:1")
	endWindow(r)
	settle(t, e.hub)
	m.next(t)
	e.join(t, "short:1", 0, JoinRequest{User: "new"})
	e.publish(t, "short:1", Message{From: "old", Body: "hi"})
	waitFor(t, "the message, by the flush window's timer", func() bool { return m.numCalls() > 0 })
	settle(t, e.hub)
	ws := m.next(t)
	if len(presences(ws)) != 1 || len(batchMsgs(t, ws)) != 1 {
		t.Errorf("got %+v, want the presence of new and the message", ws)
	}
}

// A negative presence window is the old behaviour: a join flushes at once.
func TestPresenceWindowOff(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, PresenceWindow: -1})
	m, _, _ := e.join(t, "pw:off", 0, JoinRequest{User: "old"})
	settle(t, e.hub)
	m.next(t)
	for i := range 3 {
		before := e.hub.Stats.Flushes.Load()
		e.join(t, "pw:off", 0, JoinRequest{User: fmt.Sprint("u", i)})
		if e.hub.Stats.Flushes.Load() != before+1 {
			t.Fatalf("join %d did not flush at once", i)
		}
		settle(t, e.hub)
	}
	if ws := m.next(t); len(presences(ws)) != 3 {
		t.Errorf("got %d presence frames, want 3", len(presences(ws)))
	}
}

// oldMember joins user "old" to room, lets the presence window of its join
// end, and reads what that flight brought it: a member already there when
// a test's joins come.
func oldMember(t *testing.T, e *testEnv, room string) (*Room, *recMember) {
	t.Helper()
	m0, _, _ := e.join(t, room, 0, JoinRequest{User: "old"})
	r := e.hub.Lookup(room)
	endWindow(r)
	settle(t, e.hub)
	m0.next(t)
	return r, m0
}
