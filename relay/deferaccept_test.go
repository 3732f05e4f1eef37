package relay_test

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay"
)

// readUpgraded reads the 101 answer and the first frame after it.
func readUpgraded(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("status %q, err %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	f, err := ws.ReadFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	return f.Payload
}

// TestDeferAcceptLateRequest: with TCP_DEFER_ACCEPT on the listener, a
// client that connects and is silent for a while is not yet accepted (no
// loop woke for it), and is served as soon as its request arrives.
func TestDeferAcceptLateRequest(t *testing.T) {
	for _, loops := range []int{1, 2} { // one loop: its own SO_REUSEPORT listener; two on port 0: one acceptor
		srv := startRelay(t, func(c *relay.Config) { c.Loops = loops })
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(300 * time.Millisecond) // well before the SYN-ACK is resent (1 s)
		if n := metricsOf(t, srv)["roomcast_connections_accepted_total"]; n != 0 {
			t.Fatalf("loops %d: %v connections accepted before any byte was sent, want 0 (TCP_DEFER_ACCEPT not set?)", loops, n)
		}
		if _, err := c.Write([]byte(upgradeRequest("/ws?token="+token(t, "late", "Late", ""), "Sec-WebSocket-Protocol: roomcast.v1.msgpack"))); err != nil {
			t.Fatal(err)
		}
		if hello := readUpgraded(t, c); !bytes.Contains(hello, []byte("hello")) || !bytes.Contains(hello, []byte("late")) {
			t.Fatalf("loops %d: first frame %q, want the hello of late", loops, hello)
		}
	}
}

// TestDeferAcceptSilentClient: a client that connects and never sends is
// still accepted (when the kernel resends the SYN-ACK, about a second
// later), so the relay's handshake timeout covers it as before.
func TestDeferAcceptSilentClient(t *testing.T) {
	srv := startRelay(t, nil)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "the silent connection accepted", func() bool {
		return metricsOf(t, srv)["roomcast_connections_accepted_total"] == 1
	})
}
