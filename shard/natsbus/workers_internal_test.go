package natsbus

import (
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/roomcast/roomcast/relay/proto"
)

func testGauge(t *testing.T, b *Bus) float64 {
	t.Helper()
	var m dto.Metric
	_ = b.m.workers.Write(&m)
	return m.GetGauge().GetValue()
}

// Sends to many rooms one after the other are stored by one reused worker
// goroutine, not one goroutine per publish (each would linger workerIdle),
// and every send still gets its room's seq.
func TestPublishWorkersReused(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL()})
	for i := range 40 {
		done := make(chan error, 1)
		var seq uint64
		b.Publish(fmt.Sprintf("workers:room%d", i), &proto.Message{Body: "x"}, func(s uint64, err error) {
			seq = s
			done <- err
		})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if seq != 1 {
			t.Fatalf("room %d: seq %d, want 1", i, seq)
		}
		time.Sleep(2 * time.Millisecond) // the worker that answered goes idle
	}
	// Each worker stays workerIdle; a slow machine may have started a second
	// one while the first was between two publishers, never one per send.
	if n := testGauge(t, b); n > 4 {
		t.Fatalf("%v publisher goroutines after 40 sequential sends, want at most 4", n)
	}
}
