package relay_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// TestSendBufferSet: with SendBuffer set, the relay's side of a public
// connection has that kernel send buffer (Linux reports it doubled), so a
// reader that stops reading holds a bounded amount of kernel memory before
// the outbound cap counts; with it zero, the kernel's own size is left.
func TestSendBufferSet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   int
		fixed bool // a fixed port: every loop accepts on its own SO_REUSEPORT listener
	}{{"64KiB", 64 << 10, false}, {"64KiB-each-loop", 64 << 10, true}, {"kernel", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRelay(t, func(c *relay.Config) {
				c.SendBuffer, c.Loops = tc.set, 2
				if tc.fixed {
					c.Listen = freePort(t)
				}
			})
			for i := 0; i < 4; i++ { // over both loops' listeners, most likely
				c := dial(t, srv, dialOpts{})
				defer c.conn.Close()
				got := relaySndbuf(t, srv.Addr(), c.conn.LocalAddr().String())
				if tc.set > 0 && got != 2*tc.set {
					t.Fatalf("SO_SNDBUF of the relay's socket %d, want %d", got, 2*tc.set)
				}
				if tc.set == 0 && got == 2*(64<<10) {
					t.Fatalf("SO_SNDBUF %d with SendBuffer zero: the kernel's size should be left", got)
				}
			}
		})
	}
}

// relaySndbuf finds, among this process's descriptors, the relay's socket
// on listen whose peer is client, and returns its SO_SNDBUF.
func relaySndbuf(t *testing.T, listen, client string) int {
	t.Helper()
	lp, cp := port(t, listen), port(t, client)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		local, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		peer, err := unix.Getpeername(fd)
		if err != nil {
			continue
		}
		l, ok1 := local.(*unix.SockaddrInet4)
		p, ok2 := peer.(*unix.SockaddrInet4)
		if !ok1 || !ok2 || l.Port != lp || p.Port != cp {
			continue
		}
		n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err != nil {
			t.Fatalf("getsockopt: %v", err)
		}
		return n
	}
	t.Fatalf("no socket of the relay on %s with peer %s", listen, client)
	return 0
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSlowConsumerCutOffResets: a slow consumer that still does not read
// when slowCloseLimit passes is cut off with a reset, so the kernel drops
// what it still held for it (the relay's send buffer, up to 4 MiB when
// autotuned) rather than going on sending it to a peer that does not read.
// Read afterwards, the connection ends in ECONNRESET, not in a slow EOF
// after the kernel's backlog.
func TestSlowConsumerCutOffResets(t *testing.T) {
	t.Parallel()
	srv := startRelay(t, func(c *relay.Config) { c.MaxOutbound = 64 << 10 })
	slow := dialSmall(t, srv, dialOpts{})
	slow.expect("hello")
	slow.join("stream", 1)
	body := strings.Repeat("x", 400)
	for i := 0; metricsOf(t, srv)["roomcast_slow_consumers_total"] == 0; i++ {
		if i == 2000 {
			t.Fatal("100000 messages and the member is not slow")
		}
		for j := 0; j < 50; j++ {
			if _, err := srv.Hub().Publish("stream", &shard.Message{From: "bot", Body: body}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The relay cuts it off slowCloseLimit (5 s) after, at a tick.
	for end := time.Now().Add(20 * time.Second); metricsOf(t, srv)[`roomcast_connections{anonymous="true",kind="ws"}`] != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the slow consumer was not cut off")
		}
	}
	_ = slow.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, slow.br)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d bytes after the cut, then %v; want ECONNRESET", n, err)
	}
}
