package relay_test

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// The relay accepts a permessage-deflate offer with no context takeover
// either way, declines what it cannot do, and never fails an upgrade over
// an offer.
func TestDeflateNegotiation(t *testing.T) {
	srv := startRelay(t, nil)
	opt := func(params ...string) httphead.Option {
		o := httphead.Option{Name: []byte("permessage-deflate")}
		for _, p := range params {
			k, v, _ := strings.Cut(p, "=")
			var val []byte
			if v != "" {
				val = []byte(v)
			}
			o.Parameters.Set([]byte(k), val)
		}
		return o
	}
	cases := []struct {
		name   string
		offers []httphead.Option
		want   bool
	}{
		{"none", nil, false},
		{"no context takeover", []httphead.Option{offerDeflate}, true},
		{"browser", []httphead.Option{offerBrowser}, true},
		{"bare", []httphead.Option{opt()}, true},
		{"client window 10", []httphead.Option{opt("client_max_window_bits=10")}, true},
		{"server window 10", []httphead.Option{opt("server_max_window_bits=10")}, false},
		{"unknown parameter", []httphead.Option{opt("foo=bar")}, false},
		{"second offer taken", []httphead.Option{opt("server_max_window_bits=9"), opt("client_max_window_bits")}, true},
		{"other extension", []httphead.Option{{Name: []byte("x-webkit-deflate-frame")}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialZ(t, srv, dialOpts{}, tc.offers...)
			_, ok := findDeflate(c.ext)
			if ok != tc.want {
				t.Fatalf("negotiated %v (response %q), want %v", ok, c.resp, tc.want)
			}
			if !ok {
				if c.resp != "" {
					t.Fatalf("response header %q, want none", c.resp)
				}
				return
			}
			for _, p := range []string{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover"} {
				if !strings.Contains(c.resp, p) {
					t.Errorf("Sec-WebSocket-Extensions %q lacks %s", c.resp, p)
				}
			}
			if len(c.ext) != 1 {
				t.Errorf("%d extensions accepted, want 1", len(c.ext))
			}
		})
	}
}

func findDeflate(ext []httphead.Option) (wsflate.Parameters, bool) {
	for _, o := range ext {
		if string(o.Name) == "permessage-deflate" {
			var p wsflate.Parameters
			return p, p.Parse(o) == nil
		}
	}
	return wsflate.Parameters{}, false
}

// Members that negotiated compression get the room's batches compressed
// (RSV1) in both formats and read the same messages as plain members;
// replies may come plain. They may send compressed frames, whole or
// fragmented.
func TestDeflateBatches(t *testing.T) {
	srv := startRelay(t, nil)
	const room = "z"
	zmp := dialZ(t, srv, dialOpts{}, offerBrowser)
	zjs := dialZ(t, srv, dialOpts{json: true}, offerDeflate)
	plain := dial(t, srv, dialOpts{json: true})
	for _, c := range []*zClient{zmp, zjs} {
		if _, ok := findDeflate(c.ext); !ok {
			t.Fatalf("not negotiated: %q", c.resp)
		}
		c.joinZ(room, 1)
	}
	plain.join(room, 1)

	sender := dialZ(t, srv, dialOpts{token: token(t, "alice", "Alice", "")}, offerBrowser)
	sender.joinZ(room, 1)
	const n = 30
	var want []string
	for i := range n {
		body := chatText(i, 100)
		want = append(want, body)
		if i%3 == 0 { // a plain frame: RFC 7692 lets a client mix
			sender.send(map[string]any{"t": "send", "room": room, "body": body, "ref": i + 10})
		} else {
			sender.sendZ(map[string]any{"t": "send", "room": room, "body": body, "ref": i + 10})
		}
	}
	// One fragmented compressed message: RSV1 on the first frame only.
	body := chatText(99, 300)
	want = append(want, body)
	sendFragmentedZ(t, sender, map[string]any{"t": "send", "room": room, "body": body, "ref": 99})

	read := func(next func() (frame, bool)) (bodies []string, zBatches, batches int) {
		for len(bodies) < len(want) {
			f, z := next()
			if f.str("t") != "batch" {
				continue
			}
			batches++
			if z {
				zBatches++
			}
			for _, m := range f.list("msgs") {
				bodies = append(bodies, fmt.Sprint(m.(map[string]any)["body"]))
			}
		}
		return
	}
	for _, c := range []*zClient{zmp, zjs, sender} {
		got, zb, b := read(c.nextZ)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("compressed member read %q, want %q", got, want)
		}
		if zb == 0 {
			t.Errorf("compressed member: none of %d batches was compressed", b)
		}
	}
	got, _, _ := read(func() (frame, bool) { return plain.next(), false })
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("plain member read %q, want %q", got, want)
	}
	// The sender's acks came (plain or not), and the connection is fine.
	sender.send(map[string]any{"t": "ping", "ref": 1000})
	for {
		if f, _ := sender.nextZ(); f.str("t") == "pong" {
			break
		}
	}
}

// sendFragmentedZ sends v deflated in three frames: RSV1 on the first.
func sendFragmentedZ(t *testing.T, c *zClient, v map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	b := marshal(t, c.client, v)
	_, _ = fw.Write(b)
	_ = fw.Flush()
	z := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	op := ws.OpBinary
	if c.json {
		op = ws.OpText
	}
	third := len(z) / 3
	first := ws.NewFrame(op, false, z[:third])
	first.Header.Rsv = ws.Rsv(true, false, false)
	c.writeFrame(first)
	c.writeFrame(ws.NewFrame(ws.OpContinuation, false, z[third:2*third]))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, true, z[2*third:]))
}

// marshal encodes v in c's format.
func marshal(t *testing.T, c *client, v map[string]any) []byte {
	t.Helper()
	var b []byte
	var err error
	if c.json {
		b, err = json.Marshal(v)
	} else {
		b, err = msgpack.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A compressed message that inflates past max_frame (a zip bomb) ends the
// connection with 1009, after inflating no more than that; other
// connections go on.
func TestDeflateZipBomb(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxFrame = 16 << 10 })
	other := dial(t, srv, dialOpts{})
	c := dialZ(t, srv, dialOpts{}, offerBrowser)
	bomb := bytes.Repeat([]byte{0x81}, 10<<20) // 10 MiB of one byte: about 10 KiB deflated
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = fw.Write(bomb)
	_ = fw.Flush()
	z := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	if len(z) >= 16<<10 {
		t.Fatalf("the bomb deflates to %d bytes: not under max_frame", len(z))
	}
	bomb = nil
	before := metricsOf(t, srv)[`roomcast_disconnects_total{code="1009"}`]
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc
	f := ws.NewFrame(ws.OpBinary, true, z) // one frame under max_frame
	f.Header.Rsv = ws.Rsv(true, false, false)
	c.writeFrame(f)
	c.expectCloseZ(1009)
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(heap0); grew > 8<<20 {
		t.Errorf("heap grew %d bytes inflating a bomb capped at 16 KiB", grew)
	}
	eventually(t, "1009 counted", func() bool {
		return metricsOf(t, srv)[`roomcast_disconnects_total{code="1009"}`] == before+1
	})
	other.send(map[string]any{"t": "ping", "ref": 1})
	other.expect("pong")
}

// RSV1 is a protocol error (1002) without the extension, and on control
// frames or continuations with it; a compressed frame that does not inflate
// is invalid data (1007). Each is counted.
func TestDeflateBadFrames(t *testing.T) {
	srv := startRelay(t, nil)
	ping := marshal(t, &client{}, map[string]any{"t": "ping", "ref": 1})
	cases := []struct {
		name  string
		offer bool
		frame func() ws.Frame
		code  int
	}{
		{"RSV1 without negotiation", false, func() ws.Frame {
			f, _ := wsflate.CompressFrame(ws.NewFrame(ws.OpBinary, true, ping))
			return f
		}, 1002},
		{"RSV1 on a ping", true, func() ws.Frame {
			f := ws.NewPingFrame([]byte("x"))
			f.Header.Rsv = ws.Rsv(true, false, false)
			return f
		}, 1002},
		{"RSV2", true, func() ws.Frame {
			f := ws.NewFrame(ws.OpBinary, true, ping)
			f.Header.Rsv = ws.Rsv(false, true, false)
			return f
		}, 1002},
		{"not deflate", true, func() ws.Frame {
			f := ws.NewFrame(ws.OpBinary, true, []byte{0xff, 0xff, 0xff, 0xff, 0x07})
			f.Header.Rsv = ws.Rsv(true, false, false)
			return f
		}, 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var offers []httphead.Option
			if tc.offer {
				offers = append(offers, offerBrowser)
			}
			c := dialZ(t, srv, dialOpts{}, offers...)
			key := fmt.Sprintf("roomcast_disconnects_total{code=%q}", fmt.Sprint(tc.code))
			before := metricsOf(t, srv)[key]
			c.writeFrame(tc.frame())
			c.expectCloseZ(tc.code)
			eventually(t, "close counted", func() bool { return metricsOf(t, srv)[key] == before+1 })
		})
	}
	// RSV1 on a continuation.
	c := dialZ(t, srv, dialOpts{}, offerBrowser)
	c.writeFrame(ws.NewFrame(ws.OpBinary, false, ping[:2]))
	cont := ws.NewFrame(ws.OpContinuation, true, ping[2:])
	cont.Header.Rsv = ws.Rsv(true, false, false)
	c.writeFrame(cont)
	c.expectCloseZ(1002)
}

// Fan-out to members that negotiated compression allocates nothing per
// member either: allocations per message do not grow with members.
func TestFanoutAllocsDoNotGrowWithCompressedMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	perMsg := func(members int) float64 {
		srv := startRelay(t, nil)
		room := fmt.Sprint("zallocs", members)
		readers := discardMembersZ(t, srv, room, members)
		defer readers.close()
		st := &srv.Hub().Stats
		bodies := make([]string, 250)
		for i := range bodies {
			bodies[i] = chatText(i, 200)
		}
		publish := func(n int) {
			want := st.Deliveries.Load() + int64(n*members)
			for i := 0; i < n; i++ {
				if _, err := srv.Hub().Publish(room, &shard.Message{From: "bot", Body: bodies[i]}); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); st.Deliveries.Load() < want-int64((n-i-1)*members); runtime.Gosched() {
					if time.Now().After(deadline) {
						t.Fatalf("message %d not delivered to all %d members", i, members)
					}
				}
			}
		}
		publish(50)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		publish(200)
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / 200
	}
	small, large := perMsg(10), perMsg(400)
	t.Logf("allocations per message, compressed members: %.1f with 10 members, %.1f with 400", small, large)
	if large-small > 10 {
		t.Fatalf("allocations grow with compressed members: %.1f per message for 10, %.1f for 400", small, large)
	}
}

// discardMembersZ joins n connections that negotiated compression to room;
// each checks that batches come compressed, then reads and discards.
func discardMembersZ(t testing.TB, srv *relay.Server, room string, n int) *memberSet {
	t.Helper()
	m := &memberSet{}
	var once sync.Once
	for i := 0; i < n; i++ {
		c := dialZ(t, srv, dialOpts{}, offerBrowser)
		c.joinZ(room, 1)
		m.conns = append(m.conns, c.conn)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = c.conn.SetReadDeadline(time.Time{})
			for { // until the first batch: it must be compressed
				h, err := ws.ReadHeader(c.br)
				if err != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, c.br, h.Length); err != nil {
					return
				}
				if h.OpCode == ws.OpBinary && h.Length > 100 {
					if h.Rsv != ws.Rsv(true, false, false) {
						once.Do(func() { t.Errorf("a compressed member got a plain batch") })
					}
					break
				}
			}
			_, _ = io.Copy(io.Discard, c.br)
		}()
	}
	return m
}
