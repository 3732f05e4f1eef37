package relay_test

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
)

// panicsOf is the number of panics the relay recovered, at any site.
func panicsOf(t testing.TB, srv *relay.Server) float64 {
	n := 0.0
	for k, v := range metricsOf(t, srv) {
		if strings.HasPrefix(k, "roomcast_panics_total{") {
			n += v
		}
	}
	return n
}

// FuzzInbound feeds whole connections to a real relay over loopback: the
// bytes of an HTTP request (an upgrade, an /sse or /overlay request, or
// anything) followed by WebSocket frames, written in chunks whose sizes come
// from the input, so the relay sees every split of a request or a frame.
// The relay must survive every input (a panic ends the fuzz process, a
// recovered one is counted and fails the run) and keep serving others.
func FuzzInbound(f *testing.F) {
	upgrade := func(path, extra string) []byte {
		return []byte("GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + "\r\n")
	}
	frame := func(op ws.OpCode, fin bool, payload []byte) []byte {
		var b bytes.Buffer
		_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewFrame(op, fin, payload)))
		return b.Bytes()
	}
	mp := func(v map[string]any) []byte {
		b, _ := msgpack.Marshal(v)
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tok := chaosToken("fuzzer", "mod")

	f.Add(cat(upgrade("/ws", ""),
		frame(ws.OpBinary, true, mp(map[string]any{"t": "join", "room": "lobby:f", "ref": 1})),
		frame(ws.OpBinary, true, mp(map[string]any{"t": "send", "room": "lobby:f", "body": "hi", "ref": 2})),
		frame(ws.OpPing, true, []byte("p")),
		frame(ws.OpClose, true, []byte{3, 232})), uint64(1))
	f.Add(cat(upgrade("/ws?token="+tok, "Sec-WebSocket-Protocol: roomcast.v1.json\r\n"),
		frame(ws.OpText, true, []byte(`{"t":"join","room":"stream:f","since":3,"epoch":"x"}`)),
		frame(ws.OpText, false, []byte(`{"t":"send","room":"st`)),
		frame(ws.OpContinuation, true, []byte(`ream:f","body":"yo","meta":{"k":"v"}}`)),
		frame(ws.OpText, true, []byte(`{"t":"mod","room":"stream:f","action":"clear"}`)),
		frame(ws.OpText, true, []byte(`{"t":"refresh","token":"x"}`))), uint64(2))
	f.Add(cat(upgrade("/ws", "Origin: http://evil.example\r\nX-Forwarded-For: 10.1.2.3\r\n"),
		frame(ws.OpBinary, true, []byte{0x81, 0xa1, 't', 0xdb, 0xff, 0xff, 0xff, 0xf0})), uint64(3))
	f.Add([]byte("GET /sse?room=lobby:f&since=1 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: abc:7\r\n\r\n"), uint64(4))
	f.Add([]byte("GET /overlay?room=lobby:f HTTP/1.1\r\nHost: x\r\n\r\n"), uint64(5))
	f.Add([]byte("PROXY TCP4 10.0.0.1 10.0.0.2 1234 80\r\n"+string(upgrade("/ws", ""))), uint64(6))
	f.Add(cat(upgrade("/ws", ""), []byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), uint64(7))

	srv := startRelay(f, func(c *relay.Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		c.MaxFrame = 4 << 10
	})
	f.Fuzz(func(t *testing.T, data []byte, split uint64) {
		conn, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
		if err != nil {
			t.Fatalf("the relay stopped accepting: %v", err)
		}
		defer conn.Close()
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		rng := rand.New(rand.NewPCG(split, split>>32))
		for len(data) > 0 {
			n := min(len(data), 1+rng.IntN(64))
			if _, err := conn.Write(data[:n]); err != nil {
				break // closed by the relay: a refusal
			}
			data = data[n:]
			if rng.IntN(4) == 0 {
				time.Sleep(50 * time.Microsecond) // let the relay see a partial read
			}
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		// Until the relay closes; a connection it keeps (a WebSocket or a
		// stream waiting for more) is left after a moment.
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = io.Copy(io.Discard, conn)
		if n := panicsOf(t, srv); n > 0 {
			t.Fatalf("the relay recovered %v panics", n)
		}
	})
}
