package relay

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// maxAPIBody bounds admin API request bodies.
const maxAPIBody = 64 << 10

// apiError is the JSON error of the admin API: {error: {code, message}}.
type apiError struct {
	status  int
	allow   string // the Allow header of a 405
	Code    string `json:"code"`
	Message string `json:"message"`
	RetryMS int64  `json:"retry_ms,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func apiErr(status int, code, msg string) *apiError {
	return &apiError{status: status, Code: code, Message: msg}
}

// apiErrOf returns the API error of err: itself if it is one, else its
// row of the error table.
func apiErrOf(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	code, status, msg, retry := classify(err)
	ae = apiErr(status, string(code), msg)
	if retry > 0 {
		ae.RetryMS = ceilMS(retry)
	}
	return ae
}

// apiHandler adapts a handler that returns a value or an error to JSON.
func (s *Server) apiHandler(fn func(r *http.Request) (any, error)) http.Handler {
	return s.requireKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
		v, err := fn(r)
		if err != nil {
			ae := apiErrOf(err)
			if ae.RetryMS > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt((ae.RetryMS+999)/1000, 10))
			}
			if ae.allow != "" {
				w.Header().Set("Allow", ae.allow)
			}
			writeJSON(w, ae.status, map[string]any{"error": ae})
			return
		}
		writeJSON(w, http.StatusOK, v)
	}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requireKey checks the bearer API key: 403 for everything when the relay
// has none, 401 without it or with a wrong one.
func (s *Server) requireKey(h http.Handler) http.Handler {
	key := []byte(s.cfg.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.metrics.apiCalls.Inc()
		if len(key) == 0 {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": apiErr(http.StatusForbidden, "forbidden", "the admin API is off: start the relay with -api-key")})
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), key) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="roomcast"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": apiErr(http.StatusUnauthorized, "unauthorized", "missing or wrong API key")})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	routes := []struct {
		method, path string
		fn           func(*http.Request) (any, error)
	}{
		{"POST", "/api/publish", s.apiPublish},
		{"GET", "/api/rooms", s.apiRooms},
		{"GET", "/api/rooms/{room}", s.apiRoom},
		{"POST", "/api/mod", s.apiModerate},
		{"POST", "/api/disconnect", s.apiDisconnect},
	}
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, s.apiHandler(rt.fn))
		// The path with another method: 405 naming the one it takes
		// (the catch-all below would say 404). Each path has one method.
		allow := rt.method
		mux.Handle(rt.path, s.apiHandler(func(*http.Request) (any, error) {
			e := apiErr(http.StatusMethodNotAllowed, "method_not_allowed", "this API call takes "+allow)
			e.allow = allow
			return nil, e
		}))
	}
	mux.Handle("/api/", s.apiHandler(func(*http.Request) (any, error) {
		return nil, apiErr(http.StatusNotFound, "not_found", "no such API call")
	}))
	pp := http.NewServeMux()
	pp.HandleFunc("/debug/pprof/", pprof.Index)
	pp.HandleFunc("/debug/pprof/cmdline", pprofCmdline) // secrets redacted
	pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
	pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", s.requireKey(pp))
}

// decodeBody reads a JSON request body into v.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErr(http.StatusRequestEntityTooLarge, string(proto.CodeTooLarge), "request body over 64 KiB")
		}
		return apiErr(http.StatusBadRequest, string(proto.CodeBadRequest), "cannot decode JSON body: "+err.Error())
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, string(proto.CodeBadRequest), "the body holds more than one JSON value")
	}
	return nil
}

type publishRequest struct {
	Room string            `json:"room"`
	Body string            `json:"body"`
	From string            `json:"from"`
	Name string            `json:"name"`
	Meta map[string]string `json:"meta"`
}

func (s *Server) apiPublish(r *http.Request) (any, error) {
	var req publishRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if !proto.ValidRoom(req.Room) {
		return nil, apiErr(http.StatusBadRequest, string(proto.CodeBadRoom), "room names match ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
	}
	if msg, code := s.checkMessage(req.Body, req.Meta); code != "" {
		return nil, newCodeError(code, msg)
	}
	if req.From == "" {
		req.From = "system"
	}
	// The API is the operator's backend: slow mode does not apply, but a
	// ban or timeout of from does (a moderation decision holds on every path).
	seq, err := s.hub.Publish(req.Room, &shard.Message{From: req.From, Name: req.Name, Body: req.Body,
		Meta: req.Meta, SlowExempt: true})
	if err != nil {
		return nil, err // answered from the error table by apiHandler
	}
	s.events.message(req.Room, seq, &shard.Message{From: req.From, Name: req.Name, Body: req.Body, Meta: req.Meta})
	return map[string]uint64{"seq": seq}, nil
}

type roomJSON struct {
	Room    string         `json:"room"`
	Count   int            `json:"count"`
	Seq     uint64         `json:"seq"`
	Members []proto.Member `json:"members,omitempty"`
}

func (s *Server) apiRooms(r *http.Request) (any, error) {
	rooms := []roomJSON{}
	s.hub.Rooms(r.URL.Query().Get("prefix"), func(room *shard.Room) {
		in := room.Info()
		rooms = append(rooms, roomJSON{Room: in.Room, Count: in.Count, Seq: in.Seq})
	})
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Room < rooms[j].Room })
	return map[string]any{"rooms": rooms}, nil
}

func (s *Server) apiRoom(r *http.Request) (any, error) {
	room := s.hub.Lookup(r.PathValue("room"))
	if room == nil {
		return nil, apiErr(http.StatusNotFound, "not_found", "no such room on this node")
	}
	in := room.Info()
	return roomJSON{Room: in.Room, Count: in.Count, Seq: in.Seq, Members: in.Members}, nil
}

func (s *Server) apiDisconnect(r *http.Request) (any, error) {
	var req struct {
		User string `json:"user"`
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.User == "" {
		return nil, apiErr(http.StatusBadRequest, string(proto.CodeBadRequest), "user is required")
	}
	n := s.disconnectUser(req.User, proto.CloseOperator, "disconnected by an operator")
	return map[string]int{"disconnected": n}, nil
}

// checkMessage returns an error message and code if a body or meta is empty
// or too large. meta is limited in bytes: keys maxMetaKey, values
// maxMetaValue, all keys and values together maxMetaTotal.
func (s *Server) checkMessage(body string, meta map[string]string) (string, proto.Code) {
	switch {
	case body == "":
		return "body must not be empty", proto.CodeBadRequest
	case !utf8.ValidString(body):
		return "body is not valid UTF-8", proto.CodeBadRequest
	case utf8.RuneCountInString(body) > s.cfg.MaxBody:
		return "body is longer than max_body characters", proto.CodeTooLarge
	case len(meta) > maxMetaEntries:
		return "meta has too many entries", proto.CodeTooLarge
	}
	total := 0
	for k, v := range meta {
		if len(k) > maxMetaKey || len(v) > maxMetaValue {
			return "a meta key is over 64 bytes or a value over 256 bytes", proto.CodeTooLarge
		}
		total += len(k) + len(v)
	}
	if total > maxMetaTotal {
		return "meta is over 1024 bytes in all", proto.CodeTooLarge
	}
	return "", ""
}

// remember and forget keep the index of connections by user, for
// /api/disconnect and bans. Called on the session's loop, once each. Most
// users have one connection (see userIndex).
func (s *Server) remember(ss *session) {
	if ss.id.anon {
		return // per-connection ids that appear nowhere: not worth the memory
	}
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	s.users.add(ss.id.user, ss)
}

func (s *Server) forget(ss *session) {
	if ss.id.anon {
		return
	}
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	s.users.remove(ss.id.user, ss)
}

// disconnectUser closes every connection of user with code, each on its own
// loop, and returns how many there were. Any goroutine.
func (s *Server) disconnectUser(user string, code proto.CloseCode, reason string) int {
	return s.onSessionsOf(user, func(ss *session) gnet.Runnable { return closeTask{ss, code, reason} })
}

// onSessionsOf runs the task task(ss) on the loop of each open session of
// user, and returns how many there were. Any goroutine.
func (s *Server) onSessionsOf(user string, task func(*session) gnet.Runnable) int {
	s.usersMu.Lock()
	list := s.users.appendTo(nil, user)
	s.usersMu.Unlock()
	for _, ss := range list {
		_ = ss.loop.el.Execute(context.Background(), task(ss))
	}
	return len(list)
}

// closeTask closes one session on its loop (no-op if it is gone already).
type closeTask struct {
	s      *session
	code   proto.CloseCode
	reason string
}

func (t closeTask) Run(context.Context) error {
	defer t.s.srv().rescue(t.s.conn, siteTask)
	t.s.close(t.code, t.reason)
	return nil
}

// bearer returns the credentials of an "Authorization: Bearer" header (the
// scheme is case-insensitive).
func bearer(h string) (string, bool) {
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}
