package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// rawResponse is one answer of the public listener, read as bytes until
// the relay closed the connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// rawHTTP sends one request line (method and target) with extra header
// lines and reads the whole answer: the relay closes after it, so what
// comes after the headers is exactly the body sent (none for HEAD).
func rawHTTP(t testing.TB, addr, method, target string, headers ...string) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := method + " " + target + " HTTP/1.1\r\nHost: relay\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("%s %s: %v (read %q)", method, target, err, all)
	}
	head, body, ok := bytes.Cut(all, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s %s: no complete head in %q", method, target, all)
	}
	lines := strings.Split(string(head), "\r\n")
	var r rawResponse
	var proto string
	var code int
	if _, err := fmt.Sscan(lines[0], &proto, &code); err != nil {
		t.Fatalf("%s %s: status line %q", method, target, lines[0])
	}
	r.status, r.header, r.body = code, http.Header{}, body
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		r.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return r
}

func (r rawResponse) check(t testing.TB, what string, status int, headers ...string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (%q)", what, r.status, status, r.body)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if got := r.header.Get(headers[i]); got != headers[i+1] {
			t.Errorf("%s: %s %q, want %q", what, headers[i], got, headers[i+1])
		}
	}
}

// TestHTTPHeadAndOptions: HEAD answers the headers of GET and no body;
// OPTIONS answers 204 with Allow; other methods 405 with Allow; unknown
// paths 404 whatever the method.
func TestHTTPHeadAndOptions(t *testing.T) {
	srv := startRelay(t, nil)
	addr := srv.Addr()
	script, err := os.ReadFile("js/roomcast.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, ctype string
		size        int
	}{
		{"/overlay?room=stream:x", "text/html; charset=utf-8", -1},
		{"/roomcast.js", "text/javascript; charset=utf-8", len(script)},
		{"/healthz", "text/plain; charset=utf-8", 3},
	} {
		get := rawHTTP(t, addr, "GET", c.path)
		get.check(t, "GET "+c.path, 200, "Content-Type", c.ctype)
		head := rawHTTP(t, addr, "HEAD", c.path)
		head.check(t, "HEAD "+c.path, 200, "Content-Type", c.ctype, "Content-Length", get.header.Get("Content-Length"))
		if len(head.body) != 0 {
			t.Errorf("HEAD %s sent a body of %d bytes", c.path, len(head.body))
		}
		if c.size >= 0 && len(get.body) != c.size {
			t.Errorf("GET %s: %d bytes, want %d", c.path, len(get.body), c.size)
		}
		for _, h := range []string{"Cache-Control", "ETag", "Access-Control-Allow-Origin"} {
			if get.header.Get(h) != head.header.Get(h) {
				t.Errorf("%s: GET has %s %q, HEAD %q", c.path, h, get.header.Get(h), head.header.Get(h))
			}
		}
	}
	if b := rawHTTP(t, addr, "GET", "/healthz").body; string(b) != "ok\n" {
		t.Errorf("GET /healthz: %q", b)
	}

	// HEAD /sse: a stream's headers, nothing opened.
	head := rawHTTP(t, addr, "HEAD", "/sse?room=stream:x")
	head.check(t, "HEAD /sse", 200, "Content-Type", "text/event-stream", "Cache-Control", "no-cache", "Access-Control-Allow-Origin", "*")
	if len(head.body) != 0 {
		t.Errorf("HEAD /sse sent %q", head.body)
	}
	rawHTTP(t, addr, "HEAD", "/sse?room=-bad").check(t, "HEAD /sse of a bad room", 400)
	rawHTTP(t, addr, "HEAD", "/sse?room=x&since=a:").check(t, "HEAD /sse with a bad since", 400)
	m := metricsOf(t, srv)
	if v := m[`roomcast_connections{anonymous="any",kind="sse"}`]; v != 0 {
		t.Errorf("HEAD /sse opened a stream: %v", v)
	}
	if srv.Hub().Lookup("stream:x") != nil {
		t.Error("HEAD /sse created the room")
	}

	for _, p := range []string{"/sse", "/overlay", "/roomcast.js", "/healthz"} {
		r := rawHTTP(t, addr, "OPTIONS", p)
		r.check(t, "OPTIONS "+p, 204, "Allow", "GET, HEAD, OPTIONS", "Access-Control-Allow-Origin", "")
		if len(r.body) != 0 || r.header.Get("Content-Length") != "" {
			t.Errorf("OPTIONS %s: a body or Content-Length: %q %q", p, r.body, r.header.Get("Content-Length"))
		}
		rawHTTP(t, addr, "POST", p).check(t, "POST "+p, 405, "Allow", "GET, HEAD, OPTIONS")
		rawHTTP(t, addr, "DELETE", p+"?room=x").check(t, "DELETE "+p, 405, "Allow", "GET, HEAD, OPTIONS")
	}
	rawHTTP(t, addr, "OPTIONS", "/ws").check(t, "OPTIONS /ws", 204, "Allow", "GET, OPTIONS")
	rawHTTP(t, addr, "HEAD", "/ws").check(t, "HEAD /ws", 405, "Allow", "GET, OPTIONS")
	rawHTTP(t, addr, "HEAD", "/nope").check(t, "HEAD /nope", 404)
	rawHTTP(t, addr, "OPTIONS", "/nope").check(t, "OPTIONS /nope", 404)
	rawHTTP(t, addr, "GET", "/ssefoo").check(t, "GET /ssefoo", 404)
	rawHTTP(t, addr, "GE", "/overlay").check(t, "method GE", 405)
	if v := failures(t, srv, "not_found"); v != 3 {
		t.Errorf("not_found refusals: %v, want 3", v)
	}
	// Nothing here was a refused WebSocket: the relay still upgrades.
	dial(t, srv, dialOpts{json: true})
}

// TestHTTPScriptCaching: /roomcast.js is the embedded library, cacheable,
// with an ETag that answers 304.
func TestHTTPScriptCaching(t *testing.T) {
	srv := startRelay(t, nil)
	want, err := os.ReadFile("js/roomcast.js")
	if err != nil {
		t.Fatal(err)
	}
	r := rawHTTP(t, srv.Addr(), "GET", "/roomcast.js")
	r.check(t, "GET /roomcast.js", 200, "Cache-Control", "public, max-age=300", "X-Content-Type-Options", "nosniff")
	if !bytes.Equal(r.body, want) {
		t.Fatalf("GET /roomcast.js: %d bytes differ from js/roomcast.js (%d)", len(r.body), len(want))
	}
	etag := r.header.Get("ETag")
	if len(etag) < 10 || etag[0] != '"' {
		t.Fatalf("ETag %q", etag)
	}
	nm := rawHTTP(t, srv.Addr(), "GET", "/roomcast.js", "If-None-Match: W/\"x\", "+etag)
	nm.check(t, "GET with If-None-Match", 304, "ETag", etag)
	if len(nm.body) != 0 {
		t.Errorf("304 with a body: %q", nm.body)
	}
	rawHTTP(t, srv.Addr(), "GET", "/roomcast.js", `If-None-Match: "other"`).check(t, "GET with another ETag", 200)
}

// TestHTTPCORS: /sse and /roomcast.js carry CORS headers: * without
// -allowed-origins, else the Origin when it is allowed (with Vary:
// Origin), none when it is not; a preflight is answered the same way.
func TestHTTPCORS(t *testing.T) {
	open := startRelay(t, nil)
	const dash = "https://dash.example"
	closed := startRelay(t, func(c *relay.Config) { c.AllowedOrigins = []string{dash} })

	// No allow-list: any origin.
	s := openSSE(t, open, "room=cors:a", "Origin", "https://any.example")
	if got := s.resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("/sse without an allow-list: Access-Control-Allow-Origin %q, want *", got)
	}
	rawHTTP(t, open.Addr(), "GET", "/roomcast.js", "Origin: https://any.example").check(t, "script, no allow-list", 200, "Access-Control-Allow-Origin", "*")
	rawHTTP(t, open.Addr(), "OPTIONS", "/sse", "Origin: https://any.example", "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: last-event-id").
		check(t, "preflight, no allow-list", 204, "Access-Control-Allow-Origin", "*", "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control", "Access-Control-Max-Age", "600")

	// An allow-list: the allowed origin is named.
	s = openSSE(t, closed, "room=cors:b", "Origin", dash)
	if got, vary := s.resp.Header.Get("Access-Control-Allow-Origin"), s.resp.Header.Get("Vary"); got != dash || vary != "Origin" {
		t.Errorf("/sse from an allowed origin: Access-Control-Allow-Origin %q, Vary %q", got, vary)
	}
	rawHTTP(t, closed.Addr(), "HEAD", "/sse?room=cors:b", "Origin: "+dash).check(t, "HEAD /sse, allowed", 200, "Access-Control-Allow-Origin", dash, "Vary", "Origin")
	rawHTTP(t, closed.Addr(), "GET", "/roomcast.js", "Origin: "+dash).check(t, "script, allowed", 200, "Access-Control-Allow-Origin", dash, "Vary", "Origin")
	rawHTTP(t, closed.Addr(), "OPTIONS", "/roomcast.js", "Origin: "+dash, "Access-Control-Request-Method: GET").
		check(t, "preflight, allowed", 204, "Access-Control-Allow-Origin", dash, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")

	// Another origin: no CORS grant (the stream itself is refused, 403).
	const evil = "https://evil.example"
	sseGet(t, closed, "/sse?room=cors:b", "Origin", evil).Body.Close()
	rawHTTP(t, closed.Addr(), "GET", "/sse?room=cors:b", "Origin: "+evil).check(t, "/sse, not allowed", 403, "Access-Control-Allow-Origin", "")
	rawHTTP(t, closed.Addr(), "GET", "/roomcast.js", "Origin: "+evil).check(t, "script, not allowed", 200, "Access-Control-Allow-Origin", "", "Vary", "Origin")
	rawHTTP(t, closed.Addr(), "OPTIONS", "/sse", "Origin: "+evil, "Access-Control-Request-Method: GET").
		check(t, "preflight, not allowed", 204, "Access-Control-Allow-Origin", "", "Access-Control-Allow-Methods", "", "Allow", "GET, HEAD, OPTIONS")
	// No Origin (not a browser): the script still gets *-less Vary only.
	rawHTTP(t, closed.Addr(), "GET", "/roomcast.js").check(t, "script, no Origin", 200, "Access-Control-Allow-Origin", "")
}

// TestHTTPHealthz: GET /healthz on the public listener answers "ok" with
// no key and no data, and 503 while the relay drains.
func TestHTTPHealthz(t *testing.T) {
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Admin: "off", Loops: 1, NodeID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /healthz: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	// A client that does not close keeps the relay draining for a while.
	c := dial(t, srv, dialOpts{json: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	c.expectClose(1001)
	// Draining: a new connection is closed at once (or, if its request got
	// in first, answered 503): never "ok", so the balancer moves on.
	if conn, err := net.Dial("tcp", srv.Addr()); err == nil {
		conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		conn.Close()
		if len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 503 ")) {
			t.Errorf("GET /healthz while draining: %q", b)
		}
	}
	c.conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
