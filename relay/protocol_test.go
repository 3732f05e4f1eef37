package relay_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
)

// rawUpgrade sends req on a new TCP connection and returns the response
// status line and body.
func rawUpgrade(t *testing.T, srv *relay.Server, req string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func upgradeRequest(path string, headers ...string) string {
	h := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, x := range headers {
		h += x + "\r\n"
	}
	return h + "\r\n"
}

func TestHandshakeRefusals(t *testing.T) {
	srv := startRelay(t, nil)
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Hour).Unix()}).SignedString([]byte(testSecret))
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a"}).SignedString([]byte("other secret"))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "a"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	nosub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"name": "x"}).SignedString([]byte(testSecret))
	badRole, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "role": "god"}).SignedString([]byte(testSecret))
	f := func(name, req string, status int, bodyHas string) {
		t.Helper()
		got, body := rawUpgrade(t, srv, req)
		if got != status || !strings.Contains(body, bodyHas) {
			t.Errorf("%s: got %d %q, want %d containing %q", name, got, body, status, bodyHas)
		}
	}
	f("expired", upgradeRequest("/ws?token="+expired), 401, "expired")
	f("forged", upgradeRequest("/ws?token="+forged), 401, "signature")
	f("alg none", upgradeRequest("/ws?token="+none), 401, "invalid token")
	f("no sub", upgradeRequest("/ws", "Authorization: Bearer "+nosub), 401, "sub")
	f("unknown role", upgradeRequest("/ws?token="+badRole), 401, "role")
	f("garbage token", upgradeRequest("/ws", "Authorization: Bearer abc.def"), 401, "invalid token")
	f("unknown subprotocol", upgradeRequest("/ws", "Sec-WebSocket-Protocol: chat.v9"), 400, "subprotocol")
	f("wrong path", upgradeRequest("/chat"), 404, "/ws")
	f("not an upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 400, "")
	f("header too large", upgradeRequest("/ws", "X-Pad: "+strings.Repeat("a", 9000)), 431, "too large")

	m := metricsOf(t, srv)
	for reason, want := range map[string]float64{"auth": 6, "subprotocol": 1, "not_found": 1, "bad_request": 1, "too_large": 1} {
		if got := m[`roomcast_handshake_failures_total{reason="`+reason+`"}`]; got != want {
			t.Errorf("handshake failures %s = %v, want %v", reason, got, want)
		}
	}
}

func TestHandshakeAccepts(t *testing.T) {
	srv := startRelay(t, nil)
	// No token: an anonymous viewer.
	anon := dial(t, srv, dialOpts{})
	h := anon.hello
	if h["anon"] != true || h.str("role") != "viewer" || h.str("name") != "" || !strings.HasPrefix(h.str("user"), "anon-") {
		t.Fatalf("anonymous hello = %v", h)
	}
	anon2 := dial(t, srv, dialOpts{})
	if anon2.hello.str("user") == h.str("user") {
		t.Fatal("two anonymous viewers share a user id")
	}
	// Token in the Authorization header; no subprotocol means msgpack; a
	// list with one known protocol picks it.
	for _, protos := range [][]string{{}, {"chat.v9", "roomcast.v1.json"}} {
		conn, br, hs, err := ws.Dialer{Protocols: protos, Header: ws.HandshakeHeaderHTTP(http.Header{
			"Authorization": {"Bearer " + token(t, "carol", "Carol", "mod")}})}.Dial(t.Context(), "ws://"+srv.Addr()+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		c := &client{t: t, conn: conn, br: br, json: hs.Protocol == "roomcast.v1.json"}
		if c.br == nil {
			c.br = bufio.NewReader(conn)
		}
		if len(protos) > 0 && !c.json {
			t.Fatalf("negotiated %q, want roomcast.v1.json", hs.Protocol)
		}
		hello := c.expect("hello")
		if hello.str("user") != "carol" || hello.str("role") != "mod" {
			t.Fatalf("hello = %v", hello)
		}
		conn.Close()
	}
}

func TestNoAnonymous(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.NoAnonymous = true })
	if code, body := rawUpgrade(t, srv, upgradeRequest("/ws")); code != 401 || !strings.Contains(body, "token") {
		t.Fatalf("got %d %q", code, body)
	}
}

// TestBytesBehindUpgrade sends the upgrade request and two frames in one
// write: the frames must not be lost.
func TestBytesBehindUpgrade(t *testing.T) {
	srv := startRelay(t, nil)
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var buf bytes.Buffer
	buf.WriteString(upgradeRequest("/ws?token=" + token(t, "dan", "Dan", "")))
	for _, v := range []map[string]any{{"t": "ping", "ref": 1}, {"t": "join", "room": "r1", "ref": 2}} {
		p, _ := msgpack.Marshal(v)
		writeMasked(&buf, ws.OpBinary, true, p)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c := &client{t: t, conn: conn, br: br}
	c.expect("hello")
	if f := c.expect("pong"); f.num("ref") != 1 {
		t.Fatalf("pong = %v", f)
	}
	if f := c.expect("joined"); f.num("ref") != 2 || f.str("room") != "r1" {
		t.Fatalf("joined = %v", f)
	}
}

// writeMasked appends one masked client frame.
func writeMasked(w *bytes.Buffer, op ws.OpCode, fin bool, payload []byte) {
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	_ = ws.WriteHeader(w, h)
	p := append([]byte(nil), payload...)
	ws.Cipher(p, h.Mask, 0)
	w.Write(p)
}

func TestErrorReplies(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxRooms = 2; c.MaxBody = 10 })
	u := dial(t, srv, dialOpts{token: token(t, "erin", "Erin", ""), json: true})
	anon := dial(t, srv, dialOpts{})
	u.join("here", 1)
	anon.join("here", 1)

	f := func(c *client, v map[string]any, code string) {
		t.Helper()
		c.send(v)
		e := c.expect("error")
		if e.str("code") != code || e.str("message") == "" {
			t.Errorf("%v: got %v, want code %s", v, e, code)
		}
		if ref, ok := v["ref"]; ok && e.num("ref") != toInt(ref) {
			t.Errorf("%v: error ref %d, want %v", v, e.num("ref"), ref)
		}
	}
	f(u, map[string]any{"t": "dance", "ref": 2}, "unknown_type")
	f(u, map[string]any{"t": "join", "room": "bad room!", "ref": 3}, "bad_room")
	f(u, map[string]any{"t": "join", "room": "", "ref": 3}, "bad_room")
	f(u, map[string]any{"t": "join", "room": strings.Repeat("a", 65), "ref": 3}, "bad_room")
	f(u, map[string]any{"t": "send", "room": "elsewhere", "body": "x", "ref": 4}, "not_joined")
	f(u, map[string]any{"t": "leave", "room": "elsewhere", "ref": 5}, "not_joined")
	f(u, map[string]any{"t": "send", "room": "here", "body": "12345678901", "ref": 6}, "too_large")
	f(u, map[string]any{"t": "send", "room": "here", "body": "", "ref": 7}, "bad_request")
	f(u, map[string]any{"t": "send", "room": "here", "body": 42, "ref": 8}, "bad_request")
	f(u, map[string]any{"t": "join", "room": "here", "history": -1, "ref": 9}, "bad_request")
	f(u, map[string]any{"t": "mod", "room": "here", "action": "clear", "ref": 10}, "forbidden")
	f(anon, map[string]any{"t": "send", "room": "here", "body": "hi", "ref": 11}, "forbidden")
	u.join("second", 12)
	f(u, map[string]any{"t": "join", "room": "third", "ref": 13}, "too_many_rooms")
	// Multi-byte characters count as one each against max_body.
	u.send(map[string]any{"t": "send", "room": "here", "body": "ééééééééé🎮", "ref": 14})
	if a := u.expectMsgOrAck(); a.str("t") == "ack" && a.num("seq") != 1 {
		t.Fatalf("ack = %v", a)
	}
	// Errors never close: the connection still works.
	u.send(map[string]any{"t": "ping", "ref": 15})
	for {
		if p := u.next(); p.str("t") == "pong" {
			break
		}
	}
	m := metricsOf(t, srv)
	if m[`roomcast_messages_rejected_total{code="bad_room"}`] != 3 || m[`roomcast_messages_rejected_total{code="forbidden"}`] != 2 {
		t.Fatalf("rejections not counted: %v", m[`roomcast_messages_rejected_total{code="bad_room"}`])
	}
}

// TestCloseCodes sends each kind of bad frame on its own connection, while
// a bystander in the same room keeps chatting undisturbed.
func TestCloseCodes(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxFrame = 1024 })
	alice := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", "")})
	alice.join("calm", 1)

	mp := func(v map[string]any) []byte { b, _ := msgpack.Marshal(v); return b }
	badUTF8 := mp(map[string]any{"t": "send", "room": "calm", "body": "\xff\xfe"})
	cases := []struct {
		name  string
		json  bool
		bytes func() []byte
		code  int
	}{
		{"unmasked", false, func() []byte { b, _ := ws.CompileFrame(ws.NewBinaryFrame(mp(map[string]any{"t": "ping"}))); return b }, 1002},
		{"reserved bits", false, func() []byte {
			var w bytes.Buffer
			_ = ws.WriteHeader(&w, ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpBinary, Masked: true, Length: 0})
			return w.Bytes()
		}, 1002},
		{"bad opcode", false, func() []byte { var w bytes.Buffer; writeMasked(&w, 3, true, nil); return w.Bytes() }, 1002},
		{"continuation first", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpContinuation, true, []byte{1})
			return w.Bytes()
		}, 1002},
		{"fragmented ping", false, func() []byte { var w bytes.Buffer; writeMasked(&w, ws.OpPing, false, nil); return w.Bytes() }, 1002},
		{"interleaved message", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpBinary, false, []byte{0x81})
			writeMasked(&w, ws.OpBinary, true, []byte{0x81})
			return w.Bytes()
		}, 1002},
		{"text not UTF-8", true, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpText, true, []byte("{\"t\":\"\xff\"}"))
			return w.Bytes()
		}, 1007},
		{"msgpack garbage", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpBinary, true, []byte{0xc1, 0x00})
			return w.Bytes()
		}, 1007},
		{"msgpack not a map", false, func() []byte { var w bytes.Buffer; writeMasked(&w, ws.OpBinary, true, mp(nil)[:0]); return w.Bytes() }, 1007},
		{"JSON garbage", true, func() []byte { var w bytes.Buffer; writeMasked(&w, ws.OpText, true, []byte("{t:")); return w.Bytes() }, 1007},
		{"body not UTF-8", false, func() []byte { var w bytes.Buffer; writeMasked(&w, ws.OpBinary, true, badUTF8); return w.Bytes() }, 1007},
		{"frame too large", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpBinary, true, make([]byte, 1025))
			return w.Bytes()
		}, 1009},
		{"fragments too large", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpBinary, false, make([]byte, 600))
			writeMasked(&w, ws.OpContinuation, true, make([]byte, 600))
			return w.Bytes()
		}, 1009},
		{"client close", false, func() []byte {
			var w bytes.Buffer
			writeMasked(&w, ws.OpClose, true, ws.NewCloseFrameBody(1000, "bye"))
			return w.Bytes()
		}, 1000},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv, dialOpts{token: token(t, fmt.Sprint("u", i), "", ""), json: tc.json})
			c.join("calm", 1)
			if _, err := c.conn.Write(tc.bytes()); err != nil {
				t.Fatal(err)
			}
			c.expectClose(tc.code)
			// The bystander is undisturbed.
			alice.send(map[string]any{"t": "send", "room": "calm", "body": tc.name, "ref": 100 + i})
			for {
				f := alice.next()
				if f.str("t") == "ack" && f.num("ref") == int64(100+i) {
					break
				}
			}
		})
	}
	m := metricsOf(t, srv)
	for code, want := range map[string]float64{"1002": 6, "1007": 5, "1009": 2, "1000": 1} {
		if got := m[`roomcast_disconnects_total{code="`+code+`"}`]; got != want {
			t.Errorf("disconnects %s = %v, want %v", code, got, want)
		}
	}
}

// TestFragmentsAndControlFrames reassembles a message sent in three
// fragments with a ping between them.
func TestFragmentsAndControlFrames(t *testing.T) {
	srv := startRelay(t, nil)
	c := dial(t, srv, dialOpts{token: token(t, "fay", "Fay", ""), json: true})
	msg := []byte(`{"t":"join","room":"frag","ref":3}`)
	var w bytes.Buffer
	writeMasked(&w, ws.OpText, false, msg[:5])
	writeMasked(&w, ws.OpPing, true, []byte("hey"))
	writeMasked(&w, ws.OpContinuation, false, msg[5:20])
	writeMasked(&w, ws.OpContinuation, true, msg[20:])
	// Deliver it one byte at a time: the parser must wait, never block.
	for _, b := range w.Bytes() {
		if _, err := c.conn.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("want the pong first, got %v %v", h, err)
	}
	p := make([]byte, h.Length)
	_, _ = io.ReadFull(c.br, p)
	if string(p) != "hey" {
		t.Fatalf("pong payload %q", p)
	}
	if f := c.expect("joined"); f.num("ref") != 3 || f.str("room") != "frag" {
		t.Fatalf("joined = %v", f)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IdleTimeout = time.Second; c.PingInterval = time.Hour })
	c := dial(t, srv, dialOpts{})
	start := time.Now()
	c.expectClose(4000)
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", el)
	}
}

func TestServerPings(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.IdleTimeout = 3 * time.Second; c.PingInterval = time.Second })
	c := dial(t, srv, dialOpts{})
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil || h.OpCode != ws.OpPing {
		t.Fatalf("want a ping, got %v %v", h, err)
	}
	c.raw(ws.OpPong, nil)
	// Answering pings keeps the connection alive past the idle timeout.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.read(time.Until(deadline)); err != nil && !isTimeout(err) {
			t.Fatalf("closed although it answered pings: %v", err)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
