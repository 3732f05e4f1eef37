package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/relaytest"
)

// The handshake benchmarks: the whole connect-and-join of one client
// against a real relay on loopback, and its pieces in isolation. Client
// and relay share the process, so BenchmarkHandshakeJoin reports the
// relay's own share as relay-loop-ns/op (the loops' busy time: OnTraffic
// with the upgrade, hello, join and joined); -cpuprofile shows the rest
// (gnet accept, OnOpen, OnClose). Run:
//
//	go test -run '^$' -bench 'Handshake|Identify|UpgradeParse|HelloEncode|JoinedEncode' -benchmem -benchtime 2000x ./relay/

const benchSecret = "bench-secret"

// benchToken mints an HS256 token as `roomcast token` does.
func benchToken(tb testing.TB, sub string) string {
	tb.Helper()
	return relaytest.Sign(tb, benchSecret, jwt.MapClaims{"sub": sub, "name": "Bench " + sub, "iat": time.Now().Unix()})
}

// benchRelay starts a relay whose per-IP accounting covers loopback (as
// for real clients) with limits a benchmark cannot reach.
func benchRelay(b *testing.B) *Server {
	b.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 1, JWTSecret: benchSecret, NodeID: "bench",
		IPExempt: []string{}, IPConnRate: RateLimit{Rate: 1e9, Burst: 1e9}, IPMaxConns: 1 << 20,
		IPRoomRate: RateLimit{Rate: 1e9, Burst: 1e9}}
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// benchConn is one raw client handshake: connect, upgrade with the token,
// read hello, join, read joined, close.
func benchConn(b *testing.B, addr string, req, join []byte, br *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	br.Reset(c)
	for { // the response header
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) == 2 {
			break
		}
	}
	want := func(t string) {
		m, err := wsutil.ReadServerBinary(struct {
			io.Reader
			io.Writer
		}{br, c})
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Contains(m, []byte(t)) {
			b.Fatalf("got %q, want %s", m, t)
		}
	}
	want("hello")
	if _, err := c.Write(join); err != nil {
		b.Fatal(err)
	}
	want("joined")
}

func BenchmarkHandshakeJoin(b *testing.B) {
	srv := benchRelay(b)
	tok := benchToken(b, "u1") // the same token each time: a reconnect storm
	req := []byte("GET /ws?token=" + tok + " HTTP/1.1\r\nHost: " + srv.Addr() +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: roomcast.v1.msgpack\r\n" +
		"Origin: https://game.example\r\nUser-Agent: bench\r\n\r\n")
	benchHandshakeJoins(b, srv, func(int) []byte { return req })
}

// BenchmarkHandshakeJoinDistinct is BenchmarkHandshakeJoin with a token of
// a user of its own for each connection, as in the bench tool's waves: every
// handshake verifies a signature and fills a token cache entry.
func BenchmarkHandshakeJoinDistinct(b *testing.B) {
	srv := benchRelay(b)
	reqs := make([][]byte, b.N+1)
	for i := range reqs {
		reqs[i] = []byte("GET /ws?token=" + benchToken(b, "user-"+itoa(i)) + " HTTP/1.1\r\nHost: " + srv.Addr() +
			"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: roomcast.v1.msgpack\r\n\r\n")
	}
	benchHandshakeJoins(b, srv, func(i int) []byte { return reqs[i] })
}

// benchHandshakeJoins times b.N handshakes, each with a join of lobby, the
// i-th with the upgrade request req(i); req(b.N) made the room before.
func benchHandshakeJoins(b *testing.B, srv *Server, req func(i int) []byte) {
	body, _ := msgpack.Marshal(map[string]any{"t": "join", "room": "lobby", "ref": 1})
	var jb bytes.Buffer
	_ = wsutil.WriteClientMessage(&jb, ws.OpBinary, body)
	br := bufio.NewReaderSize(nil, 4096)
	benchConn(b, srv.Addr(), req(b.N), jb.Bytes(), br) // the room exists from here on
	busy0 := loopsBusy(srv)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchConn(b, srv.Addr(), req(i), jb.Bytes(), br)
	}
	b.StopTimer()
	b.ReportMetric(float64(loopsBusy(srv)-busy0)/float64(b.N), "relay-loop-ns/op")
}

// loopsBusy is the nanoseconds all loops have spent handling traffic.
func loopsBusy(s *Server) int64 {
	var n int64
	for _, l := range *s.loops.Load() {
		n += l.busy.Load()
	}
	return n
}

// BenchmarkIdentify is the token check of authenticator.identify, the same
// token each time (a reconnect) and a new token each time (4096 distinct,
// fewer than b.N only past 4096 iterations).
func BenchmarkIdentify(b *testing.B) {
	auth := func(b *testing.B) *authenticator { // a new one each run: an empty cache
		a, err := newAuthenticator(&Config{JWTSecret: benchSecret})
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	b.Run("same", func(b *testing.B) {
		a := auth(b)
		tok := benchToken(b, "u1")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := a.identify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) { // each token once: every identify verifies
		a := auth(b)
		toks := make([]string, b.N)
		for i := range toks {
			toks[i] = benchToken(b, "user-"+itoa(i))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.identify(toks[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("distinct", func(b *testing.B) {
		a := auth(b)
		toks := make([]string, 4096)
		for i := range toks {
			toks[i] = benchToken(b, "u"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.identify(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// BenchmarkUpgradeParse is the gobwas parse of an upgrade request through
// the relay's callbacks, without admission.
func BenchmarkUpgradeParse(b *testing.B) {
	tok := benchToken(b, "u1")
	req := []byte("GET /ws?token=" + tok + " HTTP/1.1\r\nHost: 127.0.0.1:9000" +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: roomcast.v1.msgpack\r\n" +
		"Origin: https://game.example\r\nUser-Agent: bench\r\n\r\n")
	var u upgrade
	u.ext.Parameters = deflateParams
	u.up = ws.Upgrader{OnRequest: u.onRequest, OnHeader: func(k, v []byte) error { return u.onHeader(k, v, true) }, Protocol: u.onProtocol, Negotiate: u.negotiate}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		u.reset(req)
		if _, err := u.up.Upgrade(&u); err != nil {
			b.Fatal(err)
		}
		if u.token != tok || u.origin != "https://game.example" {
			b.Fatalf("token %q origin %q", u.token, u.origin)
		}
	}
	_, _ = io.Discard.Write(u.out.Bytes())
}

// BenchmarkHelloEncode is the hello frame of a new connection, encoded by
// the loop's encoder.
func BenchmarkHelloEncode(b *testing.B) {
	enc := proto.NewEncoder()
	h := &proto.Hello{T: proto.THello, V: 1, User: "u1", Name: "Bench u1", Role: roleUser.String(),
		Limits: proto.Limits{MaxBody: 1000, MaxRooms: 16, MaxFrame: 65536, Rate: 5, Burst: 10}, Node: "bench"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := enc.Frame(proto.Msgpack, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoinedEncode is the joined answer of a join into a room with a
// few members and no history.
func BenchmarkJoinedEncode(b *testing.B) {
	enc := proto.NewEncoder()
	j := &proto.Joined{T: proto.TJoined, Ref: 1, Room: "lobby", Seq: 42, History: []msgpack.RawMessage{}, Count: 3,
		Members: []proto.Member{{ID: "u1", Name: "One"}, {ID: "u2", Name: "Two"}, {ID: "u3", Name: "Three"}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := enc.Frame(proto.Msgpack, j); err != nil {
			b.Fatal(err)
		}
	}
}
