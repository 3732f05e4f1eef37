package relay

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

var headerEnd = []byte("\r\n\r\n")

const tooLargeResponse = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 24\r\n\r\nrequest header too large"

func (u *upgrade) init(l *loop) {
	u.up = ws.Upgrader{
		OnRequest: u.onRequest,
		OnHeader:  u.onHeader,
		Protocol:  u.onProtocol,
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			return nil, u.beforeUpgrade(l)
		},
	}
}

func (u *upgrade) reset(req []byte) {
	u.in.Reset(req)
	u.out.Reset()
	u.path, u.token, u.offers, u.chosen, u.format, u.id, u.why = "", "", false, false, proto.Msgpack, nil, ""
	u.origin, u.ip, u.ipCounted = "", netip.Addr{}, false
}

func (u *upgrade) rejectWith(why string, status int, reason string) error {
	u.why = why
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

// failReason names a failed handshake for metrics.
func (u *upgrade) failReason() string {
	if u.why == "" {
		return "bad_request" // gobwas found the request malformed
	}
	return u.why
}

func (u *upgrade) onRequest(uri []byte) error {
	p, err := url.ParseRequestURI(string(uri))
	if err != nil {
		return u.rejectWith("bad_request", http.StatusBadRequest, "bad request URI")
	}
	u.path = p.Path
	if u.path != "/ws" {
		return u.rejectWith("not_found", http.StatusNotFound, "not found: the endpoints are /ws, /sse and /overlay")
	}
	u.token = p.Query().Get("token")
	return nil
}

func (u *upgrade) onHeader(key, value []byte) error {
	if bytes.EqualFold(key, []byte("Origin")) {
		u.origin = string(value)
	}
	if bytes.EqualFold(key, []byte("Authorization")) {
		if tok, ok := bearer(string(value)); ok {
			u.token = tok
		}
	}
	return nil
}

func (u *upgrade) onProtocol(p []byte) bool {
	u.offers = true
	switch string(p) {
	case proto.SubprotocolMsgpack:
		u.format, u.chosen = proto.Msgpack, true
	case proto.SubprotocolJSON:
		u.format, u.chosen = proto.JSON, true
	}
	return u.chosen
}

func (u *upgrade) beforeUpgrade(l *loop) error {
	s := l.srv
	if s.draining.Load() {
		return u.rejectWith("draining", http.StatusServiceUnavailable, "server shutting down")
	}
	// First, so that refused upgrades (bad tokens cost a signature check)
	// use up the rate too.
	if why := s.ips.admit(u.ip, time.Now()); why != "" {
		s.metrics.rateLimited["ip"].Inc()
		return u.rejectWith("ip_limit", http.StatusTooManyRequests, why)
	}
	u.ipCounted = true
	if u.offers && !u.chosen {
		return u.rejectWith("subprotocol", http.StatusBadRequest, "unsupported subprotocol: use roomcast.v1.msgpack or roomcast.v1.json")
	}
	if !s.originAllowed(u.origin) {
		return u.rejectWith("origin", http.StatusForbidden, "origin not allowed")
	}
	id, err := s.auth.identify(u.token)
	if err != nil {
		return u.rejectWith("auth", http.StatusUnauthorized, err.Error())
	}
	if id.anon {
		id.user = fmt.Sprintf("anon-%x", s.anonSeq.Add(1))
	}
	u.id = id
	return nil
}

// handshake parses the upgrade request at the head of buf. It returns how
// many bytes it used (0: need more), or closes the connection on failure.
func (s *session) handshake(buf []byte) int {
	end := bytes.Index(buf, headerEnd)
	if end < 0 {
		if len(buf) > maxRequestHeader {
			s.srv.metrics.handshakeFail("too_large")
			s.write([]byte(tooLargeResponse))
			s.abort()
			return len(buf)
		}
		return 0
	}
	n := end + len(headerEnd)
	if n > maxRequestHeader {
		s.srv.metrics.handshakeFail("too_large")
		s.write([]byte(tooLargeResponse))
		s.abort()
		return len(buf)
	}
	if plainHTTP(buf[:n]) {
		s.serveHTTP(buf[:n])
		return len(buf) // a plain GET: nothing more is read
	}
	u := &s.loop.up
	u.reset(buf[:n])
	u.ip = addrOf(s.conn.RemoteAddr())
	_, err := u.up.Upgrade(u)
	if err != nil {
		s.srv.metrics.handshakeFail(u.failReason()) // counted before the client can see the answer
	}
	s.write(u.out.Bytes())
	if err == nil {
		s.ip, s.ipCounted = u.ip, u.ipCounted
	} else if u.ipCounted {
		s.srv.ips.release(u.ip)
	}
	if s.state != stateHTTP { // the write failed and gnet closed the connection
		return len(buf)
	}
	if err != nil {
		s.abort()
		return len(buf)
	}
	s.open(u.id, u.format)
	return n
}

// abort ends a connection that never became a WebSocket. gnet writes what is
// queued before it closes.
func (s *session) abort() {
	s.state = stateClosing
	_ = s.conn.Close()
}

// Read and Write make the upgrade the io.ReadWriter that gobwas reads the
// request from and writes the response to.
func (u *upgrade) Read(p []byte) (int, error)  { return u.in.Read(p) }
func (u *upgrade) Write(p []byte) (int, error) { return u.out.Write(p) }

// originAllowed applies the Origin allow-list to browser upgrades; clients
// that send no Origin (games, bots) are not browsers and pass.
func (s *Server) originAllowed(origin string) bool {
	if len(s.cfg.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
