package relay_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// scrapedFamily is what the metrics tests read of one metric family.
type scrapedFamily struct {
	help  string
	typ   string  // COUNTER, GAUGE, HISTOGRAM, ...
	count uint64  // histograms: sample count, summed over series
	sum   float64 // histograms: sample sum, summed over series
}

// familiesOf scrapes /metrics and returns every family by name.
func familiesOf(t testing.TB, srv *relay.Server) map[string]scrapedFamily {
	t.Helper()
	fams := scrape(t, srv)
	out := map[string]scrapedFamily{}
	for name, fam := range fams {
		f := scrapedFamily{help: fam.GetHelp(), typ: fam.GetType().String()}
		for _, m := range fam.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				f.count += h.GetSampleCount()
				f.sum += h.GetSampleSum()
			}
		}
		out[name] = f
	}
	return out
}

// histCount returns the sample count of a histogram.
func histCount(t testing.TB, srv *relay.Server, name string) uint64 {
	t.Helper()
	f, ok := familiesOf(t, srv)[name]
	if !ok || f.typ != "HISTOGRAM" {
		t.Fatalf("no histogram %s (have %+v)", name, f)
	}
	return f.count
}

func connGauge(anon bool) string {
	if anon {
		return `roomcast_connections{anonymous="true",kind="ws"}`
	}
	return `roomcast_connections{anonymous="false",kind="ws"}`
}

const (
	loop0 = `roomcast_loop_connections{loop="0"}`
	loop1 = `roomcast_loop_connections{loop="1"}`
)

func TestMetricsConnections(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.Loops = 2 })
	m0 := metricsOf(t, srv)
	hs0 := histCount(t, srv, "roomcast_handshake_seconds")
	for _, k := range []string{connGauge(false), connGauge(true), loop0, loop1, "roomcast_handshakes_total"} {
		if m0[k] != 0 {
			t.Fatalf("fresh relay: %s = %v", k, m0[k])
		}
	}
	var users, anons []*client
	for i, sub := range []string{"alice", "bob"} {
		users = append(users, dial(t, srv, dialOpts{token: token(t, sub, "", ""), json: i == 0}))
	}
	for i := 0; i < 3; i++ {
		anons = append(anons, dial(t, srv, dialOpts{json: i == 1}))
	}
	check := func(when string, handshakes, accepted, user, anon float64) {
		t.Helper()
		m := metricsOf(t, srv)
		if m["roomcast_handshakes_total"] != handshakes || m["roomcast_connections_accepted_total"] != accepted ||
			m[connGauge(false)] != user || m[connGauge(true)] != anon {
			t.Fatalf("%s: handshakes %v accepted %v users %v anonymous %v, want %v %v %v %v", when,
				m["roomcast_handshakes_total"], m["roomcast_connections_accepted_total"], m[connGauge(false)], m[connGauge(true)],
				handshakes, accepted, user, anon)
		}
		if m[loop0]+m[loop1] != user+anon {
			t.Fatalf("%s: loop connections %v + %v, want %v", when, m[loop0], m[loop1], user+anon)
		}
	}
	check("5 open", 5, 5, 2, 3)
	m := metricsOf(t, srv)
	if m[loop0] == 0 || m[loop1] == 0 {
		t.Fatalf("5 connections on 2 loops: %v and %v", m[loop0], m[loop1])
	}
	if got := histCount(t, srv, "roomcast_handshake_seconds") - hs0; got != 5 {
		t.Fatalf("roomcast_handshake_seconds got %d samples for 5 handshakes", got)
	}

	// A refused upgrade is no handshake and no open WebSocket.
	if _, err := tryDial(t, srv, dialOpts{token: "not-a-token"}); err == nil {
		t.Fatal("dial with a bad token succeeded")
	}
	eventually(t, "the refused connection to go", func() bool {
		m := metricsOf(t, srv)
		return m[loop0]+m[loop1] == 5 && m["roomcast_connections_accepted_total"] == 6
	})
	check("after a refused upgrade", 5, 6, 2, 3)
	if got := metricsOf(t, srv)[`roomcast_handshake_failures_total{reason="auth"}`]; got != 1 {
		t.Fatalf(`roomcast_handshake_failures_total{reason="auth"} = %v, want 1`, got)
	}
	if got := histCount(t, srv, "roomcast_handshake_seconds") - hs0; got != 5 {
		t.Fatalf("roomcast_handshake_seconds got %d samples for 5 handshakes and a refusal", got)
	}

	// Closing sockets brings the gauges down (OnClose runs asynchronously).
	users[0].conn.Close()
	anons[0].conn.Close()
	anons[2].conn.Close()
	eventually(t, "3 connections to close", func() bool {
		m := metricsOf(t, srv)
		return m[connGauge(false)] == 1 && m[connGauge(true)] == 1 && m[loop0]+m[loop1] == 2
	})
	check("2 open", 5, 6, 1, 1)

	// A close frame from the client is answered and counted as a normal close.
	users[1].raw(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	users[1].expectClose(1000)
	users[1].conn.Close()
	anons[1].conn.Close()
	eventually(t, "every connection to close", func() bool {
		m := metricsOf(t, srv)
		return m[connGauge(false)] == 0 && m[connGauge(true)] == 0 && m[loop0] == 0 && m[loop1] == 0
	})
	check("all closed", 5, 6, 0, 0)
	if got := metricsOf(t, srv)[`roomcast_disconnects_total{code="1000"}`]; got != 1 {
		t.Fatalf(`roomcast_disconnects_total{code="1000"} = %v, want 1`, got)
	}
}

// checkDeltas checks that after[k] - before[k] is want[k] for each key of
// want, and reports the ones that differ.
func checkDeltas(t testing.TB, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		if _, ok := after[k]; !ok {
			t.Errorf("%s is not exported", k)
			continue
		}
		if got := after[k] - before[k]; got != w {
			t.Errorf("%s grew by %v, want %v", k, got, w)
		}
	}
}

func TestMetricsTraffic(t *testing.T) {
	srv := startRelay(t, nil)
	const room, n = "chat:1", 12
	before := metricsOf(t, srv)
	h0 := familiesOf(t, srv)

	sender := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", "")})
	members := []*client{
		sender,
		dial(t, srv, dialOpts{token: token(t, "bob", "Bob", ""), json: true}),
		dial(t, srv, dialOpts{}),
		dial(t, srv, dialOpts{json: true}),
	}
	m := len(members)
	for _, c := range members {
		c.join(room, 1)
	}
	for i := 1; i <= n; i++ {
		sender.send(map[string]any{"t": "send", "room": room, "body": strings.Repeat("x", i), "ref": 100 + i})
	}
	// Every member, the sender included, gets every message; the sender
	// also gets an ack for each.
	for i, c := range members {
		msgs, acks := 0, 0
		for msgs < n || (c == sender && acks < n) {
			f := c.next()
			switch f.str("t") {
			case "batch":
				msgs += len(f.list("msgs"))
			case "ack":
				acks++
			case "presence":
			default:
				t.Fatalf("member %d got %v", i, f)
			}
		}
		if msgs != n {
			t.Fatalf("member %d got %d messages, want %d", i, msgs, n)
		}
	}

	var after map[string]float64
	eventually(t, "every delivery to be counted", func() bool {
		after = metricsOf(t, srv)
		return after["roomcast_deliveries_total"]-before["roomcast_deliveries_total"] >= n*float64(m)
	})
	checkDeltas(t, before, after, map[string]float64{
		"roomcast_handshakes_total":         float64(m),
		"roomcast_messages_received_total":  float64(m + n), // m joins, n sends
		"roomcast_messages_accepted_total":  n,
		"roomcast_messages_sequenced_total": n,
		"roomcast_deliveries_total":         n * float64(m),
		"roomcast_rooms":                    1,
		"roomcast_members":                  float64(m),
	})
	for _, k := range []string{"roomcast_batches_total", "roomcast_flushes_total", "roomcast_member_writes_total",
		"roomcast_bytes_sent_total", "roomcast_bytes_received_total"} {
		if after[k] <= before[k] {
			t.Errorf("%s did not grow: %v then %v", k, before[k], after[k])
		}
	}
	batches := after["roomcast_batches_total"] - before["roomcast_batches_total"]
	if batches < 1 || batches > n {
		t.Errorf("roomcast_batches_total grew by %v for %d messages", batches, n)
	}
	// The sender alone wrote m joins and n sends of at least n bytes of body.
	if got := after["roomcast_bytes_received_total"] - before["roomcast_bytes_received_total"]; got < n*(n+1)/2 {
		t.Errorf("roomcast_bytes_received_total grew by %v only", got)
	}
	if got := after["roomcast_bytes_sent_total"] - before["roomcast_bytes_sent_total"]; got < float64(m*n*(n+1)/2) {
		t.Errorf("roomcast_bytes_sent_total grew by %v, less than the bodies delivered", got)
	}
	busy := func(m map[string]float64) float64 {
		return m[`roomcast_loop_busy_seconds_total{loop="0"}`] + m[`roomcast_loop_busy_seconds_total{loop="1"}`]
	}
	if busy(after) <= busy(before) {
		t.Errorf("roomcast_loop_busy_seconds_total did not grow: %v then %v", busy(before), busy(after))
	}

	var h1 map[string]scrapedFamily
	eventually(t, "the fan-out of the last flush to be observed", func() bool {
		h1 = familiesOf(t, srv)
		return h1["roomcast_fanout_seconds"].count > h0["roomcast_fanout_seconds"].count
	})
	hd := func(name string) (uint64, float64) {
		return h1[name].count - h0[name].count, h1[name].sum - h0[name].sum
	}
	if c, _ := hd("roomcast_accept_to_sequenced_seconds"); c != n {
		t.Errorf("roomcast_accept_to_sequenced_seconds got %d samples, want %d", c, n)
	}
	if c, _ := hd("roomcast_handshake_seconds"); c != uint64(m) {
		t.Errorf("roomcast_handshake_seconds got %d samples, want %d", c, m)
	}
	if c, s := hd("roomcast_batch_messages"); float64(c) != batches || s != n {
		t.Errorf("roomcast_batch_messages got %d samples summing to %v, want %v samples (one per batch) summing to %d", c, s, batches, n)
	}
	if c, _ := hd("roomcast_fanout_seconds"); c < 1 || float64(c) > batches {
		t.Errorf("roomcast_fanout_seconds got %d samples for %v batches", c, batches)
	}
}

// TestMetricsBytesReceivedSplitFrame sends one frame in two writes: the
// bytes received are counted once.
func TestMetricsBytesReceivedSplitFrame(t *testing.T) {
	srv := startRelay(t, nil)
	c := dial(t, srv, dialOpts{token: token(t, "alice", "", "")})
	c.join("r", 1)
	before := metricsOf(t, srv)["roomcast_bytes_received_total"]

	payload, err := msgpack.Marshal(map[string]any{"t": "send", "room": "r", "body": strings.Repeat("p", 300), "ref": 2})
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if err := ws.WriteFrame(&wire, ws.MaskFrameInPlace(ws.NewBinaryFrame(payload))); err != nil {
		t.Fatal(err)
	}
	b := wire.Bytes()
	half := len(b) / 2
	if _, err := c.conn.Write(b[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the relay see the first half alone
	if _, err := c.conn.Write(b[half:]); err != nil {
		t.Fatal(err)
	}
	for {
		f := c.next()
		if f.str("t") == "error" {
			t.Fatalf("the relay refused the split send: %v", f)
		}
		if f.str("t") == "ack" && f.num("ref") == 2 {
			break
		}
	}
	got := metricsOf(t, srv)["roomcast_bytes_received_total"] - before
	if got != float64(len(b)) {
		t.Fatalf("roomcast_bytes_received_total grew by %v for one frame of %d bytes sent in two writes (%d + %d)",
			got, len(b), half, len(b)-half)
	}
}

func TestMetricsRejected(t *testing.T) {
	srv := startRelay(t, nil)
	alice := dial(t, srv, dialOpts{token: token(t, "alice", "", ""), json: true})
	viewer := dial(t, srv, dialOpts{})
	alice.join("r", 1)
	viewer.join("r", 1)
	before := metricsOf(t, srv)
	cases := []struct {
		c     *client
		frame map[string]any
		code  string
	}{
		{alice, map[string]any{"t": "send", "room": "other", "body": "hi", "ref": 2}, "not_joined"},
		{alice, map[string]any{"t": "leave", "room": "other", "ref": 3}, "not_joined"},
		{alice, map[string]any{"t": "send", "room": "bad room", "body": "hi", "ref": 4}, "bad_room"},
		{alice, map[string]any{"t": "join", "room": "-r", "ref": 5}, "bad_room"},
		{alice, map[string]any{"t": "xyz", "ref": 6}, "unknown_type"},
		{alice, map[string]any{"t": "send", "room": "r", "body": "", "ref": 7}, "bad_request"},
		{alice, map[string]any{"t": "send", "room": "r", "body": strings.Repeat("x", 501), "ref": 8}, "too_large"},
		{alice, map[string]any{"t": "mod", "room": "r", "action": "clear", "ref": 9}, "forbidden"},
		{viewer, map[string]any{"t": "send", "room": "r", "body": "hi", "ref": 10}, "forbidden"},
	}
	want := map[string]float64{}
	for _, c := range cases {
		c.c.send(c.frame)
		f := c.c.expect("error")
		if f.str("code") != c.code || f.num("ref") != toInt(c.frame["ref"]) {
			t.Fatalf("%v: got %v, want error %s", c.frame, f, c.code)
		}
		want[`roomcast_messages_rejected_total{code="`+c.code+`"}`]++
	}
	want["roomcast_messages_received_total"] = float64(len(cases))
	want["roomcast_messages_accepted_total"] = 0
	want["roomcast_messages_sequenced_total"] = 0
	want[`roomcast_messages_rejected_total{code="rate_limited"}`] = 0
	checkDeltas(t, before, metricsOf(t, srv), want)
}

func TestMetricsRateLimit(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.SendRate, c.SendBurst = 0.001, 1 })
	a1 := dial(t, srv, dialOpts{token: token(t, "alice", "", "")})
	a2 := dial(t, srv, dialOpts{token: token(t, "alice", "", ""), json: true})
	a1.join("r", 1)
	a2.join("r", 1)
	before := metricsOf(t, srv)
	// reply reads c's frames until the one answering ref.
	reply := func(c *client, ref int64) frame {
		t.Helper()
		for {
			f := c.next()
			if (f.str("t") == "ack" || f.str("t") == "error") && f.num("ref") == ref {
				return f
			}
		}
	}
	a1.send(map[string]any{"t": "send", "room": "r", "body": "one", "ref": 2})
	if f := reply(a1, 2); f.str("t") != "ack" {
		t.Fatalf("first send: %v", f)
	}
	a1.send(map[string]any{"t": "send", "room": "r", "body": "two", "ref": 3})
	if f := reply(a1, 3); f.str("code") != "rate_limited" || f.num("retry_ms") <= 0 {
		t.Fatalf("second send: %v, want rate_limited with retry_ms", f)
	}
	// The bucket is the user's: her other connection is limited too.
	a2.send(map[string]any{"t": "send", "room": "r", "body": "three", "ref": 4})
	if f := reply(a2, 4); f.str("code") != "rate_limited" {
		t.Fatalf("send on the second connection: %v, want rate_limited", f)
	}
	checkDeltas(t, before, metricsOf(t, srv), map[string]float64{
		`roomcast_ratelimit_hits_total{kind="send"}`:            2,
		`roomcast_messages_rejected_total{code="rate_limited"}`: 2,
		"roomcast_messages_received_total":                      3,
		"roomcast_messages_accepted_total":                      1,
		"roomcast_messages_sequenced_total":                     1,
	})
}

func TestMetricsRuntimeCollectors(t *testing.T) {
	srv := startRelay(t, nil)
	m := metricsOf(t, srv)
	for _, k := range []string{"go_goroutines", "go_threads", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"} {
		if m[k] <= 0 {
			t.Errorf("%s = %v, want a positive value", k, m[k])
		}
	}
	if f := familiesOf(t, srv)["go_gc_duration_seconds"]; f.typ != "SUMMARY" {
		t.Errorf("go_gc_duration_seconds is %q, want the Go collector's summary", f.typ)
	}
}

// TestMetricsNamesAndHelp: every roomcast_ family has a HELP text, counters
// and only counters end in _total, and the families the docs name exist.
func TestMetricsNamesAndHelp(t *testing.T) {
	srv := startRelay(t, nil)
	c := dial(t, srv, dialOpts{}) // so that per-loop families have a value
	c.join("r", 1)
	fams := familiesOf(t, srv)
	n := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "roomcast_") {
			continue
		}
		n++
		if strings.TrimSpace(f.help) == "" {
			t.Errorf("%s has no HELP text", name)
		}
		if isCounter, total := f.typ == "COUNTER", strings.HasSuffix(name, "_total"); isCounter != total {
			t.Errorf("%s is a %s: counters, and only counters, end in _total", name, f.typ)
		}
		if f.typ == "HISTOGRAM" && !strings.HasSuffix(name, "_seconds") && name != "roomcast_batch_messages" {
			t.Errorf("histogram %s is not in seconds", name)
		}
	}
	for name, typ := range map[string]string{
		"roomcast_connections_accepted_total":  "COUNTER",
		"roomcast_handshakes_total":            "COUNTER",
		"roomcast_handshake_failures_total":    "COUNTER",
		"roomcast_connections":                 "GAUGE",
		"roomcast_loop_connections":            "GAUGE",
		"roomcast_loop_busy_seconds_total":     "COUNTER",
		"roomcast_messages_received_total":     "COUNTER",
		"roomcast_messages_accepted_total":     "COUNTER",
		"roomcast_messages_rejected_total":     "COUNTER",
		"roomcast_messages_sequenced_total":    "COUNTER",
		"roomcast_deliveries_total":            "COUNTER",
		"roomcast_batches_total":               "COUNTER",
		"roomcast_bytes_sent_total":            "COUNTER",
		"roomcast_bytes_received_total":        "COUNTER",
		"roomcast_disconnects_total":           "COUNTER",
		"roomcast_ratelimit_hits_total":        "COUNTER",
		"roomcast_slow_consumers_total":        "COUNTER",
		"roomcast_admin_api_requests_total":    "COUNTER",
		"roomcast_rooms":                       "GAUGE",
		"roomcast_members":                     "GAUGE",
		"roomcast_accept_to_sequenced_seconds": "HISTOGRAM",
		"roomcast_fanout_seconds":              "HISTOGRAM",
		"roomcast_handshake_seconds":           "HISTOGRAM",
		"roomcast_batch_messages":              "HISTOGRAM",
	} {
		if got := fams[name].typ; got != typ {
			t.Errorf("%s: type %q, want %s", name, got, typ)
		}
	}
	if n < 20 {
		t.Errorf("only %d roomcast_ families", n)
	}
}

// TestMetricsBatchesPerFormat checks roomcast_batches_total against its
// HELP text, "each once per wire format in use": one message to a room
// with JSON and msgpack members builds two batch frames.
func TestMetricsBatchesPerFormat(t *testing.T) {
	srv := startRelay(t, nil)
	j := dial(t, srv, dialOpts{json: true})
	mp := dial(t, srv, dialOpts{})
	j.join("r", 1)
	mp.join("r", 1)
	before := metricsOf(t, srv)
	if _, err := srv.Hub().Publish("r", &shard.Message{From: "bot", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	j.expect("batch")
	mp.expect("batch")
	got := metricsOf(t, srv)["roomcast_batches_total"] - before["roomcast_batches_total"]
	if got != 1 {
		t.Fatalf("one message to a room with JSON and msgpack members: roomcast_batches_total grew by %v, want 1 (a batch counts once, whatever the formats it is encoded in)", got)
	}
}

func TestMetricsAdminAPIRequests(t *testing.T) {
	srv := startAPIRelay(t, nil)
	before := metricsOf(t, srv)
	callAPI(t, srv, "GET", "/api/rooms", apiAuth(testAPIKey), "")
	callAPI(t, srv, "GET", "/api/rooms", "", "")
	callAPI(t, srv, "GET", "/api/nope", apiAuth(testAPIKey), "")
	callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), "{")
	callAPI(t, srv, "GET", "/debug/pprof/cmdline", apiAuth(testAPIKey), "")
	callAPI(t, srv, "GET", "/healthz", "", "") // not an API call
	checkDeltas(t, before, metricsOf(t, srv), map[string]float64{"roomcast_admin_api_requests_total": 5})
}
