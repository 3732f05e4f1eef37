// Package testrelay starts real relays on loopback for tests of external
// test packages (relay_test, bench, dashboards, deploy, cmd/roomcast). It
// imports relay, so package relay's and package shard's internal tests
// cannot use it; the rest of the scaffolding is in relaytest.
package testrelay

import (
	"context"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// Config returns the base configuration of a test relay: WebSocket and
// admin listeners on 127.0.0.1:0, two loops, secret as JWTSecret, NodeID
// "test". Tests change what they need before Start.
func Config(secret string) relay.Config {
	return relay.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 2, JWTSecret: secret, NodeID: "test"}
}

// Start runs a relay with cfg after applying mods (nil ones are skipped);
// the test's cleanup shuts it down, waiting 10 s at most.
func Start(t testing.TB, cfg relay.Config, mods ...func(*relay.Config)) *relay.Server {
	t.Helper()
	for _, m := range mods {
		if m != nil {
			m(&cfg)
		}
	}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Logf("shutdown: %v", err)
		}
	})
	return srv
}

// MetricsURL is srv's /metrics URL, for relaytest.Scrape and friends.
func MetricsURL(srv *relay.Server) string { return "http://" + srv.AdminAddr() + "/metrics" }
