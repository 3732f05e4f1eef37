package relay

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
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

// plainHTTP reports whether a request is one of the plain HTTP endpoints of
// the public listener (/sse, /overlay) rather than a WebSocket upgrade.
func plainHTTP(req []byte) bool {
	return bytes.HasPrefix(req, []byte("GET /sse")) || bytes.HasPrefix(req, []byte("GET /overlay"))
}

// serveHTTP answers a plain GET on the public listener. /sse turns the
// connection into an event stream; anything else is answered and closed.
func (s *session) serveHTTP(raw []byte) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	switch {
	case err != nil:
		s.refuse(refBadRequest, "")
	case req.URL.Path == "/sse":
		s.openSSE(req)
	case req.URL.Path == "/overlay":
		s.write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nContent-Length: " +
			strconv.Itoa(len(overlayPage)) + "\r\nConnection: close\r\n\r\n"))
		s.write(overlayPage)
		s.abort()
	default:
		s.refuse(refNotFound, "")
	}
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
	srv := s.srv
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
	if !roomAllowed(id.rooms, room) {
		srv.ips.release(a.ip)
		s.refuse(refRoom, "")
		return
	}
	jr.User, jr.Name, jr.Anon, jr.Create = id.user, id.name, id.anon, srv.ips.roomCreator(a.ip)
	ms, res, err := srv.hub.Join(room, &jr)
	if err != nil {
		srv.ips.release(a.ip)
		code, status, msg, _ := classify(err)
		srv.metrics.rejected(code).Inc()
		if code == proto.CodeRateLimited {
			srv.metrics.rateLimited["room"].Inc()
		}
		s.httpError(status, msg)
		return
	}
	s.id, s.format, s.state = id, proto.SSE, stateOpen
	s.ip, s.ipCounted = a.ip, true
	s.sse, s.rooms = true, map[string]*shard.Membership{room: ms}
	srv.metrics.openSSE.Inc()
	srv.metrics.handshakes.Inc()
	srv.metrics.handshake.Observe(time.Since(s.openedAt).Seconds())
	srv.remember(s)
	s.write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n"))
	for _, m := range res.History {
		s.write(m)
	}
}

// sseAdmission is what an /sse request presents: the client address (after
// trusted proxies), Origin, and the token of ?token= or else the
// Authorization header.
func (s *session) sseAdmission(req *http.Request) admission {
	a := admission{origin: req.Header.Get("Origin"), token: req.URL.Query().Get("token")}
	if v, ok := bearer(req.Header.Get("Authorization")); ok && a.token == "" {
		a.token = v
	}
	a.ip = s.srv.proxies.clientAddr(s.ip, func() ([]string, string) {
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
