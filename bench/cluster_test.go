package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

// startCluster runs an embedded NATS server with JetStream (in a temp dir)
// and n relays sharing rooms through it, on loopback.
func startCluster(t *testing.T, n int) []*relay.Server {
	t.Helper()
	ns := relaytest.RunNATS(t, t.TempDir(), -1)
	var out []*relay.Server
	for i := range n {
		out = append(out, testrelay.Start(t, testrelay.Config(testSecret), quiet, func(c *relay.Config) {
			c.NodeID, c.NATS = fmt.Sprint("n", i), ns.ClientURL()
		}))
	}
	return out
}

// One room spread over three relays sharing a NATS JetStream, publishers on
// all three, two worker processes: the per-relay figures add up to the
// totals, each relay's deliveries are the ones its relay wrote, the bus
// figures are there, and nothing is lost.
func TestClusterPerNode(t *testing.T) {
	nodes := startCluster(t, 3)
	var urls, murls []string
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		urls = append(urls, "ws://"+n.Addr()+"/ws")
		murls = append(murls, "http://"+n.AdminAddr()+"/metrics")
		before[i] = n.Hub().Stats.Deliveries.Load()
	}
	cfg := Config{URL: strings.Join(urls, ","), MetricsURL: strings.Join(murls, ","), Scenario: Stream, JWTSecret: testSecret,
		Connections: 90, Publishers: 6, Rate: 60, Sample: 0.25,
		Duration: time.Second, WarmUp: 300 * time.Millisecond, DrainTimeout: 3 * time.Second,
		Procs: 2, WorkerCommand: []string{os.Args[0]}}
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkMessages(t, rep)
	if c := rep.Connections; c.Connected != 90 || c.Failed+c.JoinFailed+c.Dropped != 0 {
		t.Errorf("connections %+v", c)
	}
	if rep.Loss != (LossStats{}) || len(rep.Errors) != 0 || len(rep.CloseCodes) != 0 {
		t.Errorf("loss %+v, errors %v, close codes %v: want none", rep.Loss, rep.Errors, rep.CloseCodes)
	}
	if want := rep.Messages.Acked * 90; rep.Deliveries.Total != want {
		t.Errorf("deliveries %d, want acked*members = %d", rep.Deliveries.Total, want)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("%d nodes in the report, want 3", len(rep.Nodes))
	}
	var conns, target, sent, acked, deliv, window, lat, pubs int64
	for i, n := range rep.Nodes {
		if n.Index != i || n.URL != urls[i] || n.MetricsURL != murls[i] {
			t.Errorf("node %d: index %d, url %s, metrics %s", i, n.Index, n.URL, n.MetricsURL)
		}
		if n.Connections.Target != 30 || n.Connections.Connected != 30 || n.Messages.Publishers != 2 || n.Messages.Sent == 0 {
			t.Errorf("node %d: connections %+v, messages %+v: want 30 connections and 2 publishers sending", i, n.Connections, n.Messages)
		}
		if n.Loss != (LossStats{}) || len(n.Errors) != 0 {
			t.Errorf("node %d: loss %+v, errors %v", i, n.Loss, n.Errors)
		}
		// Every delivery a relay wrote reached one of its members.
		if got := nodes[i].Hub().Stats.Deliveries.Load() - before[i]; got != n.Deliveries.Total {
			t.Errorf("node %d: relay wrote %d deliveries, its members received %d", i, got, n.Deliveries.Total)
		}
		s := n.Server
		if s == nil || s.Deliveries <= 0 || s.Connections != 30 || s.CPUPerDeliveryUS <= 0 || s.Bus == nil ||
			s.Bus.MessagesIn <= 0 || s.Bus.MessagesOut <= 0 || s.Bus.Connected != 1 {
			t.Errorf("node %d: server %+v (bus %+v): want its window figures and bus traffic both ways", i, s, s.Bus)
		}
		conns += n.Connections.Connected
		target += int64(n.Connections.Target)
		sent += n.Messages.Sent
		acked += n.Messages.Acked
		deliv += n.Deliveries.Total
		window += n.Deliveries.Window
		lat += n.Latency.Count
		pubs += int64(n.Messages.Publishers)
	}
	r := rep
	if conns != r.Connections.Connected || target != int64(r.Connections.Target) || sent != r.Messages.Sent ||
		acked != r.Messages.Acked || deliv != r.Deliveries.Total || window != r.Deliveries.Window ||
		lat != r.Latency.Count || pubs != int64(r.Messages.Publishers) {
		t.Errorf("per-node sums (conns %d of %d, sent %d, acked %d, deliveries %d, window %d, latency samples %d, publishers %d) "+
			"differ from the totals %+v %+v %+v, latency n=%d", conns, target, sent, acked, deliv, window, lat, pubs,
			r.Connections, r.Messages, r.Deliveries, r.Latency.Count)
	}
	if s := r.Server; s == nil || s.Connections != 90 || s.Bus == nil || s.Bus.Connected != 3 {
		t.Errorf("server totals %+v: want the sum over the three relays", s)
	}
	var sb strings.Builder
	if err := rep.WriteText(&sb); err != nil || !strings.Contains(sb.String(), "node 2") {
		t.Errorf("text report lacks the per-node rows (%v):\n%s", err, sb.String())
	}
	t.Log("\n" + sb.String())
}
