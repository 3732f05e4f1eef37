package relay_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// seqsOf returns the seqs of a batch or a joined history.
func seqsOf(msgs []any) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, toInt(m.(map[string]any)["seq"]))
	}
	return out
}

func TestHistoryAndResume(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.History = 5 })
	alice := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", "")})
	alice.join("r", 1)
	for i := 1; i <= 8; i++ {
		alice.send(map[string]any{"t": "send", "room": "r", "body": fmt.Sprint("m", i), "ref": i + 1})
	}
	for seen := 0; seen < 8; {
		if f := alice.next(); f.str("t") == "batch" {
			seen += len(f.list("msgs"))
		}
	}
	f := func(join map[string]any, wantSeqs []int64, wantGap bool) {
		t.Helper()
		c := dial(t, srv, dialOpts{json: true})
		join["t"], join["room"], join["ref"] = "join", "r", 1
		c.send(join)
		j := c.expect("joined")
		got := seqsOf(j.list("history"))
		if fmt.Sprint(got) != fmt.Sprint(wantSeqs) || j["gap"] != wantGap || j.num("seq") != 8 {
			t.Errorf("join %v: history %v gap %v seq %d, want %v gap %v seq 8", join, got, j["gap"], j.num("seq"), wantSeqs, wantGap)
		}
	}
	f(map[string]any{}, nil, false)
	f(map[string]any{"history": 2}, []int64{7, 8}, false)
	f(map[string]any{"history": 50}, []int64{4, 5, 6, 7, 8}, false)
	f(map[string]any{"since": 6}, []int64{7, 8}, false)
	f(map[string]any{"since": 3}, []int64{4, 5, 6, 7, 8}, false)
	f(map[string]any{"since": 8}, nil, false)
	f(map[string]any{"since": 1}, []int64{4, 5, 6, 7, 8}, true)
	f(map[string]any{"since": 1, "history": 2}, []int64{7, 8}, true)
	f(map[string]any{"since": 99}, []int64{4, 5, 6, 7, 8}, true)
}

// TestAckedMeansDelivered: several senders, members on both loops and in
// both formats; every member gets every acked message once, in seq order.
func TestAckedMeansDelivered(t *testing.T) {
	srv := startRelay(t, nil)
	const senders, perSender, readers = 3, 40, 60
	var members []*client
	for i := 0; i < readers; i++ {
		c := dial(t, srv, dialOpts{json: i%3 == 0})
		c.join("big", 1)
		members = append(members, c)
	}
	var wg sync.WaitGroup
	acked := make([][]int64, senders)
	for s := 0; s < senders; s++ {
		c := dial(t, srv, dialOpts{token: token(t, fmt.Sprint("s", s), "", ""), json: s == 0})
		c.join("big", 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= perSender; i++ {
				c.send(map[string]any{"t": "send", "room": "big", "body": fmt.Sprint(s, "/", i), "ref": i})
			}
			for len(acked[s]) < perSender {
				f, err := c.read(5 * time.Second)
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
				if f.str("t") == "ack" {
					acked[s] = append(acked[s], f.num("seq"))
				}
			}
		}()
	}
	total := int64(senders * perSender)
	for i, c := range members {
		var next int64 = 1
		for next <= total {
			f := c.next()
			if f.str("t") != "batch" {
				continue
			}
			for _, seq := range seqsOf(f.list("msgs")) {
				if seq != next {
					t.Fatalf("member %d: got seq %d, want %d", i, seq, next)
				}
				next++
			}
		}
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, a := range acked {
		for _, seq := range a {
			if seen[seq] || seq < 1 || seq > total {
				t.Fatalf("ack seq %d repeated or out of range", seq)
			}
			seen[seq] = true
		}
	}
}

// TestJoinWhilePublishing: members that join while messages stream in get
// each message exactly once, from their joined history or a batch.
func TestJoinWhilePublishing(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.History = 1000 })
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Add(1)
	go func() {
		defer pubs.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := srv.Hub().Publish("busy", &shard.Message{From: "bot", Body: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var joiners []*client
	var starts []int64
	for i := 0; i < 20; i++ {
		c := dial(t, srv, dialOpts{json: i%2 == 0})
		c.send(map[string]any{"t": "join", "room": "busy", "ref": 1, "history": 1000})
		j := c.expect("joined")
		hist := seqsOf(j.list("history"))
		for k := 1; k < len(hist); k++ {
			if hist[k] != hist[k-1]+1 {
				t.Fatalf("history not contiguous: %v", hist)
			}
		}
		if len(hist) > 0 && hist[len(hist)-1] != j.num("seq") {
			t.Fatalf("history ends at %d, joined.seq is %d", hist[len(hist)-1], j.num("seq"))
		}
		joiners = append(joiners, c)
		starts = append(starts, j.num("seq"))
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	pubs.Wait()
	last := srv.Hub().Lookup("busy").Info().Seq
	for i, c := range joiners {
		next := starts[i] + 1
		for next <= int64(last) {
			f := c.next()
			if f.str("t") != "batch" {
				continue
			}
			for _, seq := range seqsOf(f.list("msgs")) {
				if seq != next {
					t.Fatalf("joiner %d (joined at %d): got seq %d, want %d", i, starts[i], seq, next)
				}
				next++
			}
		}
	}
}

func TestRateLimitSharedByUser(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.SendRate = 0.5; c.SendBurst = 3 })
	tok := token(t, "gus", "Gus", "")
	a := dial(t, srv, dialOpts{token: tok})
	b := dial(t, srv, dialOpts{token: tok, json: true})
	other := dial(t, srv, dialOpts{token: token(t, "hal", "", "")})
	for _, c := range []*client{a, b, other} {
		c.join("r", 1)
	}
	sendAndReply := func(c *client, ref int) frame {
		t.Helper()
		c.send(map[string]any{"t": "send", "room": "r", "body": "x", "ref": ref})
		for {
			f := c.next()
			if (f.str("t") == "ack" || f.str("t") == "error") && f.num("ref") == int64(ref) {
				return f
			}
		}
	}
	for i, c := range []*client{a, b, a} {
		if f := sendAndReply(c, 10+i); f.str("t") != "ack" {
			t.Fatalf("send %d: %v", i, f)
		}
	}
	f := sendAndReply(b, 20)
	if f.str("code") != "rate_limited" || f.num("retry_ms") < 1 || f.num("retry_ms") > 2000 {
		t.Fatalf("4th send of the user: %v", f)
	}
	if f := sendAndReply(other, 21); f.str("t") != "ack" {
		t.Fatalf("another user is limited too: %v", f)
	}
	// Ten more refusals in a row close the connection with 1008.
	for i := 0; i < 11; i++ {
		a.send(map[string]any{"t": "send", "room": "r", "body": "spam"})
	}
	a.expectClose(1008)
	if m := metricsOf(t, srv); m[`roomcast_disconnects_total{code="1008"}`] != 1 || m[`roomcast_messages_rejected_total{code="rate_limited"}`] < 11 {
		t.Fatalf("1008 or rate_limited not counted")
	}
}

// TestSlowConsumer: a member that stops reading is closed with 4009 once
// its queue passes max-outbound; a reading member gets everything.
func TestSlowConsumer(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxOutbound = 64 << 10; c.IdleTimeout = time.Minute })
	fast := dial(t, srv, dialOpts{})
	fast.join("stream", 1)
	// A small receive buffer, so that the relay's queue fills quickly.
	d := ws.Dialer{Protocols: []string{"roomcast.v1.msgpack"}, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		return nd.DialContext(ctx, network, addr)
	}}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+srv.Addr()+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slow := &client{t: t, conn: conn, br: br}
	if slow.br == nil {
		slow.br = newReader(conn)
	}
	slow.expect("hello")
	slow.join("stream", 1)

	body := string(make([]byte, 400))
	const n = 20000
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got.Load() < n {
			f, err := fast.read(10 * time.Second)
			if err != nil {
				t.Errorf("fast reader: %v", err)
				return
			}
			got.Add(int64(len(f.list("msgs"))))
		}
	}()
	publishPaced(t, srv, "stream", body, n, &got)
	<-done
	if got.Load() != n {
		t.Fatalf("fast reader got %d of %d", got.Load(), n)
	}
	eventually(t, "the slow consumer to be closed", func() bool {
		return metricsOf(t, srv)["roomcast_slow_consumers_total"] == 1
	})
	// Reading now, the slow client finds its connection ended.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, slow.br); err != nil && isTimeout(err) {
		t.Fatal("slow consumer's connection still open")
	}
}

func TestDrain(t *testing.T) {
	cfg := relay.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 2, NodeID: "test"}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var clients []*client
	for i := 0; i < 10; i++ {
		c := dial(t, srv, dialOpts{json: i%2 == 0})
		c.join("r", 1)
		clients = append(clients, c)
	}
	resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz before drain: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(ctx) }()
	for _, c := range clients {
		c.expectClose(1001)
		c.conn.Close()
	}
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("relay still accepts after shutdown")
	}
}

// TestFanoutAllocsDoNotGrowWithMembers publishes into a room of real socket
// members and checks that allocations per message do not grow with the
// number of members: the fan-out allocates nothing per member.
func TestFanoutAllocsDoNotGrowWithMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	perMsg := func(members int) float64 {
		srv := startRelay(t, nil)
		room := fmt.Sprint("allocs", members)
		readers := discardMembers(t, srv, room, members)
		defer readers.close()
		st := &srv.Hub().Stats
		publish := func(n int) {
			want := st.Deliveries.Load() + int64(n*members)
			for i := 0; i < n; i++ {
				if _, err := srv.Hub().Publish(room, &shard.Message{From: "bot", Body: "hello"}); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); st.Deliveries.Load() < want-int64((n-i-1)*members); runtime.Gosched() {
					if time.Now().After(deadline) {
						t.Fatalf("message %d not delivered to all %d members", i, members)
					}
				}
			}
		}
		publish(50) // warm up buffers
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		publish(200)
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / 200
	}
	small, large := perMsg(10), perMsg(400)
	t.Logf("allocations per message: %.1f with 10 members, %.1f with 400", small, large)
	if large-small > 10 {
		t.Fatalf("allocations grow with members: %.1f per message for 10, %.1f for 400", small, large)
	}
}

// members joins n raw connections to room; each then reads and discards.
type memberSet struct {
	conns []net.Conn
	wg    sync.WaitGroup
}

func (m *memberSet) close() {
	for _, c := range m.conns {
		c.Close()
	}
	m.wg.Wait()
}

func discardMembers(t testing.TB, srv *relay.Server, room string, n int) *memberSet {
	t.Helper()
	m := &memberSet{}
	for i := 0; i < n; i++ {
		c := dial(t, srv, dialOpts{})
		c.join(room, 1)
		m.conns = append(m.conns, c.conn)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = c.conn.SetReadDeadline(time.Time{})
			_, _ = io.Copy(io.Discard, c.br)
		}()
	}
	return m
}

// publishPaced publishes n messages into room through the hub, keeping at
// most about 100 ahead of what a reader counted in got.
func publishPaced(t testing.TB, srv *relay.Server, room, body string, n int, got *atomic.Int64) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := srv.Hub().Publish(room, &shard.Message{From: "bot", Body: body}); err != nil {
			t.Fatal(err)
		}
		// At most ~50 messages ahead of the reader that must keep up, so
		// that a descheduled reader on a loaded machine stays well under a
		// 64 KiB max-outbound.
		for i%25 == 24 && got.Load() < int64(i-50) {
			time.Sleep(time.Millisecond)
		}
	}
}
