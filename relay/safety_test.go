package relay_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// maskedFrames returns n copies of one masked client frame (zero mask key).
func maskedFrames(op ws.OpCode, payload []byte, n int) []byte {
	var one bytes.Buffer
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Length: int64(len(payload))}
	if err := ws.WriteHeader(&one, h); err != nil {
		panic(err)
	}
	one.Write(payload) // a zero mask leaves the payload as is
	return bytes.Repeat(one.Bytes(), n)
}

// TestFloodWithoutReading: a client that sends 50 MB of WebSocket pings, or
// of ping commands, and never reads is a slow consumer: its replies count
// against max-outbound, the relay's queue never passes the cap, and other
// connections keep working.
func TestFloodWithoutReading(t *testing.T) {
	const limit = 256 << 10
	cases := []struct {
		name  string
		json  bool
		chunk []byte
	}{
		{"ping frames", false, maskedFrames(ws.OpPing, bytes.Repeat([]byte("p"), 125), 500)},
		{"ping commands", true, maskedFrames(ws.OpText, []byte(`{"t":"ping","ref":123456789}`), 2000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRelay(t, func(c *relay.Config) { c.MaxOutbound = limit })
			other := dial(t, srv, dialOpts{})
			flood := dialSmall(t, srv, dialOpts{json: tc.json})

			var maxQueued float64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the queued gauge, as often as the tick updates it
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					maxQueued = max(maxQueued, queuedBytes(srv))
				}
			}()
			stopSampling := sync.OnceFunc(func() { close(stop); wg.Wait() })
			defer stopSampling()
			_ = flood.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			sent := 0
			for sent < 50<<20 {
				n, err := flood.conn.Write(tc.chunk)
				sent += n
				if err != nil {
					break // the relay closed the connection
				}
			}
			eventually(t, "the flooder to be a slow consumer", func() bool {
				m := metricsOf(t, srv)
				return m["roomcast_slow_consumers_total"] == 1 && m[`roomcast_disconnects_total{code="4009"}`] == 1
			})
			stopSampling()
			if maxQueued > limit+256 {
				t.Fatalf("the relay queued %.0f bytes, cap %d", maxQueued, limit)
			}
			// The flooder's connection ends.
			_ = flood.conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // generous: CI runs packages side by side under -race
			if _, err := io.Copy(io.Discard, flood.br); err != nil && isTimeout(err) {
				t.Fatal("the flooder's connection is still open")
			}
			// The other connections work.
			other.send(map[string]any{"t": "ping", "ref": 1})
			other.expect("pong")
			again := dial(t, srv, dialOpts{})
			again.send(map[string]any{"t": "ping", "ref": 2})
			again.expect("pong")
		})
	}
}

// TestSlowConsumerReadsItsClose: a member that stops reading is marked slow,
// and when it reads again it finds everything queued for it, in order, then
// the close frame 4009 (not a reset).
func TestSlowConsumerReadsItsClose(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxOutbound = 64 << 10 })
	slow := dialSmall(t, srv, dialOpts{})
	slow.expect("hello")
	slow.join("stream", 1)
	body := strings.Repeat("x", 400)
	for i := 0; ; i++ {
		if i == 100000 {
			t.Fatal("100000 messages and the member is not slow")
		}
		if _, err := srv.Hub().Publish("stream", &shard.Message{From: "bot", Body: body}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 && metricsOf(t, srv)["roomcast_slow_consumers_total"] == 1 {
			break
		}
	}
	var last int64
	code := readUntilClose(t, slow, func(f frame) {
		for _, m := range f.list("msgs") {
			seq := toInt(m.(map[string]any)["seq"])
			if seq != last+1 {
				t.Fatalf("seq %d after %d", seq, last)
			}
			last = seq
		}
	})
	if code != int(proto.CloseSlowConsumer) {
		t.Fatalf("close %d, want 4009", code)
	}
	if last == 0 {
		t.Fatal("the slow consumer read no message")
	}
}

// TestPanicClosesOnlyItsConnection: a command that panics closes its
// connection with 1011 and is counted; the relay, and the other connections
// of the same loop, go on.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	defer relay.SetCommandHook(func(c *proto.Command) {
		if c.T == "test-panic" {
			panic("test panic")
		}
	})()
	srv := startRelay(t, func(c *relay.Config) { c.Loops = 1 })
	bystander := dial(t, srv, dialOpts{json: true})
	bystander.join("r", 1)
	victim := dial(t, srv, dialOpts{})
	victim.join("r", 1)
	victim.send(map[string]any{"t": "test-panic"})
	victim.expectClose(1011)

	bystander.send(map[string]any{"t": "ping", "ref": 2})
	bystander.expect("pong")
	m := metricsOf(t, srv)
	if m[`roomcast_panics_total{where="traffic"}`] != 1 || m[`roomcast_disconnects_total{code="1011"}`] != 1 {
		t.Fatalf("panics %v, 1011 closes %v; want 1 each", m[`roomcast_panics_total{where="traffic"}`], m[`roomcast_disconnects_total{code="1011"}`])
	}
	newcomer := dial(t, srv, dialOpts{})
	newcomer.join("r", 1)
	newcomer.send(map[string]any{"t": "ping", "ref": 3})
	newcomer.expect("pong")
}

// TestTokenExpiryCloses4010: a connection ends with 4010 when its token
// expires.
func TestTokenExpiryCloses4010(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second) // 2 to 3 seconds away
	c := dial(t, srv, dialOpts{token: expiring(t, "eve", exp, nil)})
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	code := readUntilClose(t, c, nil)
	if now := time.Now(); code != 4010 || now.Before(exp) || now.After(exp.Add(5*time.Second)) {
		t.Fatalf("close %d at exp%+v, want 4010 within 5s after exp", code, now.Sub(exp))
	}
	if metricsOf(t, srv)[`roomcast_disconnects_total{code="4010"}`] != 1 {
		t.Fatal("4010 not counted")
	}
}

// TestTokenRefresh: a refreshed connection outlives its first token.
func TestTokenRefresh(t *testing.T) {
	srv := startRelay(t, nil)
	start := time.Now()
	exp := start.Add(3 * time.Second).Truncate(time.Second) // 2 to 3 seconds away: exp is in whole seconds
	c := dial(t, srv, dialOpts{token: expiring(t, "ann", exp, nil)})
	c.join("r", 1)
	time.Sleep(time.Second)
	c.send(map[string]any{"t": "refresh", "ref": 7, "token": expiring(t, "ann", start.Add(10*time.Second), nil)})
	if f := c.expect("ack"); f.num("ref") != 7 {
		t.Fatalf("ack %v, want ref 7", f)
	}
	time.Sleep(time.Until(exp.Add(2 * time.Second))) // past the first token's expiry and a tick
	c.send(map[string]any{"t": "send", "room": "r", "body": "still here", "ref": 8})
	c.expectAck(8)
}

// TestTokenRefreshRefused: a refresh naming another user, an expired or
// unsigned token, or one from an anonymous viewer gets bad_token; the
// connection stays and its old expiry still applies.
func TestTokenRefreshRefused(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	c := dial(t, srv, dialOpts{token: expiring(t, "bob", exp, nil)})
	for i, tok := range []string{
		expiring(t, "mallory", exp.Add(time.Hour), nil),
		expiring(t, "bob", time.Now().Add(-time.Minute), nil),
		"not-a-token",
		"",
	} {
		c.send(map[string]any{"t": "refresh", "ref": i + 1, "token": tok})
		f := c.expect("error")
		if f.str("code") != "bad_token" || f.num("ref") != int64(i+1) || f.str("message") == "" {
			t.Fatalf("refresh %d: %v, want bad_token with a reason", i+1, f)
		}
	}
	c.send(map[string]any{"t": "ping", "ref": 9})
	c.expect("pong")
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if code := readUntilClose(t, c, nil); code != 4010 || time.Now().Before(exp) {
		t.Fatalf("close %d, want 4010 after the old expiry", code)
	}

	anon := dial(t, srv, dialOpts{})
	anon.send(map[string]any{"t": "refresh", "ref": 1, "token": token(t, "bob", "Bob", "")})
	if f := anon.expect("error"); f.str("code") != "bad_token" {
		t.Fatalf("anonymous refresh: %v, want bad_token", f)
	}
}

// TestTokenRefreshNarrowsRooms: rooms the new token no longer allows are
// left, each with kicked.
func TestTokenRefreshNarrowsRooms(t *testing.T) {
	srv := startRelay(t, nil)
	exp := time.Now().Add(time.Hour)
	c := dial(t, srv, dialOpts{token: expiring(t, "cat", exp, []string{"a:*", "b:*"})})
	c.join("a:1", 1)
	c.join("b:1", 2)
	c.send(map[string]any{"t": "refresh", "ref": 3, "token": expiring(t, "cat", exp, []string{"a:*"})})
	f := c.expect("kicked")
	if f.str("room") != "b:1" || f.str("reason") != "token" {
		t.Fatalf("got %v, want kicked from b:1 for the token", f)
	}
	if f := c.expect("ack"); f.num("ref") != 3 {
		t.Fatalf("got %v, want ack 3", f)
	}
	c.send(map[string]any{"t": "send", "room": "b:1", "body": "hi", "ref": 4})
	if f := c.expect("error"); f.str("code") != "not_joined" {
		t.Fatalf("send to the left room: %v", f)
	}
	c.send(map[string]any{"t": "join", "room": "b:2", "ref": 5})
	if f := c.expect("error"); f.str("code") != "forbidden" {
		t.Fatalf("join outside the new rooms: %v", f)
	}
	c.send(map[string]any{"t": "send", "room": "a:1", "body": "hi", "ref": 6})
	c.expectAck(6)
}

// TestSendAfterBan: a banned user's send answers banned, not not_joined.
func TestSendAfterBan(t *testing.T) {
	srv := startRelay(t, nil)
	mod := dial(t, srv, dialOpts{token: token(t, "mia", "Mia", "mod")})
	u := dial(t, srv, dialOpts{token: token(t, "ugo", "Ugo", "")})
	u.join("r", 1)
	mod.send(map[string]any{"t": "mod", "room": "r", "action": "ban", "user": "ugo", "ref": 1})
	mod.expect("ack")
	u.expect("kicked")
	u.send(map[string]any{"t": "send", "room": "r", "body": "hi", "ref": 2})
	if f := u.expect("error"); f.str("code") != "banned" {
		t.Fatalf("send after ban: %v, want banned", f)
	}
	u.send(map[string]any{"t": "send", "room": "elsewhere", "body": "hi", "ref": 3})
	if f := u.expect("error"); f.str("code") != "not_joined" {
		t.Fatalf("send to a room never joined: %v, want not_joined", f)
	}
}

// TestPeerCloseCodes: a close frame with a code not allowed on the wire is
// answered with 1002, an allowed one with 1000.
func TestPeerCloseCodes(t *testing.T) {
	srv := startRelay(t, nil)
	for _, tc := range []struct{ code, want int }{
		{999, 1002}, {1004, 1002}, {1005, 1002}, {1006, 1002}, {1015, 1002}, {1016, 1002}, {2999, 1002}, {5000, 1002},
		{1000, 1000}, {1001, 1000}, {1003, 1000}, {1007, 1000}, {1014, 1000}, {3000, 1000}, {4999, 1000},
	} {
		c := dial(t, srv, dialOpts{})
		c.raw(ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(tc.code), "bye"))
		var ce closeErr
		_, err := c.read(5 * time.Second)
		if !errors.As(err, &ce) || ce.code != tc.want {
			t.Errorf("close %d answered with %v, want %d", tc.code, err, tc.want)
		}
	}
}

// TestHugeFrameHeaderClosesAtOnce: a frame announcing more than max_frame is
// refused (1009) as soon as its header arrives, so the relay never holds
// more than one frame of a client's unparsed bytes.
func TestHugeFrameHeaderClosesAtOnce(t *testing.T) {
	srv := startRelay(t, nil)
	c := dial(t, srv, dialOpts{})
	var w bytes.Buffer
	if err := ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 1000)) // a beginning of the payload, and no more
	if _, err := c.conn.Write(w.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.expectClose(1009)
}
