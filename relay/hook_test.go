package relay_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// The hook denies, rewrites and allows; the backend sees the request shape
// it codes against; a rewrite is checked against the limits again.
func TestHookDenyRewriteAllow(t *testing.T) {
	var mu sync.Mutex
	var calls []hookCall
	be := hookBackend(t, func(c hookCall) any {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		switch c.Body {
		case "bad":
			return map[string]any{"allow": false, "reason": "no bad words here"}
		case "darn":
			return map[string]any{"allow": true, "body": "d**n", "meta": map[string]string{"filtered": "1"}}
		case "huge":
			return map[string]any{"allow": true, "body": strings.Repeat("x", 501)}
		}
		return map[string]any{"allow": true}
	})
	srv := startRelay(t, hooked("chat", relay.PublishHook{URL: be.URL}))
	a := userClient(t, srv, "alice")
	b := userClient(t, srv, "bob")
	a.join("chat:1", 1)
	b.join("chat:1", 1)

	a.sendRef("chat:1", "bad", 2)
	if e := a.expectError(2); e.str("code") != "forbidden" || e.str("message") != "no bad words here" {
		t.Fatalf("deny: got %v", e)
	}
	a.sendRef("chat:1", "huge", 3)
	if e := a.expectError(3); e.str("code") != "too_large" {
		t.Fatalf("rewrite past max_body: got %v", e)
	}
	a.send(map[string]any{"t": "send", "room": "chat:1", "body": "darn", "ref": 4, "meta": map[string]string{"k": "v"}})
	a.expectAck(4)
	a.sendRef("chat:1", "hello", 5)
	a.expectAck(5)

	got, _ := b.bodies(2)
	if got[0] != "d**n" || got[1] != "hello" {
		t.Fatalf("bob got %q, want the rewrite then hello (nothing denied)", got)
	}
	mu.Lock()
	c := calls[2]
	mu.Unlock()
	if c.Room != "chat:1" || c.From != "alice" || c.Name != "Nalice" || c.Role != "user" || c.Body != "darn" || c.Meta["k"] != "v" {
		t.Fatalf("hook request %+v", c)
	}
	m := metricsOf(t, srv)
	for _, o := range []string{"deny", "rewrite", "allow"} {
		if m[`roomcast_publish_hook_requests_total{outcome="`+o+`"}`] < 1 {
			t.Errorf("no %s outcome counted", o)
		}
	}
}

// A backend slower than the timeout: on_error deny answers unavailable,
// on_error allow sequences the message unchanged; both are counted.
func TestHookTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := hookBackend(t, func(hookCall) any {
		<-release
		return map[string]any{"allow": false}
	})
	for _, onError := range []string{"deny", "allow"} {
		t.Run(onError, func(t *testing.T) {
			srv := startRelay(t, hooked("chat", relay.PublishHook{URL: be.URL, Timeout: 50 * time.Millisecond, OnError: onError}))
			a := userClient(t, srv, "alice")
			a.join("chat:1", 1)
			a.sendRef("chat:1", "hi", 2)
			if onError == "deny" {
				if e := a.expectError(2); e.str("code") != "unavailable" {
					t.Fatalf("got %v, want unavailable", e)
				}
			} else {
				if _, got := a.ackAndBodies(2, 1); got[0] != "hi" {
					t.Fatalf("got %q", got)
				}
			}
			if n := metricsOf(t, srv)[`roomcast_publish_hook_requests_total{outcome="timeout"}`]; n != 1 {
				t.Fatalf("timeouts counted: %v, want 1", n)
			}
		})
	}
}

// A room's messages are sequenced in the order they arrived though the
// backend answers them in the reverse order.
func TestHookKeepsOrder(t *testing.T) {
	const n = 5
	var arrived sync.WaitGroup
	arrived.Add(n)
	gates := map[string]chan struct{}{}
	for i := range n {
		gates[string(rune('a'+i))] = make(chan struct{})
	}
	be := hookBackend(t, func(c hookCall) any {
		arrived.Done()
		<-gates[c.Body]
		return map[string]any{"allow": true}
	})
	t.Cleanup(func() { // before the backend closes, if the test failed early
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
	})
	srv := startRelay(t, hooked("chat", relay.PublishHook{URL: be.URL, Timeout: 5 * time.Second}))
	a := userClient(t, srv, "alice")
	b := userClient(t, srv, "bob")
	a.join("chat:1", 1)
	b.join("chat:1", 1)
	for i := range n {
		a.sendRef("chat:1", string(rune('a'+i)), 10+i)
	}
	arrived.Wait()
	for i := n - 1; i >= 0; i-- {
		close(gates[string(rune('a'+i))])
		time.Sleep(10 * time.Millisecond) // let the answers come back in reverse
	}
	got, seqs := b.bodies(n)
	if strings.Join(got, "") != "abcde" {
		t.Fatalf("bob got %q, want arrival order abcde", got)
	}
	for i := 1; i < n; i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seqs %v not contiguous", seqs)
		}
	}
	for i := range n { // the acks carry the same order
		if f := a.expectAck(10 + i); f.num("seq") != seqs[i] {
			t.Fatalf("ack of ref %d has seq %d, want %d", 10+i, f.num("seq"), seqs[i])
		}
	}
}

// While the backend sits on one room's message, a room without a hook and
// another room of the hooked namespace answer at once; past max_inflight
// a send gets unavailable without a call.
func TestHookOnlyThatRoomWaits(t *testing.T) {
	hold := make(chan struct{})
	be := hookBackend(t, func(c hookCall) any {
		if c.Body == "slow" {
			<-hold
		}
		return map[string]any{"allow": true}
	})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the backend closes, if the test failed early
	srv := startRelay(t, hooked("chat", relay.PublishHook{URL: be.URL, Timeout: 5 * time.Second, MaxInflight: 2}))
	a := userClient(t, srv, "alice")
	a.join("chat:slow", 1)
	a.join("chat:fast", 2)
	a.join("free:1", 3)
	a.sendRef("chat:slow", "slow", 10)
	a.sendRef("chat:slow", "after", 11) // waits behind slow, in order
	a.sendRef("free:1", "hi", 12)
	a.expectAck(12)
	a.sendRef("chat:fast", "slow", 13) // a third in flight: past max_inflight
	if e := a.expectError(13); e.str("code") != "unavailable" {
		t.Fatalf("got %v, want unavailable past max_inflight", e)
	}
	release()
	a.expectAck(10)
	a.expectAck(11)
	a.sendRef("chat:fast", "quick", 14)
	a.expectAck(14)
	if n := metricsOf(t, srv)[`roomcast_publish_hook_requests_total{outcome="overloaded"}`]; n != 1 {
		t.Fatalf("overloaded counted %v, want 1", n)
	}
}
