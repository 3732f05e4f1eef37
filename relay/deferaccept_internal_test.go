//go:build linux

package relay

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDeferAcceptEveryListener: Start sets TCP_DEFER_ACCEPT on every
// public listener: each loop's own with SO_REUSEPORT on a fixed port, the
// one acceptor's on port 0.
func TestDeferAcceptEveryListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := ln.Addr().String()
	_ = ln.Close()
	for _, c := range []struct {
		listen    string
		loops     int
		listeners int
	}{{fixed, 2, 2}, {"127.0.0.1:0", 2, 1}, {"127.0.0.1:0", 1, 1}} {
		srv, err := New(Config{Listen: c.listen, Admin: "off", Loops: c.loops, JWTSecret: "s", NodeID: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		fds := publicListeners(srv.Addr())
		if len(fds) != c.listeners {
			t.Errorf("%s with %d loops: %d listeners, want %d", c.listen, c.loops, len(fds), c.listeners)
		}
		for _, fd := range fds {
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); err != nil || v == 0 {
				t.Errorf("%s with %d loops: listener fd %d has TCP_DEFER_ACCEPT %d (%v), want it set", c.listen, c.loops, fd, v, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
}
