package relay_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
)

// TestChaos runs 500 connections doing random valid and invalid things for
// 30 seconds (ROOMCAST_CHAOS_SECONDS overrides it) against one relay, while
// a witness publisher and a witness reader share a room with some of them.
// Afterwards: the witness reader got every acked message exactly once and in
// order, the relay's heap is back under a bound set by its caps, /readyz is
// 200 and a new client is served.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	secs := 30
	if v, err := strconv.Atoi(os.Getenv("ROOMCAST_CHAOS_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	const conns = 500
	const maxOutbound = 64 << 10
	srv := startRelay(t, func(c *relay.Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) // moderation's audit lines
		c.MaxOutbound = maxOutbound
		c.MaxFrame = 16 << 10
		c.JoinRate = relay.RateLimit{Rate: 50, Burst: 50}
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	w := startWitness(t, srv)

	var peak atomic.Uint64 // heap in use, sampled while the chaos runs
	go func() {
		for ctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak.Store(max(peak.Load(), ms.HeapInuse))
			time.Sleep(500 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var actions, dials atomic.Int64
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for ctx.Err() == nil {
				dials.Add(1)
				chaosConn(ctx, srv, rng, i, &actions)
			}
		}()
	}
	wg.Wait()
	acked := w.stop(t)
	t.Logf("%d connections dialled, %d actions; witness: %d messages acked", dials.Load(), actions.Load(), acked)
	if acked < 50 {
		t.Fatalf("the witness publisher got only %d acks in %ds", acked, secs)
	}

	if n := panicsOf(t, srv); n > 0 {
		t.Fatalf("the relay recovered %v panics during the chaos run", n)
	}
	// The relay is still serving and ready.
	resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d after the chaos", resp.StatusCode)
	}
	c := dial(t, srv, dialOpts{token: token(t, "after", "After", "")})
	c.join("lobby:after", 1)
	c.send(map[string]any{"t": "send", "room": "lobby:after", "body": "still here", "ref": 2})
	if f := c.expectMsgOrAck(); f.str("t") != "ack" && f.str("t") != "batch" {
		t.Fatalf("after the chaos: %v", f)
	}

	// Memory: every chaos connection is gone; what the relay holds now is
	// rooms and history, bounded by configuration, not by what was sent.
	eventually(t, "the chaos connections to close", func() bool {
		open := 0.0
		for k, v := range metricsOf(t, srv) {
			if strings.HasPrefix(k, "roomcast_loop_connections{") {
				open += v
			}
		}
		return open <= 2 // the witness publisher and the client dialled after the chaos
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use (relay and clients): %d MB before, %d MB at the peak, %d MB after", before.HeapInuse>>20, peak.Load()>>20, after.HeapInuse>>20)
	if grown > 64<<20 {
		t.Fatalf("heap in use grew by %d MB over the chaos run", grown>>20)
	}
	// At most conns x MaxOutbound can be queued; the clients themselves
	// hold their read buffers and goroutines.
	if p := peak.Load(); p > before.HeapInuse+conns*maxOutbound+256<<20 {
		t.Fatalf("heap in use peaked at %d MB during the chaos run", p>>20)
	}
}

// chaosRooms are the rooms chaos connections use; the witness room is one.
var chaosRooms = []string{"lobby:a", "lobby:b", "lobby:c", "stream:w", "x:1", "x:2"}

const witnessRoom = "stream:w"

// chaosConn dials one connection (sometimes a raw, broken one) and does
// random things with it until it is closed, the context ends or it decides
// to go. It never fails the test: what it checks is that the relay lives.
func chaosConn(ctx context.Context, srv *relay.Server, rng *rand.Rand, i int, actions *atomic.Int64) {
	switch rng.IntN(20) {
	case 0:
		chaosRawHTTP(ctx, srv, rng)
		return
	case 1:
		chaosSSE(ctx, srv, rng)
		return
	}
	u := "ws://" + srv.Addr() + "/ws"
	if rng.IntN(5) > 0 {
		u += "?token=" + chaosToken(fmt.Sprintf("u%d", i), []string{"user", "user", "user", "mod", "bot"}[rng.IntN(5)])
	}
	proto := []string{"roomcast.v1.msgpack", "roomcast.v1.json"}[rng.IntN(2)]
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{proto}}
	conn, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return
	}
	defer conn.Close()
	if br == nil {
		br = bufio.NewReader(conn)
	}
	// Most connections read what they get; some never read (slow consumers).
	reads := rng.IntN(10) > 0
	if reads {
		go func() { _, _ = io.Copy(io.Discard, br) }()
	}
	isJSON := proto == "roomcast.v1.json"
	send := func(v map[string]any) error {
		var b []byte
		op := ws.OpBinary
		if isJSON {
			b, _ = json.Marshal(v)
			op = ws.OpText
		} else {
			b, _ = msgpack.Marshal(v)
		}
		return wsutil.WriteClientMessage(conn, op, b)
	}
	for n := rng.IntN(200); n > 0 && ctx.Err() == nil; n-- {
		actions.Add(1)
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if chaosAction(conn, send, rng) != nil {
			return
		}
		time.Sleep(time.Duration(5+rng.IntN(40)) * time.Millisecond)
	}
}

// chaosAction does one random thing on a WebSocket connection.
func chaosAction(conn net.Conn, send func(map[string]any) error, rng *rand.Rand) error {
	room := chaosRooms[rng.IntN(len(chaosRooms))]
	switch rng.IntN(24) {
	case 0, 1, 2:
		return send(map[string]any{"t": "join", "room": room, "ref": rng.IntN(100), "history": rng.IntN(200)})
	case 3:
		return send(map[string]any{"t": "join", "room": room, "since": rng.IntN(50), "epoch": "stale"})
	case 4, 5, 6, 7:
		return send(map[string]any{"t": "send", "room": room, "ref": rng.IntN(100), "body": randText(rng, 1+rng.IntN(600)),
			"meta": map[string]any{"k": randText(rng, rng.IntN(300))}})
	case 8:
		return send(map[string]any{"t": "leave", "room": room})
	case 9, 10:
		return send(map[string]any{"t": "ping", "ref": rng.IntN(1000)})
	case 11:
		return wsutil.WriteClientMessage(conn, ws.OpPing, make([]byte, rng.IntN(126)))
	case 12:
		if room == witnessRoom { // deleting or clearing the witness's messages is allowed, but not what it checks
			room = "lobby:a"
		}
		return send(map[string]any{"t": "mod", "room": room, "action": []string{"ban", "timeout", "delete", "clear", "slow", "nope"}[rng.IntN(6)],
			"user": fmt.Sprintf("u%d", rng.IntN(500)), "secs": rng.IntN(3), "seq": rng.IntN(20)})
	case 13:
		return send(map[string]any{"t": "refresh", "token": "not.a.token"})
	case 14:
		return send(map[string]any{"t": []string{"nope", "", "JOIN"}[rng.IntN(3)], "room": 42, "ref": -1})
	case 15:
		return send(map[string]any{"t": "join", "room": randText(rng, 70)})
	case 16: // random bytes as a frame
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return wsutil.WriteClientMessage(conn, []ws.OpCode{ws.OpText, ws.OpBinary}[rng.IntN(2)], b)
	case 17: // a msgpack length bomb
		return wsutil.WriteClientMessage(conn, ws.OpBinary, []byte{0x81, 0xa1, 't', 0xdb, 0xff, 0xff, 0xff, 0xf0})
	case 18: // an oversized frame: close 1009
		return wsutil.WriteClientMessage(conn, ws.OpBinary, make([]byte, 20<<10))
	case 19: // an unmasked frame: close 1002
		_, err := conn.Write([]byte{0x82, 0x01, 0x00})
		return err
	case 20: // a fragment without a start, or interleaved
		return ws.WriteFrame(conn, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, rng.IntN(2) == 0, []byte("xx"))))
	case 21: // a close frame with a random code
		body := make([]byte, 2)
		binary.BigEndian.PutUint16(body, uint16(rng.IntN(6000)))
		return wsutil.WriteClientMessage(conn, ws.OpClose, body)
	case 22: // half a frame, then more later
		_, err := conn.Write([]byte{0x82, 0xfe, 0x10})
		return err
	default: // a fragmented message in two parts
		if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewFrame(ws.OpBinary, false, []byte{0x81}))); err != nil {
			return err
		}
		b, _ := msgpack.Marshal("t")
		return ws.WriteFrame(conn, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, append(b, 0xa4, 'p', 'i', 'n', 'g'))))
	}
}

// chaosRawHTTP sends a partial, huge or odd HTTP request.
func chaosRawHTTP(ctx context.Context, srv *relay.Server, rng *rand.Rand) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", srv.Addr())
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	reqs := []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n", // never finished
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: nope\r\n\r\n",
		"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /ws?token=bad HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"GET /ws HTTP/1.1\r\nX: " + randText(rng, 9000) + "\r\n\r\n",
		"\x00\x01\x02garbage\r\n\r\n",
	}
	_, _ = conn.Write([]byte(reqs[rng.IntN(len(reqs))]))
	_, _ = io.Copy(io.Discard, conn)
}

// chaosSSE opens an event stream and reads it for a while, or never.
func chaosSSE(ctx context.Context, srv *relay.Server, rng *rand.Rand) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", srv.Addr())
	if err != nil {
		return
	}
	defer conn.Close()
	room := chaosRooms[rng.IntN(len(chaosRooms))]
	q := []string{"", "&since=3", "&history=500", "&since=x", "&since=1:2"}[rng.IntN(5)]
	_, _ = fmt.Fprintf(conn, "GET /sse?room=%s%s HTTP/1.1\r\nHost: x\r\n\r\n", room, q)
	_ = conn.SetDeadline(time.Now().Add(time.Duration(rng.IntN(3000)) * time.Millisecond))
	if rng.IntN(3) > 0 {
		_, _ = io.Copy(io.Discard, conn)
		return
	}
	select { // never reads
	case <-ctx.Done():
	case <-time.After(time.Duration(rng.IntN(3000)) * time.Millisecond):
	}
}

func chaosToken(sub, role string) string {
	c := jwt.MapClaims{"sub": sub, "name": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()}
	s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	return s
}

func randText(rng *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789 :-_.é👋"
	r := []rune(chars)
	b := make([]rune, n)
	for i := range b {
		b[i] = r[rng.IntN(len(r))]
	}
	return string(b)
}

// witness is a well-behaved publisher and reader pair in the witness room.
type witness struct {
	stopPub  chan struct{}
	pubDone  chan struct{}
	mu       sync.Mutex
	acked    map[uint64]bool
	received []uint64
	readErr  error
	reader   net.Conn
	readDone chan struct{}
}

// startWitness joins a reader to the witness room and starts a bot that
// publishes to it every 25 ms, remembering the seq of every ack.
func startWitness(t *testing.T, srv *relay.Server) *witness {
	w := &witness{stopPub: make(chan struct{}), pubDone: make(chan struct{}), acked: map[uint64]bool{}, readDone: make(chan struct{})}
	rd := dial(t, srv, dialOpts{token: token(t, "witness-reader", "R", "")})
	rd.join(witnessRoom, 1)
	w.reader = rd.conn
	go func() {
		defer close(w.readDone)
		for {
			f, err := rd.read(time.Minute)
			if err != nil {
				w.mu.Lock()
				w.readErr = err
				w.mu.Unlock()
				return
			}
			if f.str("t") != "batch" || f.str("room") != witnessRoom {
				continue
			}
			w.mu.Lock()
			for _, m := range f.list("msgs") {
				mm, _ := m.(map[string]any)
				if mm["from"] == "witness" {
					w.received = append(w.received, uint64(toInt(mm["seq"])))
				}
			}
			w.mu.Unlock()
		}
	}()
	pub := dial(t, srv, dialOpts{token: token(t, "witness", "W", "bot")})
	pub.join(witnessRoom, 1)
	go func() {
		defer close(w.pubDone)
		tick := time.NewTicker(25 * time.Millisecond) // 40/s: under a bot's 50/s
		defer tick.Stop()
		ref := 100
		for {
			select {
			case <-w.stopPub:
				return
			case <-tick.C:
			}
			ref++
			b, _ := msgpack.Marshal(map[string]any{"t": "send", "room": witnessRoom, "body": "w", "ref": ref})
			if wsutil.WriteClientMessage(pub.conn, ws.OpBinary, b) != nil {
				return
			}
			for { // wait for this send's ack (batches and presence pass by)
				f, err := pub.read(10 * time.Second)
				if err != nil {
					return
				}
				if f.str("t") == "ack" && f.num("ref") == int64(ref) {
					w.mu.Lock()
					w.acked[uint64(f.num("seq"))] = true
					w.mu.Unlock()
					break
				}
				if f.str("t") == "error" && f.num("ref") == int64(ref) {
					break
				}
			}
		}
	}()
	return w
}

// stop ends the publisher, lets the reader catch up, and checks that the
// reader got every acked message once, in order (other members' messages
// may sit between them). It returns the number of acked messages.
func (w *witness) stop(t *testing.T) int {
	t.Helper()
	close(w.stopPub)
	<-w.pubDone
	w.mu.Lock()
	n := len(w.acked)
	w.mu.Unlock()
	eventually(t, "the witness reader to receive every acked message", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.received) >= n || w.readErr != nil
	})
	w.reader.Close()
	<-w.readDone
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[uint64]bool{}
	var last uint64
	for _, s := range w.received {
		if seen[s] || s <= last {
			t.Fatalf("witness reader: seq %d after %d (duplicate or out of order)", s, last)
		}
		seen[s], last = true, s
	}
	for s := range w.acked {
		if !seen[s] {
			t.Fatalf("witness reader never got acked seq %d (got %d of %d acked; reader error %v)", s, len(w.received), n, w.readErr)
		}
	}
	return n
}
