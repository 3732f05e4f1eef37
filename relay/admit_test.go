package relay_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// rawGet writes req (a whole request head, maybe behind a PROXY header) on
// a new connection and returns the status of the answer (0 if the relay
// closed without one). The connection stays open until the test ends.
func rawGet(t testing.TB, srv *relay.Server, req ...string) (int, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, part := range req { // each part its own write: the relay must wait for the rest
		if _, err := conn.Write([]byte(part)); err != nil {
			return 0, conn
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, conn
	}
	_ = conn.SetReadDeadline(time.Time{})
	return resp.StatusCode, conn
}

// wsUpgrade is an anonymous upgrade request with extra header lines.
func wsUpgrade(headers ...string) string {
	return upgradeRequest("/ws", append([]string{"Sec-WebSocket-Protocol: roomcast.v1.json"}, headers...)...)
}

// sseRequest is a GET /sse of room with extra header lines.
func sseRequest(room string, headers ...string) string {
	h := "GET /sse?room=" + room + " HTTP/1.1\r\nHost: x\r\n"
	for _, x := range headers {
		h += x + "\r\n"
	}
	return h + "\r\n"
}

// failures returns roomcast_handshake_failures_total of reason.
func failures(t testing.TB, srv *relay.Server, reason string) float64 {
	t.Helper()
	return metricsOf(t, srv)[fmt.Sprintf("roomcast_handshake_failures_total{reason=%q}", reason)]
}

// perIPRelay runs a relay whose loopback clients count against the per-IP
// caps: max open connections per IP, a new-connection rate high enough not
// to matter.
func perIPRelay(t testing.TB, max int, mod func(*relay.Config)) *relay.Server {
	return startRelay(t, func(c *relay.Config) {
		c.IPMaxConns, c.IPExempt = max, []string{}
		c.IPConnRate = relay.RateLimit{Rate: 1000, Burst: 1000}
		if mod != nil {
			mod(c)
		}
	})
}

// TestAdmitSSEPerIPCap: /sse streams count against -ip-max-conns like
// WebSockets: of N+k streams from one IP, k are refused with 429 and
// counted; closing one lets another in.
func TestAdmitSSEPerIPCap(t *testing.T) {
	const n, k = 5, 3
	srv := perIPRelay(t, n, nil)
	var open []*http.Response
	refused := 0
	for i := 0; i < n+k; i++ {
		resp := sseGet(t, srv, "/sse?room=cap")
		switch resp.StatusCode {
		case http.StatusOK:
			open = append(open, resp)
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("stream %d: status %d", i, resp.StatusCode)
		}
	}
	if len(open) != n || refused != k {
		t.Fatalf("%d streams open, %d refused; want %d and %d", len(open), refused, n, k)
	}
	if got := failures(t, srv, "ip_limit"); got != k {
		t.Fatalf("ip_limit failures = %v, want %d", got, k)
	}
	// A WebSocket from the same IP is refused too: one count for both.
	if st, _ := rawGet(t, srv, wsUpgrade()); st != http.StatusTooManyRequests {
		t.Fatalf("WebSocket past the cap: status %d, want 429", st)
	}
	open[0].Body.Close()
	eventually(t, "a freed slot", func() bool {
		resp := sseGet(t, srv, "/sse?room=cap")
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestAdmitSSERefusals: the Origin allow-list and the token apply to /sse,
// answered from the refusal table and counted by reason.
func TestAdmitSSERefusals(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) {
		c.AllowedOrigins = []string{"https://good.example"}
		c.NoAnonymous = true
	})
	tok := token(t, "ann", "Ann", "")
	f := func(query string, want int, headers ...string) {
		t.Helper()
		resp := sseGet(t, srv, "/sse?"+query, headers...)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET /sse?%s %v: status %d, want %d", query, headers, resp.StatusCode, want)
		}
	}
	f("room=o&token="+tok, http.StatusForbidden, "Origin", "https://evil.example")
	f("room=o&token="+tok, http.StatusOK, "Origin", "https://good.example")
	f("room=o&token="+tok, http.StatusOK) // no Origin: not a browser
	f("room=o", http.StatusUnauthorized, "Origin", "https://good.example")
	f("room=bad%20room&token="+tok, http.StatusBadRequest)
	m := metricsOf(t, srv)
	for reason, want := range map[string]float64{"origin": 1, "auth": 1, "bad_request": 1} {
		if got := m[fmt.Sprintf("roomcast_handshake_failures_total{reason=%q}", reason)]; got != want {
			t.Errorf("handshake failures %s = %v, want %v", reason, got, want)
		}
	}
}

// TestAdmitWSRefusalCounted: a refused upgrade is answered from the same
// table and counted.
func TestAdmitWSRefusalCounted(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.AllowedOrigins = []string{"https://good.example"} })
	if st, _ := rawGet(t, srv, wsUpgrade("Origin: https://evil.example")); st != http.StatusForbidden {
		t.Fatalf("status %d, want 403", st)
	}
	if st, _ := rawGet(t, srv, wsUpgrade("Origin: https://good.example")); st != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", st)
	}
	if got := failures(t, srv, "origin"); got != 1 {
		t.Fatalf("origin failures = %v, want 1", got)
	}
}

// TestTrustedProxyXFF: from a trusted peer, the per-IP limit applies to
// the X-Forwarded-For address; from an untrusted one, the header is
// ignored and the peer's own address counts.
func TestTrustedProxyXFF(t *testing.T) {
	trusted := perIPRelay(t, 2, func(c *relay.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} })
	f := func(srv *relay.Server, want int, headers ...string) {
		t.Helper()
		if st, _ := rawGet(t, srv, wsUpgrade(headers...)); st != want {
			t.Fatalf("upgrade %v: status %d, want %d", headers, st, want)
		}
	}
	// The same client behind the proxy: the third is one too many.
	f(trusted, 101, "X-Forwarded-For: 203.0.113.7")
	f(trusted, 101, "X-Forwarded-For: 198.51.100.1, 203.0.113.7") // right-most untrusted hop
	f(trusted, 429, "X-Forwarded-For: 203.0.113.7, 127.0.0.1")    // trusted hops are skipped
	f(trusted, 101, "X-Real-IP: 203.0.113.8")
	f(trusted, 101, "X-Forwarded-For: 203.0.113.9")
	// /sse takes the same address.
	if st, _ := rawGet(t, trusted, sseRequest("x", "X-Forwarded-For: 203.0.113.9")); st != 200 {
		t.Fatalf("sse: status %d, want 200", st)
	}
	if st, _ := rawGet(t, trusted, sseRequest("x", "X-Forwarded-For: 203.0.113.9")); st != 429 {
		t.Fatalf("sse past the cap: status %d, want 429", st)
	}
	// Distinct clients all pass.
	for i := 0; i < 5; i++ {
		f(trusted, 101, fmt.Sprintf("X-Forwarded-For: 192.0.2.%d", i+1))
	}

	untrusted := perIPRelay(t, 2, func(c *relay.Config) { c.TrustedProxies = []string{"10.0.0.0/8"} })
	f(untrusted, 101, "X-Forwarded-For: 192.0.2.1")
	f(untrusted, 101, "X-Forwarded-For: 192.0.2.2")
	f(untrusted, 429, "X-Forwarded-For: 192.0.2.3") // all of them are 127.0.0.1
}

// proxyV2 builds a PROXY protocol v2 header (command PROXY, TCP over IPv4
// or IPv6) by hand, with a TLV to skip.
func proxyV2(src netip.Addr) string {
	var addrs []byte
	fam := byte(0x11)
	if src.Is4() {
		a, d := src.As4(), [4]byte{10, 0, 0, 1}
		addrs = append(append(addrs, a[:]...), d[:]...)
	} else {
		fam = 0x21
		a, d := src.As16(), netip.IPv6Loopback().As16()
		addrs = append(append(addrs, a[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, 40000)
	addrs = binary.BigEndian.AppendUint16(addrs, 8080)
	addrs = append(addrs, 0x04, 0, 2, 'h', 'i') // PP2_TYPE_NOOP
	h := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)))
	return string(append(h, addrs...))
}

// TestProxyProtocol: with -proxy-protocol, a trusted peer's PROXY header
// (v1 or v2, even split over many writes) sets the client address the
// per-IP limit counts; a trusted peer without one, or an untrusted peer
// with one, gets 400.
func TestProxyProtocol(t *testing.T) {
	srv := perIPRelay(t, 1, func(c *relay.Config) {
		c.TrustedProxies, c.ProxyProtocol = []string{"127.0.0.0/8"}, true
	})
	f := func(want int, parts ...string) {
		t.Helper()
		if st, _ := rawGet(t, srv, parts...); st != want {
			t.Fatalf("status %d, want %d (%q)", st, want, parts)
		}
	}
	v1 := "PROXY TCP4 198.51.100.1 10.0.0.1 40000 8080\r\n"
	f(101, v1[:3], v1[3:20], v1[20:]+wsUpgrade())
	f(429, v1+wsUpgrade()) // the same client: over the cap of 1
	v2 := proxyV2(netip.MustParseAddr("198.51.100.2"))
	f(101, v2[:5], v2[5:17], v2[17:], wsUpgrade())
	f(429, v2+sseRequest("p")) // /sse counts the same client
	f(200, proxyV2(netip.MustParseAddr("2001:db8::1"))+sseRequest("p"))
	f(101, "PROXY TCP6 2001:db8::2 ::1 1 2\r\n"+wsUpgrade())
	f(101, "PROXY UNKNOWN\r\n"+wsUpgrade()) // the proxy's own connection: 127.0.0.1
	f(400, wsUpgrade())                     // required from a trusted peer
	f(400, "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"+wsUpgrade())
	if got := failures(t, srv, "proxy"); got != 2 {
		t.Fatalf("proxy failures = %v, want 2", got)
	}

	other := startRelay(t, func(c *relay.Config) {
		c.TrustedProxies, c.ProxyProtocol = []string{"10.0.0.0/8"}, true
	})
	if st, _ := rawGet(t, other, v1+wsUpgrade()); st != 400 {
		t.Fatalf("PROXY from an untrusted peer: status %d, want 400", st)
	}
	if st, _ := rawGet(t, other, wsUpgrade()); st != 101 {
		t.Fatalf("plain upgrade from an untrusted peer: status %d, want 101", st)
	}
}

// TestMaxConns: past -max-conns a new connection gets 503 at once and is
// counted; when one goes, a new one is let in.
func TestMaxConns(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxConns = 3 })
	var held []net.Conn
	for i := 0; i < 3; i++ {
		st, conn := rawGet(t, srv, wsUpgrade())
		if st != 101 {
			t.Fatalf("connection %d: status %d", i, st)
		}
		held = append(held, conn)
	}
	if st, _ := rawGet(t, srv, wsUpgrade()); st != http.StatusServiceUnavailable {
		t.Fatalf("past max-conns: status %d, want 503", st)
	}
	if got := failures(t, srv, "max_conns"); got != 1 {
		t.Fatalf("max_conns failures = %v, want 1", got)
	}
	held[0].Close()
	eventually(t, "a freed connection slot", func() bool {
		st, conn := rawGet(t, srv, wsUpgrade())
		conn.Close()
		return st == 101
	})
}

// TestEngineStopReadiness: if the event loops stop while the relay is not
// shutting down, /readyz answers 503 and Done delivers the error.
func TestEngineStopReadiness(t *testing.T) {
	srv := startRelay(t, nil)
	if st := getStatus(t, "http://"+srv.AdminAddr()+"/readyz"); st != 200 {
		t.Fatalf("readyz before: %d", st)
	}
	if err := relay.StopEngineForTest(srv); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-srv.Done():
		if err == nil || !strings.Contains(err.Error(), "event loops stopped") {
			t.Fatalf("Done: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Done delivered nothing after the engine stopped")
	}
	if st := getStatus(t, "http://"+srv.AdminAddr()+"/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("readyz after the engine stopped: %d, want 503", st)
	}
	if st := getStatus(t, "http://"+srv.AdminAddr()+"/healthz"); st != 200 {
		t.Fatalf("healthz: %d", st) // the process lives; readiness says it serves nothing
	}
}

func getStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminHeaderTimeout: an admin connection that sends nothing is closed
// after the header timeout.
func TestAdminHeaderTimeout(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.AdminHeaderTimeout = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", srv.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	n, err := conn.Read(make([]byte, 1))
	if err != io.EOF && !isReset(err) {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	t.Logf("closed after %v", time.Since(start))
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestRoomCreationPerIP: rooms a client address creates, by joining or
// streaming a room that does not exist yet, are limited (-ip-room-rate);
// joining rooms that exist is not.
func TestRoomCreationPerIP(t *testing.T) {
	srv := perIPRelay(t, 100, func(c *relay.Config) { c.IPRoomRate = relay.RateLimit{Rate: 0.001, Burst: 3} })
	for _, room := range []string{"x:a", "x:b", "x:c"} {
		if st, _ := rawGet(t, srv, sseRequest(room)); st != 200 {
			t.Fatalf("sse %s: status %d, want 200", room, st)
		}
	}
	if st, _ := rawGet(t, srv, sseRequest("x:d")); st != 429 {
		t.Fatalf("sse creating a fourth room: status %d, want 429", st)
	}
	if st, _ := rawGet(t, srv, sseRequest("x:a")); st != 200 {
		t.Fatalf("sse of a room that exists: status %d, want 200", st)
	}
	c := dial(t, srv, dialOpts{token: token(t, "creator", "C", "")})
	c.send(map[string]any{"t": "join", "room": "x:e", "ref": 1})
	e := c.expect("error")
	if e.str("code") != "rate_limited" || e.num("retry_ms") <= 0 || e.num("ref") != 1 || e.str("room") != "x:e" {
		t.Fatalf("join creating a room past the limit: %v", e)
	}
	if j := c.join("x:b", 2); j.num("count") != 2 {
		t.Fatalf("joined an existing room: %v", j)
	}
	if n := metricsOf(t, srv)[`roomcast_ratelimit_hits_total{kind="room"}`]; n != 2 {
		t.Fatalf("room creation refusals counted %v, want 2", n)
	}
}
