package shard

import (
	"testing"
	"time"
)

// stormRoom joins an old member and then a storm of n joiners, with mixed
// formats and anonymous viewers, into a listed room under a presence
// window, and lets the one flight of the storm go out.
func stormRoom(t *testing.T, e *testEnv, room string, n int) (*Room, *recMember) {
	t.Helper()
	r, m0 := oldMember(t, e, room)
	joinStorm(t, e, room, n)
	endWindow(r)
	settle(t, e.hub)
	return r, m0
}

// stopHousekeeper ends the hub's housekeeping goroutine (its trim pass
// would drop an idle room's flight), for tests that write a room's last
// flight again by hand, long after it went out. Call it once, from the
// test's goroutine.
func (e *testEnv) stopHousekeeper() {
	e.hub.Close()
	e.closed = true
}

func flightOf(r *Room) *flight {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fl
}

func retained(r *Room) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retainedLocked()
}

// After a join storm into a listed room, the room's flight buffers and
// pending slice have grown far past what a quiet room needs; two trim
// passes with no flight between them let them go, and the room works on.
func TestTrimIdleRoomAfterStorm(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, PresenceWindow: time.Hour,
		Policy: policies(map[string]Policy{"trim": {MemberListMax: 256}})})
	e.stopHousekeeper() // the test runs the passes: one of the housekeeper's could come between them
	const n = 195
	r, m0 := stormRoom(t, e, "trim:storm", n)
	before := retained(r)
	if before <= 4<<10 {
		t.Fatalf("a storm of %d joins left only %d bytes of flight buffers: the test shows nothing", n, before)
	}
	e.hub.trim() // records the flights seen
	if got := retained(r); got != before {
		t.Fatalf("first pass after the storm's flight trimmed %d -> %d bytes; want kept until a pass finds the room idle", before, got)
	}
	e.hub.trim()
	after := retained(r)
	t.Logf("storm of %d joins: %d bytes of flight buffers kept, %d after trimming", n, before, after)
	if after != 0 || flightOf(r) != nil {
		t.Errorf("after the trim pass the room keeps %d bytes of flight buffers (flight %p); want none", after, flightOf(r))
	}

	// The trimmed room still delivers.
	e.publish(t, "trim:storm", Message{From: "old", Body: "after"})
	settle(t, e.hub)
	got := 0
	for _, w := range m0.next(t) {
		for _, msg := range w.Msgs {
			if msg.Body == "after" {
				got++
			}
		}
	}
	if got != 1 {
		t.Fatalf("old member got the message after the trim %d times, want once", got)
	}
}

// A room that starts a flight between two trim passes is not idle: it
// keeps its buffers, so a busy room never reallocates them.
func TestTrimKeepsBusyRoomBuffers(t *testing.T) {
	e := newEnv(t, Config{Loops: 2, PresenceWindow: time.Hour,
		Policy: policies(map[string]Policy{"trim": {MemberListMax: 256}})})
	e.stopHousekeeper() // the test runs the passes: one of the housekeeper's could come between them
	r, _ := stormRoom(t, e, "trim:busy", 195)
	before, fl := retained(r), flightOf(r)
	for i := range 3 {
		e.hub.trim()
		e.publish(t, "trim:busy", Message{From: "old", Body: "busy"})
		settle(t, e.hub)
		if got := retained(r); got < before || flightOf(r) != fl {
			t.Fatalf("pass %d: a room flushing between passes went from %d to %d bytes of flight buffers (flight %p, was %p); want kept",
				i, before, got, flightOf(r), fl)
		}
	}
}

// A room that never flushed holds no flight; a quiet room's small flight
// (one message) goes too once a trim pass finds it idle, and the room's
// next message makes a new one and is delivered.
func TestTrimDropsQuietRoomFlight(t *testing.T) {
	e := newEnv(t, Config{Loops: 2})
	e.stopHousekeeper() // the test runs the passes
	m, ms, _ := e.join(t, "trim:quiet", 0, JoinRequest{User: "a"})
	r := ms.Room()
	if fl := flightOf(r); fl != nil {
		t.Fatalf("a room of one that never flushed holds a flight %p", fl)
	}
	e.publish(t, "trim:quiet", Message{From: "a", Body: "one"})
	settle(t, e.hub)
	if flightOf(r) == nil {
		t.Fatal("no flight after a message")
	}
	e.hub.trim()
	if flightOf(r) == nil {
		t.Fatal("the first pass after a flight dropped it")
	}
	e.hub.trim()
	if fl, n := flightOf(r), retained(r); fl != nil || n != 0 {
		t.Fatalf("an idle room keeps its flight %p (%d bytes) after two passes", fl, n)
	}
	e.publish(t, "trim:quiet", Message{From: "a", Body: "two"})
	settle(t, e.hub)
	var got []string
	for _, w := range m.next(t) {
		for _, msg := range w.Msgs {
			got = append(got, msg.Body)
		}
	}
	if len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("member got %q, want [one two]", got)
	}
}
