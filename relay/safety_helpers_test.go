package relay_test

import (
	"context"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/roomcast/roomcast/relay"
)

// dialSmall dials a WebSocket client whose socket has a 4 KiB receive
// buffer, so that what it does not read queues up in the relay quickly.
func dialSmall(t testing.TB, srv *relay.Server, o dialOpts) *client {
	t.Helper()
	proto := "roomcast.v1.msgpack"
	if o.json {
		proto = "roomcast.v1.json"
	}
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{proto}, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		return nd.DialContext(ctx, network, addr)
	}}
	u := "ws://" + srv.Addr() + "/ws"
	if o.token != "" {
		u += "?token=" + o.token
	}
	conn, br, _, err := d.Dial(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, br: br, json: o.json}
	if c.br == nil {
		c.br = newReader(conn)
	}
	return c
}

// expectAck reads past batches and presence to the ack of ref; an error
// frame first fails the test.
func (c *client) expectAck(ref int) frame {
	c.t.Helper()
	for {
		f := c.next()
		switch {
		case f.str("t") == "ack" && f.num("ref") == int64(ref):
			return f
		case f.str("t") == "error":
			c.t.Fatalf("waiting for the ack of ref %d: %v", ref, f)
		}
	}
}

// tokenClaims mints an HS256 token with exactly the claims given.
func tokenClaims(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expiring mints a token for sub that expires at exp, with the given rooms
// claim (nil for none).
func expiring(t testing.TB, sub string, exp time.Time, rooms []string) string {
	c := jwt.MapClaims{"sub": sub, "name": sub, "exp": exp.Unix()}
	if rooms != nil {
		c["rooms"] = rooms
	}
	return tokenClaims(t, c)
}

// readUntilClose reads frames until the relay's close frame and returns its
// code, or fails the test if the connection ends without one.
func readUntilClose(t testing.TB, c *client, each func(frame)) int {
	t.Helper()
	for {
		f, err := c.read(5 * time.Second)
		if err == nil {
			if each != nil {
				each(f)
			}
			continue
		}
		ce, ok := err.(closeErr)
		if !ok {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce.code
	}
}

// queuedBytes scrapes roomcast_outbound_queued_bytes (0 if the scrape
// fails); unlike metricsOf it may run outside the test's goroutine.
func queuedBytes(srv *relay.Server) float64 {
	resp, err := http.Get("http://" + srv.AdminAddr() + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0
	}
	if f := fams["roomcast_outbound_queued_bytes"]; f != nil && len(f.GetMetric()) == 1 {
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	return 0
}
