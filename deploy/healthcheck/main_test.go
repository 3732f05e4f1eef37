package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// TestHealthcheck asks a real relay: healthy while it runs (by /readyz, and
// by the public listener with the admin API off), unhealthy once it is shut
// down.
func TestHealthcheck(t *testing.T) {
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	_, adminPort, _ := net.SplitHostPort(srv.AdminAddr())
	if err := check("0.0.0.0:"+adminPort, "", time.Second); err != nil {
		t.Fatalf("running relay: %v", err)
	}
	if err := check("off", srv.Addr(), time.Second); err != nil {
		t.Fatalf("running relay, admin off: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if err := check(srv.AdminAddr(), "", time.Second); err == nil {
		t.Fatal("a stopped relay is healthy")
	}
	if err := check("off", srv.Addr(), time.Second); err == nil || !strings.Contains(err.Error(), "does not accept") {
		t.Fatalf("a stopped relay with admin off: %v", err)
	}
}
