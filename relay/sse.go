package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// sseKeepAlive is how often an SSE stream gets a comment line, so proxies
// keep it open.
const sseKeepAlive = 15 * time.Second

//go:embed overlay.html
var overlayPage []byte

// clientScript is the JavaScript client library, served at /roomcast.js;
// clientETag names its content (it changes only with the binary).
//
//go:embed js/roomcast.js
var clientScript []byte

var clientETag = func() string {
	sum := sha256.Sum256(clientScript)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// publicPaths are the plain HTTP endpoints of the public listener, with the
// methods each answers (OPTIONS too, always). /ws is a WebSocket upgrade:
// only OPTIONS (and GET, upgraded elsewhere) reach serveHTTP for it.
var publicPaths = map[string]string{
	"/sse":         "GET, HEAD, OPTIONS",
	"/overlay":     "GET, HEAD, OPTIONS",
	"/roomcast.js": "GET, HEAD, OPTIONS",
	"/healthz":     "GET, HEAD, OPTIONS",
	"/ws":          "GET, OPTIONS",
}

// plainHTTP reports whether a request is for serveHTTP rather than a
// WebSocket upgrade: a GET of one of the plain endpoints, or any other
// method on any path (the upgrade is a GET).
func plainHTTP(req []byte) bool {
	method, rest, ok := bytes.Cut(req, []byte(" "))
	if !ok {
		return false
	}
	if string(method) != http.MethodGet {
		return true
	}
	target, _, _ := bytes.Cut(rest, []byte(" "))
	path, _, _ := bytes.Cut(target, []byte("?"))
	_, plain := publicPaths[string(path)]
	return plain && string(path) != "/ws"
}

// serveHTTP answers a plain request on the public listener. A GET of /sse
// turns the connection into an event stream; anything else is answered and
// closed. Static answers (HEAD, OPTIONS, /overlay, /roomcast.js, /healthz)
// pass no admission: they hold nothing open. Called on the connection's
// loop (from OnTraffic, through request).
func (s *session) serveHTTP(raw []byte) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		s.refuse(refBadRequest, "")
		return
	}
	allow, ok := publicPaths[req.URL.Path]
	switch {
	case !ok:
		s.refuse(refNotFound, "")
	case req.Method == http.MethodOptions:
		s.options(req, allow)
	case !slices.Contains(strings.Split(allow, ", "), req.Method):
		s.srv().metrics.handshakeFail(refBadRequest.reason())
		s.answer(http.StatusMethodNotAllowed, req, []string{"Allow", allow, "Content-Type", "text/plain; charset=utf-8"},
			[]byte("method not allowed: "+req.URL.Path+" answers "+allow))
	case req.URL.Path == "/sse" && req.Method == http.MethodGet:
		s.openSSE(req)
	case req.URL.Path == "/sse":
		s.headSSE(req)
	case req.URL.Path == "/overlay":
		s.answer(http.StatusOK, req, []string{"Content-Type", "text/html; charset=utf-8", "Cache-Control", "no-cache"}, overlayPage)
	case req.URL.Path == "/roomcast.js":
		s.serveScript(req)
	default: // /healthz
		if s.srv().draining.Load() {
			s.answer(http.StatusServiceUnavailable, req, []string{"Content-Type", "text/plain; charset=utf-8", "Cache-Control", "no-store"}, []byte("draining\n"))
			return
		}
		s.answer(http.StatusOK, req, []string{"Content-Type", "text/plain; charset=utf-8", "Cache-Control", "no-store"}, []byte("ok\n"))
	}
}

// answer writes a whole response (headers as name, value pairs; no body
// for HEAD and for 204 and 304) and closes. Called on the connection's loop.
func (s *session) answer(status int, req *http.Request, headers []string, body []byte) {
	b := responseHead(status, headers)
	if status != http.StatusNoContent && status != http.StatusNotModified {
		b = fmt.Appendf(b, "Content-Length: %d\r\n", len(body))
	} else {
		body = nil
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	if req.Method != http.MethodHead {
		b = append(b, body...)
	}
	s.write(b)
	s.abort()
}

// responseHead is a response's status line and headers (name, value
// pairs), without the blank line.
func responseHead(status int, headers []string) []byte {
	b := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for i := 0; i+1 < len(headers); i += 2 {
		b = append(b, headers[i]+": "+headers[i+1]+"\r\n"...)
	}
	return b
}

// cors returns the CORS response headers for a request's Origin, as name,
// value pairs: "*" when the relay has no -allowed-origins, else the Origin
// itself if it is in the list (and Vary: Origin either way). A disallowed
// or missing Origin gets no Access-Control-Allow-Origin. Safe from any
// goroutine (it reads the config only).
func (s *Server) cors(origin string) []string {
	if len(s.cfg.AllowedOrigins) == 0 {
		return []string{"Access-Control-Allow-Origin", "*"}
	}
	if origin != "" && s.originAllowed(origin) {
		return []string{"Access-Control-Allow-Origin", origin, "Vary", "Origin"}
	}
	return []string{"Vary", "Origin"}
}

// options answers OPTIONS: 204 with Allow and, for a CORS preflight from an
// allowed Origin, the CORS headers.
func (s *session) options(req *http.Request, allow string) {
	h := []string{"Allow", allow}
	origin := req.Header.Get("Origin")
	if origin != "" && req.Header.Get("Access-Control-Request-Method") != "" {
		c := s.srv().cors(origin)
		h = append(h, c...)
		if c[0] == "Access-Control-Allow-Origin" {
			h = append(h, "Access-Control-Allow-Methods", allow,
				"Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control",
				"Access-Control-Max-Age", "600")
		}
	}
	s.answer(http.StatusNoContent, req, h, nil)
}

// sseHeaders are the response headers of an event stream for origin.
func (s *session) sseHeaders(origin string) []string {
	return append([]string{"Content-Type", "text/event-stream", "Cache-Control", "no-cache", "X-Accel-Buffering", "no"}, s.srv().cors(origin)...)
}

// headSSE answers HEAD /sse with a stream's headers. It checks the form of
// the request (room, since, history) but not its token or Origin, and opens
// nothing.
func (s *session) headSSE(req *http.Request) {
	q := req.URL.Query()
	var jr shard.JoinRequest
	if !proto.ValidRoom(q.Get("room")) {
		s.refuse(refBadRequest, "room must match ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
		return
	}
	if err := sseResume(&jr, q.Get("since"), req.Header.Get("Last-Event-ID"), q.Get("history")); err != nil {
		s.refuse(refBadRequest, err.Error())
		return
	}
	b := responseHead(http.StatusOK, s.sseHeaders(req.Header.Get("Origin")))
	s.write(append(b, "Connection: close\r\n\r\n"...))
	s.abort()
}

// serveScript answers /roomcast.js: cacheable for 5 minutes, revalidated
// by ETag (304), with CORS so pages of other origins may import it.
func (s *session) serveScript(req *http.Request) {
	h := append([]string{"Content-Type", "text/javascript; charset=utf-8", "Cache-Control", "public, max-age=300",
		"ETag", clientETag, "X-Content-Type-Options", "nosniff"}, s.srv().cors(req.Header.Get("Origin"))...)
	if inm := req.Header.Get("If-None-Match"); inm != "" && (strings.Contains(inm, clientETag) || strings.TrimSpace(inm) == "*") {
		s.answer(http.StatusNotModified, req, h, nil)
		return
	}
	s.answer(http.StatusOK, req, h, clientScript)
}

// httpError answers with a short plain-text error and closes.
func (s *session) httpError(status int, msg string) {
	s.write(fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg))
	s.abort()
}

// openSSE joins the connection to ?room= as a read-only member in the SSE
// format: history first (from since, Last-Event-ID or history), then every
// message, presence, delete and clear event of the room. It is let in by
// the same admission as a WebSocket (Server.admit).
func (s *session) openSSE(req *http.Request) {
	srv := s.srv()
	q := req.URL.Query()
	room := q.Get("room")
	jr := shard.JoinRequest{LoopIndex: s.loop.idx, Loop: s.loop, Member: s, Format: proto.SSE}
	a := s.sseAdmission(req)
	if !proto.ValidRoom(room) {
		a.bad, a.badMsg = refBadRequest, "room must match ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$"
	} else if err := sseResume(&jr, q.Get("since"), req.Header.Get("Last-Event-ID"), q.Get("history")); err != nil {
		a.bad, a.badMsg = refBadRequest, err.Error()
	}
	id, r, msg := srv.admit(&a)
	if r != refNone {
		s.refuse(r, msg)
		return
	}
	if !roomAllowed(id.rooms(), room) || !srv.mayRead(id, room) { // mayRead: inboxes (inbox.go)
		srv.ips.release(a.ip)
		s.refuse(refRoom, "")
		return
	}
	jr.User, jr.Name, jr.Anon, jr.Create = id.user, id.name, id.anon, srv.ips.roomCreator(a.ip)
	s.setAddr(a.ip)
	s.ipCounted = true // released by OnClose from now on
	s.sseJoin(ssePending{s: s, room: room, jr: jr, id: id, origin: req.Header.Get("Origin")}, srv.bus != nil)
}

// ssePending is an admitted /sse request joining its room. In cluster and
// durable modes a room still catching up with the bus makes it wait: the
// connection stays unanswered (and reads nothing, see session.sseWaiting)
// until the join is made again on its loop, as a task (Run), once the room
// caught up; so the history and ids are those of the stream. The wait is
// bounded by the handshake timeout.
type ssePending struct {
	s      *session
	room   string
	jr     shard.JoinRequest
	id     *identity
	origin string
	err    error // the room could not catch up (set by the Wait callback)
}

// sseJoin joins j's room and opens the stream, or makes it wait (with
// wait), or answers j.err or the join's error. Called on the loop.
func (s *session) sseJoin(j ssePending, wait bool) {
	srv := s.srv()
	if wait {
		j.jr.Wait = func(err error) { // any goroutine
			t := j
			t.jr.Wait, t.err = nil, err
			_ = s.loop.Execute(t)
		}
	}
	ms, res, err := (*shard.Membership)(nil), shard.JoinResult{}, j.err
	if err == nil {
		ms, res, err = srv.hub.Join(j.room, &j.jr)
	}
	if err == shard.ErrSyncing {
		s.sseWaiting = true
		return
	}
	if err != nil {
		srv.ips.release(s.addr())
		s.ipCounted = false
		code, status, msg, _ := classify(err)
		srv.metrics.rejected(code).Inc()
		if code == proto.CodeRateLimited {
			srv.metrics.rateLimited["room"].Inc()
		}
		s.httpError(status, msg)
		return
	}
	s.id, s.format, s.state = j.id, proto.SSE, stateOpen
	s.sse = true
	s.rooms.add(ms) // held inline, as a WebSocket's first room
	srv.metrics.openSSE.Inc()
	srv.metrics.handshakes.Inc()
	srv.metrics.handshake.Observe(time.Since(s.since.time()).Seconds())
	srv.remember(s)
	b := responseHead(http.StatusOK, s.sseHeaders(j.origin))
	s.write(append(b, "Connection: close\r\n\r\nretry: 2000\n\n"...))
	for _, m := range res.History {
		s.write(m)
	}
}

// Run makes a join that waited for its room again, on the session's loop.
func (j ssePending) Run(context.Context) error {
	s := j.s
	defer s.srv().rescue(s.conn, siteTask)
	if s.state != stateHTTP || !s.sseWaiting {
		return nil // closed meanwhile (OnClose released the IP)
	}
	s.sseWaiting = false
	s.sseJoin(j, false) // j.err, if set, is answered without joining
	return nil
}

// sseAdmission is what an /sse request presents: the client address (after
// trusted proxies), Origin, and the token of ?token= or else the
// Authorization header.
func (s *session) sseAdmission(req *http.Request) admission {
	a := admission{origin: req.Header.Get("Origin"), token: req.URL.Query().Get("token")}
	if v, ok := bearer(req.Header.Get("Authorization")); ok && a.token == "" {
		a.token = v
	}
	a.ip = s.srv().proxies.clientAddr(s.addr(), func() ([]string, string) {
		return req.Header.Values("X-Forwarded-For"), req.Header.Get("X-Real-IP")
	})
	return a
}

// sseResume fills the join's resume point: Last-Event-ID (sent by browsers
// when they reconnect), else since, and history. Both are event ids,
// "<epoch>:<seq>", or a bare seq of the room's current epoch.
func sseResume(jr *shard.JoinRequest, since, lastID, history string) error {
	if id := strings.TrimSpace(lastID); id != "" {
		since = id // a browser reconnecting: it knows better than the URL it was opened with
	}
	if since != "" {
		epoch, seq, hasEpoch := strings.Cut(since, ":")
		if !hasEpoch {
			epoch, seq = "", since
		}
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || hasEpoch && epoch == "" {
			return errors.New("since and Last-Event-ID must be an event id (<epoch>:<seq>) or a seq")
		}
		jr.Since, jr.HasSince, jr.Epoch, jr.History = n, true, epoch, -1
	}
	if history != "" {
		n, err := strconv.ParseUint(history, 10, 31)
		if err != nil {
			return errors.New("history must be a count")
		}
		jr.History = int(n)
	}
	return nil
}

var sseComment = []byte(": keep-alive\n\n")
