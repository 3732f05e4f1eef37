package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relay/client"
	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// TestJoinSendReceive: in both formats, Send returns the ack's seq and
// every member, the sender too, gets each message once, in order, with
// its fields.
func TestJoinSendReceive(t *testing.T) {
	srv := startRelay(t, "", nil)
	for _, js := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", js), func(t *testing.T) {
			room := fmt.Sprintf("lobby:%v", js)
			a := dial(t, srv, "alice", client.Options{JSON: js})
			b := dial(t, srv, "bob", client.Options{JSON: js})
			if h := a.Hello(); h.User != "alice" || h.Role != "user" || h.Limits.MaxFrame == 0 {
				t.Fatalf("hello %+v", h)
			}
			ra := join(t, a, room, client.JoinOptions{})
			rb := join(t, b, room, client.JoinOptions{})
			if p := next[*client.Presence](t, rb, 2*time.Second); p.Count != 2 {
				t.Errorf("joined presence %+v, want count 2", p)
			}
			ctx := context.Background()
			for i := 1; i <= 5; i++ {
				seq, err := ra.Send(ctx, fmt.Sprintf("hé %d", i), client.SendOptions{Meta: map[string]string{"color": "red"}})
				if err != nil || seq != uint64(i) {
					t.Fatalf("send %d: seq %d, %v", i, seq, err)
				}
			}
			for _, r := range []*client.Room{ra, rb} {
				got := messages(t, r, 5, 5*time.Second)
				for i, m := range got {
					if m.Seq != uint64(i+1) || m.Body != fmt.Sprintf("hé %d", i+1) || m.From != "alice" ||
						m.Name != "N-alice" || m.Meta["color"] != "red" || m.Room != room || m.Epoch == "" || m.TS == 0 {
						t.Errorf("message %d: %+v", i, m)
					}
				}
			}
			// A protocol error comes back as *client.Error with its code.
			_, err := a.Send(ctx, "nowhere", "x", client.SendOptions{})
			var e *client.Error
			if !errors.As(err, &e) || e.Code != string(proto.CodeNotJoined) {
				t.Errorf("send to a room not joined: %v", err)
			}
			if _, err := a.Join(ctx, room, client.JoinOptions{}); err != client.ErrJoined {
				t.Errorf("second join: %v", err)
			}
			if err := rb.Leave(ctx); err != nil {
				t.Errorf("leave: %v", err)
			}
			if _, ok := <-rb.Events(); ok {
				for range rb.Events() {
				}
			}
			if rb.Err() != nil {
				t.Errorf("room error after leave: %v", rb.Err())
			}
		})
	}
}

// TestHistoryAndSince: History gives the latest messages; Since resumes
// after a seq; a since older than history gives a gap first.
func TestHistoryAndSince(t *testing.T) {
	srv := startRelay(t, "", func(c *relay.Config) { c.History = 10 })
	for i := 0; i < 15; i++ {
		if _, err := srv.Hub().Publish("news:1", &shard.Message{From: "bot", Body: fmt.Sprint(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, srv, "u", client.Options{})
	r := join(t, c, "news:1", client.JoinOptions{History: 3})
	if got := messages(t, r, 3, 2*time.Second); got[0].Seq != 13 || got[2].Seq != 15 {
		t.Errorf("history: %d..%d, want 13..15", got[0].Seq, got[2].Seq)
	}
	if epoch, seq := r.Position(); seq != 15 || epoch == "" {
		t.Errorf("position %q %d", epoch, seq)
	}
	c2 := dial(t, srv, "v", client.Options{JSON: true})
	r2 := join(t, c2, "news:1", client.JoinOptions{Since: 2, HasSince: true})
	gap := next[*client.Gap](t, r2, 2*time.Second)
	if gap.From != 3 || gap.To != 5 || gap.Reason != client.GapAgedOut {
		t.Errorf("gap %+v, want 3..5 aged_out", gap)
	}
	if got := messages(t, r2, 10, 2*time.Second); got[0].Seq != 6 || got[9].Seq != 15 {
		t.Errorf("resume: %d..%d, want 6..15", got[0].Seq, got[9].Seq)
	}
}

// TestRestartGap: a relay that keeps rooms in memory restarts on the same
// port; the client reconnects, rejoins, gets a gap of reason epoch and then
// the new epoch's messages, with no duplicates.
func TestRestartGap(t *testing.T) {
	srv := startRelay(t, "", nil)
	addr := srv.Addr()
	st := make(states, 64)
	// Back-off capped low: the restart may take seconds on a loaded machine,
	// and this test is about the gap, not about how long the client waits.
	c := dial(t, srv, "u", client.Options{OnState: st.on, MaxBackoff: 500 * time.Millisecond})
	r := join(t, c, "game:1", client.JoinOptions{})
	for i := 0; i < 5; i++ {
		if _, err := srv.Hub().Publish("game:1", &shard.Message{From: "bot", Body: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	old := messages(t, r, 5, 2*time.Second)
	stopRelay(t, srv)
	if ch := st.wait(t, client.Connecting, 5*time.Second); ch.Code != 1001 && ch.Code != 0 {
		t.Logf("dropped with %d (%v)", ch.Code, ch.Err)
	}
	var srv2 *relay.Server
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s, err := relay.New(relayConfig(addr, nil))
		if err == nil {
			if err = s.Start(); err == nil {
				srv2 = s
				break
			}
		}
		if time.Now().After(end) {
			t.Fatalf("restart on %s: %v", addr, err)
		}
	}
	t.Cleanup(func() { stopRelay(t, srv2) })
	st.wait(t, client.Connected, 10*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := srv2.Hub().Publish("game:1", &shard.Message{From: "bot", Body: "new"}); err != nil {
			t.Fatal(err)
		}
	}
	gap := next[*client.Gap](t, r, 3*time.Second)
	if gap.Reason != client.GapEpoch || gap.From != 6 || gap.Epoch == old[0].Epoch || gap.Epoch == "" {
		t.Errorf("gap %+v after epoch %s", gap, old[0].Epoch)
	}
	got := messages(t, r, 3, 3*time.Second)
	for i, m := range got {
		if m.Seq != uint64(i+1) || m.Body != "new" || m.Epoch != gap.Epoch {
			t.Errorf("after restart, message %d: %+v", i, m)
		}
	}
	select {
	case ev := <-r.Events():
		if m, ok := ev.(*client.Message); ok {
			t.Errorf("extra message %+v", m)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSlowConsumerResume: an application that stops receiving stalls the
// connection until the relay closes it with 4009; the client reconnects,
// resumes with since, and every message arrives once, in order.
func TestSlowConsumerResume(t *testing.T) {
	srv := startRelay(t, "", func(c *relay.Config) { c.MaxOutbound = 32 << 10; c.History = 100000 })
	st := make(states, 64)
	c := dial(t, srv, "slow", client.Options{Buffer: 4, NetDial: smallReadBuffer, OnState: st.on})
	r := join(t, c, "stream:1", client.JoinOptions{})
	next[*client.Presence](t, r, time.Second)
	body := strings.Repeat("x", 400)
	n := 0
	for metric(t, srv, "roomcast_slow_consumers_total") != "1" {
		for range 200 {
			if _, err := srv.Hub().Publish("stream:1", &shard.Message{From: "bot", Body: body}); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n > 200000 {
			t.Fatal("200000 messages and the client is not a slow consumer")
		}
	}
	got := messages(t, r, n, 20*time.Second)
	if got[0].Seq != 1 || got[n-1].Seq != uint64(n) {
		t.Errorf("got %d..%d, want 1..%d", got[0].Seq, got[n-1].Seq, n)
	}
	if ch := st.wait(t, client.Connecting, time.Second); ch.Code != int(proto.CloseSlowConsumer) {
		t.Errorf("reconnected after %d (%v), want 4009", ch.Code, ch.Err)
	}
}

// TestTokenRefresh: with 2-second tokens from a TokenSource, the client
// refreshes before each expiry and the connection stays up.
func TestTokenRefresh(t *testing.T) {
	srv := startRelay(t, "", nil)
	var calls atomic.Int32
	st := make(states, 64)
	c := dial(t, srv, "", client.Options{OnState: st.on, TokenSource: func(context.Context) (string, error) {
		calls.Add(1)
		return mint(t, "fresh", "", 2*time.Second), nil
	}})
	r := join(t, c, "lobby:r", client.JoinOptions{})
	st.wait(t, client.Connected, time.Second)
	time.Sleep(3500 * time.Millisecond)
	if calls.Load() < 3 {
		t.Errorf("token source called %d times in 3.5 s, want at least 3", calls.Load())
	}
	select {
	case ch := <-st:
		t.Errorf("state change %+v: the connection did not stay up", ch)
	default:
	}
	if _, err := r.Send(context.Background(), "still here", client.SendOptions{}); err != nil {
		t.Errorf("send after refreshes: %v", err)
	}
}

// TestTokenExpired: when refreshing fails, the relay closes with 4010;
// the client reconnects at once with a fresh token and resumes.
func TestTokenExpired(t *testing.T) {
	srv := startRelay(t, "", nil)
	var expired atomic.Bool
	var calls atomic.Int32
	st := make(states, 64)
	c := dial(t, srv, "", client.Options{
		OnState: func(ch client.StateChange) {
			if ch.Code == int(proto.CloseTokenExpired) {
				expired.Store(true)
			}
			st.on(ch)
		},
		TokenSource: func(context.Context) (string, error) {
			switch calls.Add(1); {
			case expired.Load():
				return mint(t, "u", "", time.Hour), nil
			case calls.Load() == 1:
				return mint(t, "u", "", 2*time.Second), nil
			}
			return "", errors.New("token service down")
		}})
	r := join(t, c, "lobby:x", client.JoinOptions{})
	if _, err := r.Send(context.Background(), "before", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if ch := st.wait(t, client.Connecting, 5*time.Second); ch.Code != int(proto.CloseTokenExpired) {
		t.Fatalf("dropped with %d (%v), want 4010", ch.Code, ch.Err)
	}
	st.wait(t, client.Connected, 5*time.Second)
	seq, err := r.Send(context.Background(), "back", client.SendOptions{})
	if err != nil || seq != 2 {
		t.Fatalf("send after 4010: %d %v", seq, err)
	}
	if got := messages(t, r, 2, 2*time.Second); got[0].Body != "before" || got[1].Body != "back" {
		t.Errorf("got %+v, %+v", got[0], got[1])
	}
}

// TestOperatorDisconnect: 4003 ends the client with an error, and its
// rooms; a refused token (HTTP 401) fails Dial.
func TestOperatorDisconnect(t *testing.T) {
	srv := startRelay(t, "", nil)
	c := dial(t, srv, "troll", client.Options{})
	r := join(t, c, "lobby:1", client.JoinOptions{})
	adminPost(t, srv, "/api/disconnect", map[string]string{"user": "troll"})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still running after 4003")
	}
	var e *client.Error
	if err := c.Err(); !errors.As(err, &e) || e.Code != client.CodeClosed || e.Close != 4003 {
		t.Errorf("client error %v, want close 4003", err)
	}
	for range r.Events() {
	}
	if !errors.As(r.Err(), &e) || e.Close != 4003 {
		t.Errorf("room error %v", r.Err())
	}
	if _, err := c.Send(context.Background(), "lobby:1", "x", client.SendOptions{}); err == nil {
		t.Error("send on an ended client succeeded")
	}

	_, err := client.Dial(context.Background(), wsURL(srv), client.Options{Token: "not-a-token"})
	if !errors.As(err, &e) || e.Code != client.CodeRefused || e.Status != 401 {
		t.Errorf("dial with a bad token: %v", err)
	}
}

// TestKicked: delete and clear reach members as events; a ban ends the
// room with a Kicked event; the client lives on.
func TestKicked(t *testing.T) {
	srv := startRelay(t, "", nil)
	mod := dial(t, srv, "", client.Options{Token: mint(t, "mod", "mod", time.Hour)})
	c := dial(t, srv, "bad", client.Options{})
	join(t, mod, "lobby:k", client.JoinOptions{})
	r := join(t, c, "lobby:k", client.JoinOptions{})
	ctx := context.Background()
	seq, err := mod.Send(ctx, "lobby:k", "oops", client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := mod.Moderate(ctx, "lobby:k", client.Mod{Action: proto.ActDelete, Seq: seq}); err != nil {
		t.Fatal(err)
	}
	if d := next[*client.Deleted](t, r, 2*time.Second); d.Seq != seq {
		t.Errorf("deleted %+v", d)
	}
	if err := mod.Moderate(ctx, "lobby:k", client.Mod{Action: proto.ActClear}); err != nil {
		t.Fatal(err)
	}
	next[*client.Cleared](t, r, 2*time.Second)
	if err := mod.Moderate(ctx, "lobby:k", client.Mod{Action: proto.ActBan, User: "bad"}); err != nil {
		t.Fatal(err)
	}
	k := next[*client.Kicked](t, r, 2*time.Second)
	if k.Room != "lobby:k" {
		t.Errorf("kicked %+v", k)
	}
	if _, ok := <-r.Events(); ok {
		t.Error("events after kicked")
	}
	var e *client.Error
	if !errors.As(r.Err(), &e) || e.Code != client.CodeKicked {
		t.Errorf("room error %v", r.Err())
	}
	if _, err := c.Ping(context.Background()); err != nil {
		t.Errorf("client after a kick: %v", err)
	}
}

// TestConcurrentSend: many goroutines send at once; every ack has its own
// seq and the room delivers them all in order.
func TestConcurrentSend(t *testing.T) {
	srv := startRelay(t, "", nil)
	c := dial(t, srv, "u", client.Options{})
	r := join(t, c, "lobby:c", client.JoinOptions{})
	const g, each = 16, 10
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for i := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				seq, err := r.Send(context.Background(), fmt.Sprintf("%d-%d", i, j), client.SendOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[seq] {
					t.Errorf("seq %d acked twice", seq)
				}
				seen[seq] = true
				mu.Unlock()
			}
		}()
	}
	got := messages(t, r, g*each, 10*time.Second)
	wg.Wait()
	if got[len(got)-1].Seq != g*each || len(seen) != g*each {
		t.Errorf("last seq %d, %d acks", got[len(got)-1].Seq, len(seen))
	}
}

// TestNoGoroutineLeak: after Close, including Close during a reconnect and
// with a room's channel full, no goroutine runs the client's code.
func TestNoGoroutineLeak(t *testing.T) {
	srv := startRelay(t, "", nil)
	for i := range 3 {
		c, err := client.Dial(context.Background(), wsURL(srv), client.Options{Token: mint(t, fmt.Sprint("g", i), "", time.Hour), Buffer: 1})
		if err != nil {
			t.Fatal(err)
		}
		r := join(t, c, "lobby:g", client.JoinOptions{})
		for range 5 { // more than the buffer: the reader blocks
			if _, err := srv.Hub().Publish("lobby:g", &shard.Message{From: "bot", Body: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		c.Close()
		for range r.Events() {
		}
		if err := c.Err(); err != client.ErrClosed {
			t.Errorf("Err after Close: %v", err)
		}
	}
	// A client reconnecting to a relay that is gone.
	srv2 := startRelay(t, "", nil)
	c, err := client.Dial(context.Background(), wsURL(srv2), client.Options{MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopRelay(t, srv2)
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if left := clientGoroutines(); len(left) > 0 {
		t.Errorf("%d goroutines of the client after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
