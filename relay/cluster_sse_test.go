package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// An /sse join on a node that does not follow the room yet waits until the
// room caught up with the stream: the history is the stream's (exactly the
// last n messages, none of them again as live ones), a resume with
// Last-Event-ID continues without a gap, and live messages from another
// node follow.
func TestClusterSSEJoinWaitsForStream(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a := startRelay(t, func(c *relay.Config) { c.NATS, c.NodeID, c.APIKey = ns.ClientURL(), "a", testAPIKey })
	b, c := startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	const room = "cl:sse"
	for i := 1; i <= 5; i++ {
		if seq := ssePublish(t, a, room, fmt.Sprint("m", i)); seq != uint64(i) {
			t.Fatalf("publish %d got seq %d", i, seq)
		}
	}

	// Node b has never seen the room.
	s := openSSE(t, b, "room="+room+"&history=3")
	ev := s.nextEvent(true)
	m := checkMsgEvent(t, ev)
	if m.Seq != 3 || m.Body != "m3" {
		t.Fatalf("first event on node b: %+v, want the history from seq 3", m)
	}
	epoch, _, _ := strings.Cut(ev.id, ":")
	s.expectSeqs(4, 5)
	s.expectQuiet(200 * time.Millisecond) // 1..5 are not delivered again as live
	seq := ssePublish(t, a, room, "m6")
	s.expectSeqs(seq)

	// Node c has never seen it either: a browser resuming from 3 of the
	// stream's epoch gets 4.. with no gap.
	r := openSSE(t, c, "room="+room, "Last-Event-ID", epoch+":3")
	for _, m := range r.expectSeqs(4, 5, 6) {
		if m.Body != fmt.Sprint("m", m.Seq) {
			t.Fatalf("resumed message %+v", m)
		}
	}
	r.expectQuiet(200 * time.Millisecond)
	seq = ssePublish(t, a, room, "m7")
	r.expectSeqs(seq)
	s.expectSeqs(seq)
}

// NATS unreachable: an /sse join of a room the node does not follow cannot
// catch up, and is answered 503 (unavailable) instead of an empty stream;
// the connection does not hang and is not counted as a stream.
func TestClusterSSEJoinUnavailable(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	srv := startNode(t, ns.ClientURL(), "solo")
	ns.Shutdown()
	ns.WaitForShutdown()
	eventually(t, "/readyz 503", func() bool { return readyz(t, srv) == http.StatusServiceUnavailable })

	start := time.Now()
	resp := sseGet(t, srv, "/sse?room=cl:sse-down")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/sse while NATS is down: %d, want 503", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	t.Logf("answered %d %q after %v", resp.StatusCode, strings.TrimSpace(string(body)), time.Since(start))
	if open := metricsOf(t, srv)[`roomcast_connections{anonymous="any",kind="sse"}`]; open != 0 {
		t.Errorf("sse connections gauge %v after a refused stream", open)
	}
}
