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
	const n = 195
	r, m0 := stormRoom(t, e, "trim:storm", n)
	before := retained(r)
	if before <= 4*trimBytes {
		t.Fatalf("a storm of %d joins left only %d bytes of flight buffers: the test shows nothing", n, before)
	}
	e.hub.trim() // records the flights seen
	if got := retained(r); got != before {
		t.Fatalf("first pass after the storm's flight trimmed %d -> %d bytes; want kept until a pass finds the room idle", before, got)
	}
	e.hub.trim()
	after := retained(r)
	t.Logf("storm of %d joins: %d bytes of flight buffers kept, %d after trimming", n, before, after)
	if after > trimBytes {
		t.Errorf("after the trim pass the room keeps %d bytes of flight buffers; want at most %d", after, trimBytes)
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
	r, _ := stormRoom(t, e, "trim:busy", 195)
	before := retained(r)
	for i := range 3 {
		e.hub.trim()
		e.publish(t, "trim:busy", Message{From: "old", Body: "busy"})
		settle(t, e.hub)
		if got := retained(r); got < before {
			t.Fatalf("pass %d: a room flushing between passes went from %d to %d bytes of flight buffers; want kept", i, before, got)
		}
	}
}
