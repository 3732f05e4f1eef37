package relay_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

const testSecret = "test-secret"

// startRelay runs a real relay on loopback for the test.
func startRelay(t testing.TB, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	cfg := testrelay.Config(testSecret)
	cfg.SendRate, cfg.SendBurst = 1000, 1000
	return testrelay.Start(t, cfg, mod)
}

// token mints an HS256 token for user sub.
func token(t testing.TB, sub, name, role string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "name": name}
	if role != "" {
		c["role"] = role
	}
	return relaytest.Sign(t, testSecret, c)
}

// frame is one decoded server frame.
type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

func (f frame) num(k string) int64 { return toInt(f[k]) }

func (f frame) list(k string) []any { l, _ := f[k].([]any); return l }

func toInt(v any) int64 {
	switch n := v.(type) {
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

// client is a real WebSocket client speaking one of the two formats.
type client struct {
	t     testing.TB
	conn  net.Conn
	br    *bufio.Reader
	json  bool
	hello frame
}

type dialOpts struct {
	token    string
	json     bool
	protocol []string // overrides the subprotocol offered
}

func dial(t testing.TB, srv *relay.Server, o dialOpts) *client {
	t.Helper()
	c, err := tryDial(t, srv, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.hello = c.expect("hello")
	return c
}

func tryDial(t testing.TB, srv *relay.Server, o dialOpts) (*client, error) {
	d := relaytest.Dialer{Token: o.token, Protocols: o.protocol}
	if o.protocol == nil && o.json {
		d.Protocols = []string{relaytest.JSONProtocol}
	}
	conn, br, err := d.Dial(t, "ws://"+srv.Addr()+"/ws")
	if err != nil {
		return nil, err
	}
	return &client{t: t, conn: conn, br: br, json: o.json}, nil
}

// send writes one frame.
func (c *client) send(v map[string]any) {
	c.t.Helper()
	var b []byte
	var err error
	op := ws.OpBinary
	if c.json {
		b, err = json.Marshal(v)
		op = ws.OpText
	} else {
		b, err = msgpack.Marshal(v)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.raw(op, b)
}

// raw writes one masked frame with the given payload.
func (c *client) raw(op ws.OpCode, payload []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, op, payload); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads the next data frame, answering pings. It fails the test on a
// close or timeout.
func (c *client) next() frame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

func (c *client) read(timeout time.Duration) (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.conn, ws.OpPong, payload)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(payload)
			return nil, closeErr{int(code), reason}
		}
		f := frame{}
		if c.json {
			if h.OpCode != ws.OpText {
				return nil, fmt.Errorf("JSON frame in opcode %v", h.OpCode)
			}
			err = json.Unmarshal(payload, &f)
		} else {
			if h.OpCode != ws.OpBinary {
				return nil, fmt.Errorf("msgpack frame in opcode %v", h.OpCode)
			}
			err = msgpack.Unmarshal(payload, (*map[string]any)(&f))
		}
		if err != nil {
			return nil, fmt.Errorf("cannot decode %q: %w", payload, err)
		}
		return f, nil
	}
}

type closeErr struct {
	code   int
	reason string
}

func (e closeErr) Error() string { return fmt.Sprintf("closed %d %q", e.code, e.reason) }

// expect reads the next frame, skipping presence, and checks its type.
func (c *client) expect(t string) frame {
	c.t.Helper()
	for {
		f := c.next()
		if f.str("t") == "presence" && t != "presence" {
			continue
		}
		if f.str("t") != t {
			c.t.Fatalf("got %v, want a %q frame", f, t)
		}
		return f
	}
}

// expectClose reads until the relay closes, and checks the close code.
func (c *client) expectClose(code int) {
	c.t.Helper()
	for {
		_, err := c.read(5 * time.Second)
		if err == nil {
			continue
		}
		var ce closeErr
		if !errors.As(err, &ce) {
			c.t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.code != code {
			c.t.Fatalf("want close %d, got %d (%s)", code, ce.code, ce.reason)
		}
		return
	}
}

func (c *client) join(room string, ref int) frame {
	c.t.Helper()
	c.send(map[string]any{"t": "join", "room": room, "ref": ref})
	f := c.expect("joined")
	if f.num("ref") != int64(ref) {
		c.t.Fatalf("joined ref %d, want %d", f.num("ref"), ref)
	}
	return f
}

// metricsOf scrapes the relay's /metrics and returns metric values by name
// and label string, e.g. "roomcast_disconnects_total{code=\"1002\"}".
func metricsOf(t testing.TB, srv *relay.Server) map[string]float64 {
	t.Helper()
	return relaytest.Metrics(t, testrelay.MetricsURL(srv))
}

// eventually retries cond for up to 5 seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 5*time.Second, what, cond)
}

// eventuallyWithin is eventually with its own time limit, for what the
// relay does only after a timer of its own (e.g. cutting off a reader).
func eventuallyWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// scrape reads the relay's /metrics with the Prometheus text parser.
func scrape(t testing.TB, srv *relay.Server) map[string]*dto.MetricFamily {
	t.Helper()
	return relaytest.Scrape(t, testrelay.MetricsURL(srv))
}

// skipLoud skips a test that needs a program this machine lacks, saying so
// on stderr as well, so that the skip shows in go test's default output
// (t.Skip alone shows only with -v). CI sets CI, which turns these skips
// into failures.
func skipLoud(t testing.TB, msg string) {
	t.Helper()
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), msg)
	t.Skip(msg)
}
