package relay_test

import (
	"fmt"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// With flush_interval 50ms, ten messages published 5 ms apart reach a
// member in one or two batches (at most one per 50 ms of publishing); with
// the default 0 each is flushed as it comes, one batch each.
func TestFlushIntervalCoalesces(t *testing.T) {
	w := 50 * time.Millisecond
	srv := startRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"stream": {FlushInterval: &w}}
	})
	st := &srv.Hub().Stats
	m := dial(t, srv, dialOpts{json: true})
	m.join("stream:x", 1)
	m.join("lobby:x", 2)

	// Window 0 (lobby): each message is flushed alone, before the next.
	for i := range 10 {
		flushes := st.Flushes.Load()
		if _, err := srv.Hub().Publish("lobby:x", &shard.Message{From: "bot", Body: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		f := m.expect("batch")
		if n := len(f.list("msgs")); n != 1 || f.str("room") != "lobby:x" {
			t.Fatalf("window 0: batch of %d in %s, want 1 in lobby:x", n, f.str("room"))
		}
		// At least its own flush (a presence flush of the hub may land in
		// the same span on a loaded machine).
		if got := st.Flushes.Load() - flushes; got < 1 {
			t.Fatalf("window 0: publish %d made %d flushes, want its own", i, got)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Window 50 ms (stream).
	flushes := st.Flushes.Load()
	start := time.Now()
	for i := range 10 {
		if _, err := srv.Hub().Publish("stream:x", &shard.Message{From: "bot", Body: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if i < 9 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	span := time.Since(start)
	batches, msgs := 0, 0
	for msgs < 10 {
		f := m.expect("batch")
		if f.str("room") != "stream:x" {
			t.Fatalf("batch of room %s", f.str("room"))
		}
		batches++
		msgs += len(f.list("msgs"))
	}
	limit := int(span/w) + 1 // each window holds at least 50 ms of publishing
	t.Logf("window 50ms: 10 messages over %v came in %d batches (%d flushes)", span, batches, st.Flushes.Load()-flushes)
	if batches > limit || batches > 2 && span < 2*w {
		t.Fatalf("window 50ms: 10 messages over %v came in %d batches, want at most %d", span, batches, min(limit, 2))
	}
	if msgs != 10 {
		t.Fatalf("window 50ms: %d messages, want 10", msgs)
	}
}

// flush_interval comes from YAML as a duration and is checked.
func TestFlushIntervalConfig(t *testing.T) {
	var ns map[string]relay.Namespace
	if err := yaml.Unmarshal([]byte("stream: {flush_interval: 50ms}\n"), &ns); err != nil {
		t.Fatal(err)
	}
	if d := ns["stream"].FlushInterval; d == nil || *d != 50*time.Millisecond {
		t.Fatalf("flush_interval = %v, want 50ms", d)
	}
	for _, bad := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		cfg := relay.Config{Listen: "127.0.0.1:0", Namespaces: map[string]relay.Namespace{"stream": {FlushInterval: &bad}}}
		if _, err := relay.New(cfg); err == nil {
			t.Errorf("flush_interval %v accepted", bad)
		}
	}
}
