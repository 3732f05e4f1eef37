package shard

import (
	"fmt"
	"testing"
	"time"
)

// Without a flush window a publish into an idle room hands out its flight
// before Publish returns; with one, the room waits and then writes all that
// came in the window as one batch; a full batch's worth goes at once.
func TestFlushWindow(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, MaxBatchMsgs: 8, Policy: policies(map[string]Policy{
		"win": {FlushInterval: time.Hour}, // ended by hand below: no timing in this test
	})})
	st := &e.hub.Stats

	// Window 0: every publish into an idle room flushes at once.
	m0, _, _ := e.join(t, "now:1", 0, JoinRequest{})
	settle(t, e.hub)
	m0.next(t)
	for i := range 3 {
		before := st.Flushes.Load()
		e.publish(t, "now:1", Message{From: "x", Body: fmt.Sprint(i)})
		if st.Flushes.Load() != before+1 {
			t.Fatalf("window 0: publish %d did not flush at once", i)
		}
		settle(t, e.hub)
	}
	if got := batches(t, m0.next(t)); len(got) != 3 {
		t.Fatalf("window 0: %d batches for 3 messages", len(got))
	}

	// A window: publishes wait, then go as one batch.
	m, _, _ := e.join(t, "win:1", 0, JoinRequest{})
	r := e.hub.Lookup("win:1")
	endWindow(r) // the join's presence waited too
	settle(t, e.hub)
	m.next(t)
	before := st.Flushes.Load()
	for i := range 5 {
		e.publish(t, "win:1", Message{From: "x", Body: fmt.Sprint(i)})
	}
	r.mu.Lock()
	pending, armed := len(r.pending), r.windowSet
	r.mu.Unlock()
	if st.Flushes.Load() != before || pending != 5 || !armed {
		t.Fatalf("window: %d flushes, %d pending, timer armed %v; want 0, 5, true", st.Flushes.Load()-before, pending, armed)
	}
	endWindow(r)
	settle(t, e.hub)
	got := batches(t, m.next(t))
	if len(got) != 1 || len(got[0].Msgs) != 5 {
		t.Fatalf("window: got %d batches (%v), want one of 5 messages", len(got), got)
	}

	// MaxBatchMsgs pending: no reason to wait.
	before = st.Flushes.Load()
	for i := range 8 {
		e.publish(t, "win:1", Message{From: "x", Body: fmt.Sprint(i)})
	}
	if st.Flushes.Load() != before+1 {
		t.Fatalf("window: %d flushes after a full batch, want 1", st.Flushes.Load()-before)
	}
	settle(t, e.hub)
	if got := batchMsgs(t, m.next(t)); len(got) != 8 {
		t.Fatalf("window: a full batch delivered %d messages, want 8", len(got))
	}
}

// time is the stamp as a time.Time (with its monotonic reading), for
// tests that check a window's end.
func (s stamp) time() time.Time { return stampBase.Add(time.Duration(s - 1)) }

// endWindow ends the room's flush window now, as its timer would.
func endWindow(r *Room) {
	r.mu.Lock()
	if r.windowEnd != 0 { // none is open after a lone join: nothing was queued
		r.windowEnd = stampNow() - 1
	}
	r.mu.Unlock()
	r.windowFired()
}

// A real window ends by its timer: messages published within it arrive
// together, without any other event to kick the room.
func TestFlushWindowTimer(t *testing.T) {
	e := newEnv(t, Config{Loops: 1, Policy: policies(map[string]Policy{"win": {FlushInterval: 20 * time.Millisecond}})})
	m, _, _ := e.join(t, "win:2", 0, JoinRequest{})
	settle(t, e.hub)
	m.next(t)
	for i := range 3 {
		e.publish(t, "win:2", Message{From: "x", Body: fmt.Sprint(i)})
	}
	waitFor(t, "the window's batch", func() bool { return m.numCalls() > 0 })
	settle(t, e.hub)
	if got := batchMsgs(t, m.next(t)); len(got) != 3 {
		t.Fatalf("got %d messages, want 3", len(got))
	}
}
