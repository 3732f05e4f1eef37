package shard

import (
	"testing"
	"time"
)

// With FlushPerMember the window a publish opens is the room's count of
// connections times FlushPerMember, at most FlushInterval. No timing: the
// windows are long and ended by hand; the test reads when each would end.
func TestFlushWindowPerMember(t *testing.T) {
	const pm, budget = time.Minute, 10 * time.Minute
	e := newEnv(t, Config{Loops: 1, Policy: policies(map[string]Policy{
		"auto": {FlushInterval: budget, FlushPerMember: pm},
	})})
	for _, tc := range []struct {
		members int
		want    time.Duration
	}{{1, pm}, {3, 3 * pm}, {12, budget}} {
		room := "auto:" + time.Duration(tc.members).String()
		for range tc.members {
			e.join(t, room, 0, JoinRequest{})
		}
		r := e.hub.Lookup(room)
		endWindow(r) // the joins' presence waited too
		settle(t, e.hub)
		t0 := time.Now()
		e.publish(t, room, Message{From: "x", Body: "hi"})
		t1 := time.Now()
		r.mu.Lock()
		end, armed := r.windowEnd.time(), r.windowSet
		r.mu.Unlock()
		if !armed || end.Before(t0.Add(tc.want)) || end.After(t1.Add(tc.want)) {
			t.Errorf("%d members: window ends %v after the publish (armed %v), want %v",
				tc.members, end.Sub(t0), armed, tc.want)
		}
		endWindow(r)
		settle(t, e.hub)
	}
}
