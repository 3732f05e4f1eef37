package relay_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestReusePortLoopsAccept: on a fixed port every loop accepts on its own
// SO_REUSEPORT listener; connections reach both loops and work, and a
// second relay on the same address still fails to start.
func TestReusePortLoopsAccept(t *testing.T) {
	addr := freePort(t)
	srv := startRelay(t, func(c *relay.Config) { c.Listen, c.Loops = addr, 2 })
	if srv.Addr() != addr {
		t.Fatalf("listening on %s, want %s", srv.Addr(), addr)
	}
	const n = 24
	for i := 0; i < n; i++ {
		c := dial(t, srv, dialOpts{token: token(t, fmt.Sprintf("u%d", i), "U", "")})
		defer c.conn.Close()
		c.join("lobby", 1)
	}
	m := metricsOf(t, srv)
	l0, l1 := m[`roomcast_loop_connections{loop="0"}`], m[`roomcast_loop_connections{loop="1"}`]
	if l0+l1 != n || l0 == 0 || l1 == 0 { // all on one loop: a chance of 2^-23 with the kernel's hash
		t.Fatalf("loop connections %v and %v, want %d over both", l0, l1, n)
	}

	cfg := testrelay.Config(testSecret)
	cfg.Listen = addr
	second, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second relay on %s: Start = %v, want address already in use", addr, err)
	}
}
