package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

// compressConfig is a small stream run: one room, a few publishers.
func compressConfig(srv *relay.Server, compress bool) Config {
	cfg := smallConfig(srv, Stream)
	cfg.Connections, cfg.Publishers, cfg.Rate, cfg.Compress = 200, 4, 40, compress
	return cfg
}

// TestCompressStream: the same stream run with -compress reports fewer
// wire bytes per delivery than without, its messages inflate to what the
// plain run carries, nothing is lost, and the report's JSON and table
// carry the figures.
func TestCompressStream(t *testing.T) {
	srv := startRelay(t)
	plain := runBench(t, srv, compressConfig(srv, false))
	z := runBench(t, srv, compressConfig(srv, true))
	for _, rep := range []*Report{plain, z} {
		checkMessages(t, rep)
		if rep.Loss.Lost != 0 || rep.Loss.BadFrames != 0 {
			t.Errorf("compress %v: loss %+v", rep.Config.Compress, rep.Loss)
		}
		if rep.Deliveries.WireBytes <= 0 || rep.Deliveries.WireBytesPerDelivery <= 0 {
			t.Fatalf("compress %v: deliveries %+v, want wire bytes", rep.Config.Compress, rep.Deliveries)
		}
	}
	pd, zd := plain.Deliveries, z.Deliveries
	t.Logf("wire bytes per delivery: plain %.1f, compressed %.1f (inflated %.1f)", pd.WireBytesPerDelivery, zd.WireBytesPerDelivery, zd.InflatedBytesPerDelivery)
	if zd.WireBytesPerDelivery >= pd.WireBytesPerDelivery {
		t.Errorf("compressed run: %.1f wire bytes per delivery, plain run %.1f: want fewer", zd.WireBytesPerDelivery, pd.WireBytesPerDelivery)
	}
	if zd.InflatedBytesPerDelivery <= zd.WireBytesPerDelivery {
		t.Errorf("compressed run: %.1f inflated bytes per delivery, %.1f on the wire: the frames were not compressed",
			zd.InflatedBytesPerDelivery, zd.WireBytesPerDelivery)
	}
	if pd.InflatedBytes != 0 || pd.InflatedBytesPerDelivery != 0 {
		t.Errorf("plain run reports inflated bytes: %+v", pd)
	}
	b, err := json.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"compress":true`, `"wire_bytes_per_delivery":`, `"inflated_bytes_per_delivery":`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON report lacks %s", k)
		}
	}
	var text strings.Builder
	if err := z.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "inflated") {
		t.Errorf("table lacks the inflated bytes:\n%s", text.String())
	}
}

// TestCompressDeclined: against a relay with compression off, -compress
// clients fail their dial with no_deflate rather than measure plain
// traffic as compressed.
func TestCompressDeclined(t *testing.T) {
	srv := testrelay.Start(t, testrelay.Config(testSecret), quiet, func(c *relay.Config) { c.NoCompression = true })
	cfg := Config{URL: "ws://" + srv.Addr() + "/ws", Scenario: Idle, Connections: 3, Compress: true,
		Duration: 100 * time.Millisecond, WarmUp: -1}
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if c := rep.Connections; c.Connected != 0 || c.DialErrors["no_deflate"] != 3 {
		t.Errorf("connections %+v, want all 3 failed with no_deflate", c)
	}
}
