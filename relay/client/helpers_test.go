package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relay/client"
)

const (
	testSecret = "test-secret"
	testAPIKey = "test-api-key"
)

// relayConfig is the config of the test relays; listen "" means a free
// port.
func relayConfig(listen string, mod func(*relay.Config)) relay.Config {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	cfg := relay.Config{Listen: listen, Admin: "127.0.0.1:0", Loops: 2, JWTSecret: testSecret, APIKey: testAPIKey,
		SendRate: 100000, SendBurst: 100000, NodeID: "test"}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// startRelay runs a real relay on loopback until the test ends.
func startRelay(t testing.TB, listen string, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	srv, err := relay.New(relayConfig(listen, mod))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRelay(t, srv) })
	return srv
}

func stopRelay(t testing.TB, srv *relay.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func wsURL(srv *relay.Server) string { return "ws://" + srv.Addr() + "/ws" }

// mint signs a token for sub that expires after ttl.
func mint(t testing.TB, sub, role string, ttl time.Duration) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "name": "N-" + sub, "exp": time.Now().Add(ttl).Unix()}
	if role != "" {
		c["role"] = role
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dial connects a client for user sub and closes it when the test ends.
func dial(t testing.TB, srv *relay.Server, sub string, o client.Options) *client.Client {
	t.Helper()
	if o.Token == "" && o.TokenSource == nil && sub != "" {
		o.Token = mint(t, sub, "", time.Hour)
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, wsURL(srv), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func join(t testing.TB, c *client.Client, room string, o client.JoinOptions) *client.Room {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Join(ctx, room, o)
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return r
}

// next returns the room's next event of type T, skipping others (presence).
func next[T client.Event](t testing.TB, r *client.Room, timeout time.Duration) T {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-r.Events():
			if !ok {
				t.Fatalf("room %s ended: %v", r.Name(), r.Err())
			}
			if v, ok := ev.(T); ok {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("room %s: no %T within %v", r.Name(), zero, timeout)
		}
	}
}

// messages collects n messages of r (gaps are a failure) and checks they
// come in seq order, each once.
func messages(t testing.TB, r *client.Room, n int, timeout time.Duration) []*client.Message {
	t.Helper()
	var got []*client.Message
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case ev, ok := <-r.Events():
			if !ok {
				t.Fatalf("room %s ended after %d messages: %v", r.Name(), len(got), r.Err())
			}
			switch ev := ev.(type) {
			case *client.Message:
				if len(got) > 0 && ev.Seq <= got[len(got)-1].Seq {
					t.Fatalf("seq %d after %d", ev.Seq, got[len(got)-1].Seq)
				}
				got = append(got, ev)
			case *client.Gap:
				t.Fatalf("unexpected gap %+v", ev)
			}
		case <-deadline:
			t.Fatalf("room %s: %d of %d messages within %v", r.Name(), len(got), n, timeout)
		}
	}
	return got
}

// states records the client's state changes.
type states chan client.StateChange

func (s states) on(c client.StateChange) {
	select {
	case s <- c:
	default:
	}
}

// wait returns the next change to state st within timeout.
func (s states) wait(t testing.TB, st client.State, timeout time.Duration) client.StateChange {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case c := <-s:
			if c.State == st {
				return c
			}
		case <-deadline:
			t.Fatalf("no %v state within %v", st, timeout)
		}
	}
}

// adminPost calls the relay's admin API.
func adminPost(t testing.TB, srv *relay.Server, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+srv.AdminAddr()+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s", path, resp.StatusCode, msg)
	}
}

// metric returns the value of one line of the relay's /metrics.
func metric(t testing.TB, srv *relay.Server, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + srv.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// smallReadBuffer dials with a 4 KiB receive buffer, so that a client that
// stops reading fills the relay's queue quickly.
func smallReadBuffer(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return d.DialContext(ctx, network, addr)
}

// clientGoroutines waits up to 5 seconds for every goroutine running
// this package's code to end, and returns the stacks of those left.
func clientGoroutines() []string {
	var left []string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "roomcast/relay/client.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			break
		}
	}
	return left
}
