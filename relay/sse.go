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
		s.httpError(http.StatusBadRequest, "bad request")
	case req.URL.Path == "/sse":
		s.openSSE(req)
	case req.URL.Path == "/overlay":
		s.write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nContent-Length: " +
			strconv.Itoa(len(overlayPage)) + "\r\nConnection: close\r\n\r\n"))
		s.write(overlayPage)
		s.abort()
	default:
		s.httpError(http.StatusNotFound, "not found")
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
// message, presence, delete and clear event of the room.
func (s *session) openSSE(req *http.Request) {
	srv := s.srv
	q := req.URL.Query()
	room := q.Get("room")
	if !proto.ValidRoom(room) {
		srv.metrics.handshakeFail("bad_request")
		s.httpError(http.StatusBadRequest, "room must match ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
		return
	}
	token := q.Get("token")
	if v, ok := bearer(req.Header.Get("Authorization")); ok && token == "" {
		token = v
	}
	id, err := srv.auth.identify(token)
	if err != nil {
		srv.metrics.handshakeFail("auth")
		s.httpError(http.StatusUnauthorized, err.Error())
		return
	}
	if id.anon {
		id.user = fmt.Sprintf("anon-%x", srv.anonSeq.Add(1))
	}
	if !roomAllowed(id.rooms, room) {
		srv.metrics.handshakeFail("auth")
		s.httpError(http.StatusForbidden, "your token does not allow this room")
		return
	}
	jr := shard.JoinRequest{LoopIndex: s.loop.idx, Loop: s.loop, Member: s, Format: proto.SSE,
		User: id.user, Name: id.name, Anon: id.anon}
	if err := sseResume(&jr, q.Get("since"), req.Header.Get("Last-Event-ID"), q.Get("history")); err != nil {
		srv.metrics.handshakeFail("bad_request")
		s.httpError(http.StatusBadRequest, err.Error())
		return
	}
	ms, res, err := srv.hub.Join(room, &jr)
	switch {
	case errors.Is(err, shard.ErrNoAnon):
		s.httpError(http.StatusForbidden, "this room is not open to anonymous viewers")
		return
	case errors.Is(err, shard.ErrBanned):
		s.httpError(http.StatusForbidden, "you are banned from this room")
		return
	case errors.Is(err, shard.ErrRoomFull):
		s.httpError(http.StatusServiceUnavailable, "room is full")
		return
	case err != nil:
		s.httpError(http.StatusInternalServerError, "cannot join")
		return
	}
	s.id, s.format, s.state = id, proto.SSE, stateOpen
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
