package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
)

// zClient is a client that offered permessage-deflate (wsflate on the
// client side). It reads compressed and plain frames alike.
type zClient struct {
	*client
	ext  []httphead.Option // what the relay accepted
	resp string            // the Sec-WebSocket-Extensions response header
}

// offerDeflate is the offer of a client that wants no context takeover.
var offerDeflate = wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}.Option()

// offerBrowser is what Chromium offers.
var offerBrowser = httphead.Option{Name: []byte("permessage-deflate"),
	Parameters: httphead.Parameters{}}

func init() {
	offerBrowser.Parameters.Set([]byte("client_max_window_bits"), nil)
}

// dialZ dials with the given extension offers (none: no offer) and reads
// hello.
func dialZ(t testing.TB, srv *relay.Server, o dialOpts, offers ...httphead.Option) *zClient {
	t.Helper()
	z := &zClient{}
	rec := &recordConn{}
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{"roomcast.v1.msgpack"}, Extensions: offers,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			rec.Conn = c
			return rec, err
		}}
	if o.json {
		d.Protocols = []string{"roomcast.v1.json"}
	}
	u := "ws://" + srv.Addr() + "/ws"
	if o.token != "" {
		u += "?token=" + o.token
	}
	conn, br, hs, err := d.Dial(context.Background(), u)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	z.client = &client{t: t, conn: conn, br: br, json: o.json}
	z.ext = hs.Extensions
	z.resp = rec.header("Sec-WebSocket-Extensions")
	f, _, err := z.readZ(5 * time.Second)
	if err != nil || f.str("t") != "hello" {
		t.Fatalf("hello: %v %v", f, err)
	}
	return z
}

// recordConn keeps the first bytes read: the handshake response.
type recordConn struct {
	net.Conn
	got []byte
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if len(c.got) < 4096 {
		c.got = append(c.got, p[:n]...)
	}
	return n, err
}

// header returns the value of the response header key ("" if none).
func (c *recordConn) header(key string) string {
	head, _, _ := strings.Cut(string(c.got), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// readZ reads the next data frame, inflating it if RSV1 is set, and says
// whether it was compressed.
func (c *zClient) readZ(timeout time.Duration) (frame, bool, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, false, err
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, false, err
		}
		h, z, err := wsflate.UnsetBit(h)
		if err != nil || h.Rsv != 0 {
			return nil, false, fmt.Errorf("bad reserved bits %v: %v", h.Rsv, err)
		}
		if z {
			f, err := wsflate.DecompressFrame(ws.Frame{Header: ws.Header{Fin: true, OpCode: h.OpCode,
				Rsv: ws.Rsv(true, false, false), Length: h.Length}, Payload: payload})
			if err != nil {
				return nil, false, fmt.Errorf("inflate: %w", err)
			}
			payload = f.Payload
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.conn, ws.OpPong, payload)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(payload)
			return nil, false, closeErr{int(code), reason}
		}
		f := frame{}
		if c.json {
			err = json.Unmarshal(payload, &f)
		} else {
			err = msgpack.Unmarshal(payload, (*map[string]any)(&f))
		}
		if err != nil {
			return nil, z, fmt.Errorf("cannot decode %q: %w", payload, err)
		}
		return f, z, nil
	}
}

// nextZ reads the next data frame or fails the test.
func (c *zClient) nextZ() (frame, bool) {
	c.t.Helper()
	f, z, err := c.readZ(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f, z
}

// expectCloseZ reads until the relay closes and checks the code.
func (c *zClient) expectCloseZ(code int) {
	c.t.Helper()
	for {
		_, _, err := c.readZ(5 * time.Second)
		if err == nil {
			continue
		}
		var ce closeErr
		if !errors.As(err, &ce) || ce.code != code {
			c.t.Fatalf("want close %d, got %v", code, err)
		}
		return
	}
}

// sendZ writes one frame compressed (RSV1 set), as a browser does.
func (c *zClient) sendZ(v map[string]any) {
	c.t.Helper()
	op, b := ws.OpBinary, []byte(nil)
	var err error
	if c.json {
		op = ws.OpText
		b, err = json.Marshal(v)
	} else {
		b, err = msgpack.Marshal(v)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.rawZ(op, b)
}

// rawZ writes payload deflated in one masked frame with RSV1 set.
func (c *zClient) rawZ(op ws.OpCode, payload []byte) {
	c.t.Helper()
	f, err := wsflate.CompressFrame(ws.NewFrame(op, true, payload))
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeFrame(f)
}

// writeFrame masks f and writes it as it is (reserved bits included).
func (c *zClient) writeFrame(f ws.Frame) {
	c.t.Helper()
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(c.conn, f); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// joinZ joins room and returns the joined frame (skipping presence).
func (c *zClient) joinZ(room string, ref int) frame {
	c.t.Helper()
	c.send(map[string]any{"t": "join", "room": room, "ref": ref})
	return c.expectZ("joined")
}

// expectZ reads frames, skipping presence, until one of type t.
func (c *zClient) expectZ(t string) frame {
	c.t.Helper()
	for {
		f, _ := c.nextZ()
		if f.str("t") == "presence" && t != "presence" {
			continue
		}
		if f.str("t") != t {
			c.t.Fatalf("got %v, want a %q frame", f, t)
		}
		return f
	}
}

// chatText is chat-like text of n bytes: words from a small vocabulary in
// an order that varies with i.
func chatText(i, n int) string {
	words := strings.Fields("gg that was close lol no way nice shot who is streaming next pog again what a play " +
		"did you see it clip that haha he missed the jump hello from Berlin first time here love the stream")
	var b strings.Builder
	for j := 0; b.Len() < n; j++ {
		b.WriteString(words[(i*7+j*j*3+j)%len(words)])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}
