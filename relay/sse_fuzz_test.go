package relay_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// FuzzSSERequest feeds arbitrary bytes, split into chunks, to the request
// path of a real relay (/sse, /overlay, upgrades, PROXY headers): the relay
// must never panic, and must still answer afterwards.
func FuzzSSERequest(f *testing.F) {
	plain := startRelay(f, func(c *relay.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} })
	proxied := startRelay(f, func(c *relay.Config) {
		c.TrustedProxies, c.ProxyProtocol = []string{"127.0.0.0/8"}, true
	})
	seeds := []string{
		sseRequest("r1"),
		sseRequest("r1", "Last-Event-ID: 7", "X-Forwarded-For: 203.0.113.1, 10.0.0.1"),
		"GET /sse?room=r1&since=3&history=5&token=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer y\r\n\r\n",
		"GET /sse?room=%zz HTTP/1.1\r\n\r\n",
		"GET /overlay?room=a HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /sse HTTP/1.0\r\nX-Real-IP: ::1\r\n\r\n",
		"GET /sse?room=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /sse?room=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + sseRequest("p"),
		proxyV2(netip.MustParseAddr("2001:db8::5")) + sseRequest("p"),
		wsUpgrade("X-Forwarded-For: 1.2.3.4"),
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint16(i*7+3), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, req []byte, split uint16, useProxied bool) {
		srv := plain
		if useProxied {
			srv = proxied
		}
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Skip(err) // the machine is out of sockets, not the relay's fault
		}
		defer conn.Close()
		for _, part := range chunks(req, split) {
			if _, err := conn.Write(part); err != nil {
				break // the relay answered and closed early
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, _ = io.Copy(io.Discard, conn)
	})
	f.Cleanup(func() { // still alive and answering
		if st, _ := rawGet(f, plain, sseRequest("alive")); st != 200 {
			f.Errorf("after fuzzing: status %d", st)
		}
	})
}

// chunks splits b into pieces whose sizes come from split.
func chunks(b []byte, split uint16) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + int(split%17)
		split = split*31 + 7
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}
