package relay

import (
	"bytes"
	"net/netip"
	"net/url"
	"strings"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/roomcast/roomcast/relay/proto"
)

var headerEnd = []byte("\r\n\r\n")

// deflateParams is what the relay accepts of a permessage-deflate offer
// (RFC 7692): no context takeover either way, so one compressed frame
// serves every member and inflating keeps no window between messages.
// Offers that limit the server's window (server_max_window_bits) are
// declined: compress/flate always uses 32 KiB.
var deflateParams = wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}

func (u *upgrade) init(l *loop) {
	u.ext.Parameters = deflateParams
	u.up = ws.Upgrader{
		OnRequest: u.onRequest,
		OnHeader: func(key, value []byte) error {
			return u.onHeader(key, value, len(l.srv.cfg.AllowedOrigins) > 0)
		},
		Protocol:  u.onProtocol,
		Negotiate: u.negotiate,
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			return nil, u.beforeUpgrade(l)
		},
	}
	if l.srv.cfg.NoCompression {
		u.up.Negotiate = nil // gobwas then answers no extension: every offer declined
	}
}

func (u *upgrade) reset(req []byte) {
	u.in.Reset(req)
	u.out.Reset()
	u.path, u.token, u.offers, u.chosen, u.format, u.id, u.why = "", "", false, false, proto.Msgpack, nil, ""
	u.origin, u.ip, u.ipCounted = "", netip.Addr{}, false
	u.ext.Reset()
}

// negotiate answers one extension offer: the first acceptable
// permessage-deflate offer is taken, others (and malformed ones) are
// declined, as RFC 7692 section 7 wants, without failing the upgrade.
func (u *upgrade) negotiate(opt httphead.Option) (httphead.Option, error) {
	accept, err := u.ext.Negotiate(opt)
	if err != nil {
		return httphead.Option{}, nil
	}
	return accept, nil
}

// compressed reports whether the upgrade negotiated permessage-deflate.
func (u *upgrade) compressed() bool {
	_, ok := u.ext.Accepted()
	return ok
}

func (u *upgrade) rejectWith(r refusal, msg string) error {
	if msg == "" {
		msg = r.msg()
	}
	u.why = r.reason()
	return ws.RejectConnectionError(ws.RejectionStatus(r.status()), ws.RejectionReason(msg))
}

// failReason names a failed handshake for metrics.
func (u *upgrade) failReason() string {
	if u.why == "" {
		return refBadRequest.reason() // gobwas found the request malformed
	}
	return u.why
}

// onRequest reads the request URI: the path must be /ws; the token may be
// the query's first token parameter. A plain URI (see plainURI) is read
// without net/url, which gives the same answer with less work.
func (u *upgrade) onRequest(uri []byte) error {
	if path, query, ok := plainURI(uri); ok {
		if string(path) != "/ws" {
			return u.rejectWith(refNotFound, "")
		}
		u.path = "/ws"
		if tok, ok := queryParam(query, "token"); ok {
			u.token = string(tok)
		}
		return nil
	}
	p, err := url.ParseRequestURI(string(uri))
	if err != nil {
		return u.rejectWith(refBadRequest, "bad request URI")
	}
	u.path = p.Path
	if u.path != "/ws" {
		return u.rejectWith(refNotFound, "")
	}
	u.token = p.Query().Get("token")
	return nil
}

// plainURI splits a request URI that net/url would take as it is: it
// starts with "/" and holds only printable ASCII, none of it an escape
// ('%'), a '+' (a space in a query) or a ';' (which ParseQuery refuses).
// Anything else is not plain and goes through net/url.
func plainURI(uri []byte) (path, query []byte, ok bool) {
	if len(uri) == 0 || uri[0] != '/' {
		return nil, nil, false
	}
	for _, c := range uri {
		if c <= ' ' || c >= 0x7f || c == '%' || c == '+' || c == ';' || c == '#' {
			return nil, nil, false
		}
	}
	path, query, _ = bytes.Cut(uri, []byte("?"))
	return path, query, true
}

// queryParam is url.Values.Get of a plain query: the value of the first
// key=value pair named key ("" for a bare key).
func queryParam(query []byte, key string) ([]byte, bool) {
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = bytes.Cut(query, []byte("&"))
		k, v, _ := bytes.Cut(pair, []byte("="))
		if string(k) == key {
			return v, true
		}
	}
	return nil, false
}

// onHeader reads the headers the relay uses. The Origin is kept only when
// there is an allow-list to check it against (originAllowed passes "").
func (u *upgrade) onHeader(key, value []byte, keepOrigin bool) error {
	if keepOrigin && bytes.EqualFold(key, []byte("Origin")) {
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

// beforeUpgrade runs the admission of a parsed upgrade request.
func (u *upgrade) beforeUpgrade(l *loop) error {
	a := admission{ip: u.ip, origin: u.origin, token: u.token}
	if u.offers && !u.chosen {
		a.bad = refSubprotocol
	}
	id, r, msg := l.srv.admit(&a)
	if r != refNone {
		return u.rejectWith(r, msg)
	}
	u.id, u.ipCounted = id, true
	return nil
}

// handshake parses the request at the head of buf (after a PROXY protocol
// header, when the peer must send one). It returns how many bytes it used
// (0: need more), or answers and closes the connection on failure.
func (s *session) handshake(buf []byte) int {
	used := 0
	if !s.addr().IsValid() { // the first bytes: learn the transport address
		n, r := s.peerAddr(buf)
		if r != refNone {
			s.refuse(r, "")
			return len(buf)
		}
		if !s.addr().IsValid() {
			return 0 // a PROXY header still incomplete
		}
		used = n
	}
	n := s.request(buf[used:])
	if n < 0 {
		return len(buf)
	}
	return used + n
}

// request parses and answers the HTTP request at the head of buf: 0 means
// need more; -1 means the connection is done with (refused, or a plain GET
// answered: nothing more is read).
func (s *session) request(buf []byte) int {
	end := bytes.Index(buf, headerEnd)
	if end < 0 {
		if len(buf) > maxRequestHeader {
			s.refuse(refTooLarge, "")
			return -1
		}
		return 0
	}
	n := end + len(headerEnd)
	if n > maxRequestHeader {
		s.refuse(refTooLarge, "")
		return -1
	}
	if plainHTTP(buf[:n]) {
		s.serveHTTP(buf[:n])
		return -1
	}
	if !s.upgradeWS(buf[:n]) {
		return -1
	}
	return n
}

// upgradeWS runs the WebSocket upgrade of req and reports whether the
// connection is now open.
func (s *session) upgradeWS(req []byte) bool {
	u := &s.loop.up
	u.reset(req)
	u.ip = s.srv().proxies.clientAddr(s.addr(), func() ([]string, string) { return forwardHeaders(req) })
	_, err := u.up.Upgrade(u)
	if err != nil {
		s.srv().metrics.handshakeFail(u.failReason()) // counted before the client can see the answer
		s.write(u.out.Bytes())
		if u.ipCounted {
			s.srv().ips.release(u.ip)
		}
		if s.state == stateHTTP { // else the write failed and gnet closed the connection
			s.abort()
		}
		return false
	}
	s.setAddr(u.ip)
	s.ipCounted = u.ipCounted
	s.compressed = u.compressed()
	s.open(u.id, u.format)                    // counted before the client can read its hello
	u.out.Write(s.helloFrame(u.id, u.format)) // one write, one segment: the 101 and hello
	s.write(u.out.Bytes())
	return s.state == stateOpen // else the write failed and gnet closed the connection
}

// helloFrame is the hello of a new WebSocket session, valid until the loop
// encodes again (nil if it cannot be encoded, never expected).
func (s *session) helloFrame(id *identity, f proto.Format) []byte {
	b, err := s.loop.enc.Frame(f, &proto.Hello{T: proto.THello, V: 1, User: id.user, Name: id.name, Anon: id.anon,
		Role: id.role.String(), Limits: s.srv().helloLimits(id), Node: s.srv().cfg.NodeID})
	if err != nil {
		s.srv().cfg.Logger.Error("cannot encode hello", "err", err)
		return nil
	}
	return b
}

// refuse answers a refused request from the refusal table (with msg, or
// the table's message), counts it and closes.
func (s *session) refuse(r refusal, msg string) {
	s.srv().metrics.handshakeFail(r.reason())
	s.write(r.response(msg))
	s.abort()
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
