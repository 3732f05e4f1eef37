package relay_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

type hookEvent struct {
	Type            string            `json:"type"`
	ID              string            `json:"id"`
	Room            string            `json:"room"`
	At              int64             `json:"at"`
	Epoch           string            `json:"epoch"`
	Seq             uint64            `json:"seq"`
	From            string            `json:"from"`
	Body            string            `json:"body"`
	Meta            map[string]string `json:"meta"`
	OfflineMentions []string          `json:"offline_mentions"`
	User            string            `json:"user"`
	Action          string            `json:"action"`
}

// eventSink is a real webhook backend: it verifies each POST's signature
// as README tells backends to, and answers with status(n) for the n-th
// POST (from 1).
type eventSink struct {
	mu      sync.Mutex
	batches [][]hookEvent
	bodies  [][]byte
	badSigs int
	posts   int
}

func newEventSink(t *testing.T, secret string, status func(n int) int) (*eventSink, string) {
	s := &eventSink{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		var doc struct {
			Events []hookEvent `json:"events"`
		}
		err := json.Unmarshal(body, &doc)
		s.mu.Lock()
		s.posts++
		n := s.posts
		if !hmac.Equal([]byte(r.Header.Get("X-Roomcast-Signature")), []byte(want)) || err != nil {
			s.badSigs++
		}
		st := status(n)
		if st == 200 {
			s.batches = append(s.batches, doc.Events)
		}
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func (s *eventSink) events() []hookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []hookEvent
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

func ok200(int) int { return 200 }

// Events of matching rooms arrive in signed batches with message ids of
// room/epoch/seq; offline mentions are listed; other rooms raise nothing.
func TestWebhookBatchesSigned(t *testing.T) {
	sink, url := newEventSink(t, "s3cret", ok200)
	srv := startRelay(t, func(c *relay.Config) {
		c.Webhooks = []relay.Webhook{{URL: url, Secret: "s3cret", Rooms: []string{"stream:*"},
			Events: []string{"message", "join"}, BatchSize: 3, BatchWait: 50 * time.Millisecond}}
	})
	a := userClient(t, srv, "alice")
	_ = userClient(t, srv, "bob") // online: not listed
	j := a.join("stream:x", 1)
	a.join("other:y", 2)
	a.sendRef("other:y", "not for the hook", 3)
	a.expectAck(3)
	a.send(map[string]any{"t": "send", "room": "stream:x", "body": "hi @bob and @dave.", "ref": 4,
		"meta": map[string]string{"mentions": "erin,alice"}})
	a.expectAck(4)
	a.sendRef("stream:x", "two", 5)
	a.expectAck(5)
	a.sendRef("stream:x", "three", 6)
	a.expectAck(6)
	eventually(t, "4 events", func() bool { return len(sink.events()) >= 4 })
	evs := sink.events()
	if len(evs) != 4 || evs[0].Type != "join" || evs[0].User != "alice" || evs[0].ID == "" {
		t.Fatalf("events %+v", evs)
	}
	m := evs[1]
	wantID := "stream:x/" + j.str("epoch") + "/1"
	if m.Type != "message" || m.ID != wantID || m.Seq != 1 || m.Epoch != j.str("epoch") || m.From != "alice" || m.At == 0 {
		t.Fatalf("message event %+v, want id %s", m, wantID)
	}
	if len(m.OfflineMentions) != 2 || m.OfflineMentions[0] != "dave" || m.OfflineMentions[1] != "erin" {
		t.Fatalf("offline mentions %q, want dave, erin", m.OfflineMentions)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.badSigs != 0 || len(sink.batches) != 2 || len(sink.batches[0]) != 3 {
		t.Fatalf("%d bad signatures, batches of %d", sink.badSigs, len(sink.batches))
	}
}

// A batch answered 500 is sent again, the same bytes (same ids).
func TestWebhookRetriedWithSameIDs(t *testing.T) {
	sink, url := newEventSink(t, "k", func(n int) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	srv := startRelay(t, func(c *relay.Config) {
		c.APIKey = "api"
		c.Webhooks = []relay.Webhook{{URL: url, Secret: "k", Events: []string{"message", "moderation"},
			BatchWait: 10 * time.Millisecond, RetryWait: 10 * time.Millisecond}}
	})
	if st, b := adminPost(t, srv, "api", "/api/publish", map[string]any{"room": "lobby:1", "body": "hello"}); st != 200 {
		t.Fatalf("publish: %d %s", st, b)
	}
	if st, b := adminPost(t, srv, "api", "/api/mod", map[string]any{"room": "lobby:1", "action": "ban", "user": "eve"}); st != 200 {
		t.Fatalf("mod: %d %s", st, b)
	}
	eventually(t, "2 events", func() bool { return len(sink.events()) >= 2 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.posts < 2 || string(sink.bodies[0]) != string(sink.bodies[1]) {
		t.Fatalf("retry sent %q after %q", sink.bodies[1], sink.bodies[0])
	}
	evs := sink.batches[0]
	if evs[0].ID != evs[0].Room+"/"+evs[0].Epoch+"/1" || evs[0].Body != "hello" {
		t.Fatalf("first event %+v", evs[0])
	}
	if len(evs) < 2 || evs[1].Type != "moderation" || evs[1].Action != "ban" || evs[1].User != "eve" {
		t.Fatalf("want the ban next: %+v", evs)
	}
	m := metricsOf(t, srv)
	if m[`roomcast_webhook_posts_total{result="failed",webhook="0"}`] != 1 {
		t.Fatalf("failed posts %v, want 1", m[`roomcast_webhook_posts_total{result="failed",webhook="0"}`])
	}
}

// With the backend down, the queue holds queue_size events; the rest are
// dropped and counted, and the backlog shows on /metrics.
func TestWebhookBoundedWhenDown(t *testing.T) {
	sink, url := newEventSink(t, "k", func(int) int { return 503 })
	srv := startRelay(t, func(c *relay.Config) {
		c.Webhooks = []relay.Webhook{{URL: url, Secret: "k", Events: []string{"message"}, BatchSize: 1,
			QueueSize: 5, RetryWait: time.Minute, MaxAttempts: 100}}
	})
	a := userClient(t, srv, "alice")
	a.join("lobby:1", 1)
	eventuallyPosted := func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.posts >= 1 }
	a.sendRef("lobby:1", "first", 2)
	a.expectAck(2)
	eventually(t, "the first POST", eventuallyPosted) // now retrying, a minute from now
	for i := range 20 {
		a.sendRef("lobby:1", "m", 10+i)
		a.expectAck(10 + i)
	}
	m := metricsOf(t, srv)
	if d := m[`roomcast_webhook_events_total{outcome="dropped_full",webhook="0"}`]; d != 15 {
		t.Fatalf("dropped %v, want 15 (20 past a queue of 5)", d)
	}
	if b := m[`roomcast_webhook_backlog{webhook="0"}`]; b != 6 {
		t.Fatalf("backlog %v, want 6 (5 queued, 1 being retried)", b)
	}
}

// Bad publish hooks and webhooks are refused when the relay is made.
func TestBackendConfigErrors(t *testing.T) {
	f := func(name string, mod func(*relay.Config)) {
		t.Helper()
		cfg := relay.Config{Listen: "127.0.0.1:0", Admin: "off"}
		mod(&cfg)
		if _, err := relay.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	f("hook url", hooked("chat", relay.PublishHook{URL: "ftp://x"}))
	f("on_error", hooked("chat", relay.PublishHook{URL: "http://x", OnError: "maybe"}))
	f("webhook secret", func(c *relay.Config) { c.Webhooks = []relay.Webhook{{URL: "http://x"}} })
	f("webhook event", func(c *relay.Config) {
		c.Webhooks = []relay.Webhook{{URL: "http://x", Secret: "k", Events: []string{"typing"}}}
	})
}

// join and leave events: a leave frame and a closed connection each raise
// a leave; anonymous viewers raise nothing.
func TestWebhookJoinLeave(t *testing.T) {
	sink, url := newEventSink(t, "k", ok200)
	srv := startRelay(t, func(c *relay.Config) {
		c.Webhooks = []relay.Webhook{{URL: url, Secret: "k", Events: []string{"join", "leave"}, BatchWait: 10 * time.Millisecond}}
	})
	anon := dial(t, srv, dialOpts{})
	anon.join("r:1", 1)
	bob := userClient(t, srv, "bob")
	bob.join("r:1", 1)
	bob.send(map[string]any{"t": "leave", "room": "r:1", "ref": 2})
	bob.expect("left")
	bob.join("r:2", 3)
	bob.conn.Close()
	eventually(t, "4 events", func() bool { return len(sink.events()) >= 4 })
	time.Sleep(50 * time.Millisecond) // nothing more comes
	var got []string
	for _, e := range sink.events() {
		got = append(got, e.Type+" "+e.Room+" "+e.User)
	}
	want := []string{"join r:1 bob", "leave r:1 bob", "join r:2 bob", "leave r:2 bob"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %q, want %q", got, want)
	}
}
