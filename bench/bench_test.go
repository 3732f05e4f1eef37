package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

const testSecret = "s"

// TestMain lets the test binary serve as a worker process (-procs tests).
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) == "1" {
		if err := ServeWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startRelay runs a real relay on loopback for the test.
func startRelay(t *testing.T) *relay.Server {
	t.Helper()
	return testrelay.Start(t, testrelay.Config(testSecret), quiet)
}

// quiet discards the relay's log.
func quiet(c *relay.Config) { c.Logger = slog.New(slog.DiscardHandler) }

// smallConfig is a short run against srv.
func smallConfig(srv *relay.Server, scenario string) Config {
	return Config{
		URL: "ws://" + srv.Addr() + "/ws", Scenario: scenario, JWTSecret: testSecret,
		Duration: time.Second, WarmUp: 200 * time.Millisecond, DrainTimeout: 3 * time.Second,
		MetricsURL: "http://" + srv.AdminAddr() + "/metrics", Sample: 0.25,
	}
}

// runBench runs cfg and checks what must hold of every healthy run.
func runBench(t *testing.T, srv *relay.Server, cfg Config) *Report {
	t.Helper()
	before := srv.Hub().Stats.Deliveries.Load()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	c := rep.Connections
	if c.Connected != int64(c.Target) || c.Failed != 0 || c.JoinFailed != 0 || c.Dropped != 0 {
		t.Errorf("connections %+v, want all %d connected and none failed or dropped", c, c.Target)
	}
	if l := rep.Loss; l != (LossStats{}) {
		t.Errorf("loss %+v on a healthy relay, want none", l)
	}
	if len(rep.Errors) != 0 || len(rep.CloseCodes) != 0 {
		t.Errorf("errors %v, close codes %v; want none", rep.Errors, rep.CloseCodes)
	}
	if rep.Handshake.Count != int64(c.Target) || rep.Handshake.P50 <= 0 {
		t.Errorf("handshake latency %+v, want %d positive samples", rep.Handshake, c.Target)
	}
	if rep.Server == nil {
		t.Errorf("no server stats despite a metrics URL")
	}
	if rep.Scenario != Storm {
		// Every delivery the relay wrote reached a member, and nothing more.
		if got := srv.Hub().Stats.Deliveries.Load() - before; got != rep.Deliveries.Total {
			t.Errorf("relay wrote %d deliveries, members received %d", got, rep.Deliveries.Total)
		}
	}
	return rep
}

// checkMessages checks the publishing side of a run with publishers.
func checkMessages(t *testing.T, rep *Report) {
	t.Helper()
	m := rep.Messages
	if m.Sent == 0 || m.Acked != m.Sent || m.SendFailed != 0 {
		t.Errorf("messages %+v: want some sent, all acked", m)
	}
	if rep.Latency.Count == 0 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency %+v: want positive samples", rep.Latency)
	}
	if rep.Ack.Count == 0 || rep.Join.Count == 0 {
		t.Errorf("ack %+v, join %+v: want samples", rep.Ack, rep.Join)
	}
	if rep.Deliveries.Window == 0 || rep.Deliveries.PerSec <= 0 || rep.WindowSeconds <= 0 {
		t.Errorf("deliveries %+v in %.2fs: want some", rep.Deliveries, rep.WindowSeconds)
	}
}

func TestLobby(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Lobby)
	cfg.Connections, cfg.Rooms, cfg.Rate = 60, 6, 60
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	if rep.Messages.Publishers != 60 {
		t.Errorf("%d publishers, want every member", rep.Messages.Publishers)
	}
	// Every room has 10 members, each gets every message of its room.
	if want := rep.Messages.Acked * 10; rep.Deliveries.Total != want {
		t.Errorf("deliveries %d, want acked*10 = %d", rep.Deliveries.Total, want)
	}
	checkHandshakeCPU(t, rep.Connections.RelayCPUPerHandshakeUS, "connect phase")
}

func TestStream(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Stream)
	cfg.Connections, cfg.Publishers, cfg.Rate = 100, 4, 100
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	if want := rep.Messages.Acked * 100; rep.Deliveries.Total != want {
		t.Errorf("deliveries %d, want acked*members = %d", rep.Deliveries.Total, want)
	}
	if s := rep.Server; s != nil && s.Deliveries <= 0 {
		t.Errorf("server deliveries %v in the window, want some", s.Deliveries)
	}
}

func TestMixed(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Mixed)
	cfg.Connections, cfg.Rooms, cfg.Publishers, cfg.Rate = 120, 8, 16, 80
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
}

func TestStorm(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Storm)
	cfg.Connections, cfg.Rooms, cfg.Duration = 100, 2, 1500*time.Millisecond
	cfg.Rate = 40
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	s := rep.Storm
	if s == nil || s.Reconnected != 98 || s.Failed != 0 || s.Handshake.Count != 98 || s.Join.Count != 98 {
		t.Fatalf("storm %+v: want the 98 readers back", s)
	}
	if s.Seconds <= 0 {
		t.Errorf("storm took %vs", s.Seconds)
	}
	checkHandshakeCPU(t, rep.Connections.RelayCPUPerHandshakeUS, "connect phase")
	checkHandshakeCPU(t, s.RelayCPUPerHandshakeUS, "storm")
}

func TestSoakTimeline(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Soak)
	cfg.Connections, cfg.Duration = 40, 2*time.Second
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	window := 0
	for _, p := range rep.Timeline {
		if p.Phase == PhaseWindow {
			window++
		}
	}
	if window < 1 {
		t.Errorf("timeline %+v has no point in the window", rep.Timeline)
	}
}

func TestIdle(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Idle)
	cfg.Connections = 50
	rep := runBench(t, srv, cfg)
	if rep.Messages.Sent != 0 || rep.Join.Count != 0 || rep.Deliveries.Total != 0 {
		t.Errorf("idle run sent %d, joined %d, delivered %d; want nothing", rep.Messages.Sent, rep.Join.Count, rep.Deliveries.Total)
	}
	if rep.Server == nil || rep.Server.Connections != 50 {
		t.Errorf("server stats %+v, want 50 connections open in the window", rep.Server)
	}
}

// TestProcs runs the workers as processes (this test binary, see TestMain)
// and spreads connections over two source addresses.
func TestProcs(t *testing.T) {
	srv := startRelay(t)
	cfg := smallConfig(srv, Stream)
	cfg.Connections, cfg.Publishers, cfg.Rate = 60, 2, 40
	cfg.Procs, cfg.WorkerCommand = 2, []string{os.Args[0]}
	cfg.Sources = []string{"127.0.0.1", "127.0.0.2"}
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	if want := rep.Messages.Acked * 60; rep.Deliveries.Total != want {
		t.Errorf("deliveries %d, want acked*members = %d", rep.Deliveries.Total, want)
	}
	if rep.Client.Procs != 2 || rep.Client.CPUSeconds <= 0 {
		t.Errorf("client %+v, want 2 procs with CPU time", rep.Client)
	}
}

func TestConfigErrors(t *testing.T) {
	f := func(c Config, wantErr bool) {
		t.Helper()
		c = c.withDefaults()
		if err := c.validate(); (err != nil) != wantErr {
			t.Errorf("%+v: validate() = %v, want error %v", c, err, wantErr)
		}
	}
	f(Config{JWTSecret: "s"}, false)
	f(Config{JWTSecret: "s", Scenario: Idle}, false)
	f(Config{Scenario: Idle}, false)
	f(Config{}, true) // publishers without a secret
	f(Config{JWTSecret: "s", Scenario: "nope"}, true)
	f(Config{JWTSecret: "s", URL: "http://x"}, true)
	f(Config{JWTSecret: "s", Connections: 10, Rooms: 20}, true)
	f(Config{JWTSecret: "s", Sample: 2}, true)
	f(Config{JWTSecret: "s", Procs: -1}, true)
	f(Config{JWTSecret: "s", URL: "ws://a/ws, ws://b/ws", MetricsURL: "http://a/metrics,http://b/metrics"}, false)
	f(Config{JWTSecret: "s", URL: "ws://a/ws,ws://b/ws", MetricsURL: "http://a/metrics"}, true) // one per relay
	f(Config{JWTSecret: "s", URL: "ws://a/ws,ws://b/ws", RelayPID: 7}, true)
	f(Config{JWTSecret: "s", URL: " , "}, true)
	f(Config{JWTSecret: "s", URL: "ws://a/ws,http://b"}, true)
}
