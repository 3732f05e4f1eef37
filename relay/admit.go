package relay

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// refusal is why a connection was not let in: one row of refusals, the one
// table of HTTP status, metric reason and message that every way in (the
// WebSocket upgrade, /sse, the connection cap in OnOpen) answers from.
type refusal uint8

const (
	refNone        refusal = iota
	refBadRequest          // malformed request, bad room, bad resume point
	refNotFound            // no such endpoint
	refSubprotocol         // a WebSocket offering none of ours
	refAuth                // missing or bad token
	refRoom                // the token does not allow the room (/sse)
	refOrigin              // Origin not in the allow-list
	refIPRate              // too many new connections from the client IP
	refIPConns             // too many open connections from the client IP
	refDraining            // shutting down
	refTooLarge            // request header over 8 KiB
	refTimeout             // request not complete in time
	refMaxConns            // the relay's connection cap (Config.MaxConns)
	refProxy               // a PROXY header missing, malformed or from an untrusted peer
)

// refusals is indexed by refusal. reason is the label value of
// roomcast_handshake_failures_total; msg is the plain-text body, unless the
// caller has a more precise one (a token error).
var refusals = [...]struct {
	reason string
	status int
	msg    string
}{
	refNone:        {"", http.StatusOK, ""},
	refBadRequest:  {"bad_request", http.StatusBadRequest, "bad request"},
	refNotFound:    {"not_found", http.StatusNotFound, "not found: the endpoints are /ws, /sse, /overlay, /roomcast.js and /healthz"},
	refSubprotocol: {"subprotocol", http.StatusBadRequest, "unsupported subprotocol: use roomcast.v1.msgpack or roomcast.v1.json"},
	refAuth:        {"auth", http.StatusUnauthorized, "a valid token is required"},
	refRoom:        {"auth", http.StatusForbidden, "your token does not allow this room"},
	refOrigin:      {"origin", http.StatusForbidden, "origin not allowed"},
	refIPRate:      {"ip_limit", http.StatusTooManyRequests, "too many new connections from this address"},
	refIPConns:     {"ip_limit", http.StatusTooManyRequests, "too many connections from this address"},
	refDraining:    {"draining", http.StatusServiceUnavailable, "server shutting down"},
	refTooLarge:    {"too_large", http.StatusRequestHeaderFieldsTooLarge, "request header too large"},
	refTimeout:     {"timeout", http.StatusRequestTimeout, "request timeout"},
	refMaxConns:    {"max_conns", http.StatusServiceUnavailable, "server at its connection limit"},
	refProxy:       {"proxy", http.StatusBadRequest, "bad or unexpected PROXY protocol header"},
}

func (r refusal) reason() string { return refusals[r].reason }
func (r refusal) status() int    { return refusals[r].status }
func (r refusal) msg() string    { return refusals[r].msg }

// response is the whole HTTP answer of a refusal (with msg, or the table's
// message if msg is empty).
func (r refusal) response(msg string) []byte {
	if msg == "" {
		msg = r.msg()
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		r.status(), http.StatusText(r.status()), len(msg), msg)
}

// admission is what a new WebSocket or event stream presents at the door.
type admission struct {
	ip     netip.Addr // the client address (after trusted proxies)
	origin string
	token  string
	bad    refusal // a fault the caller's parse found (subprotocol, room): refused after the per-IP rate, so it still uses it up
	badMsg string  // its message ("" for the table's)
}

// admit is the one admission check of every way in: draining, the per-IP
// rate and concurrency caps, a fault of the request, the Origin allow-list,
// then the token. It returns the identity, or a refusal and its message. On
// success the connection is counted against its IP: the caller releases it
// (Server.ips.release) when the connection ends, or at once if it refuses
// the connection later. The caller answers and counts the refusal. Called
// on the connection's loop.
func (s *Server) admit(a *admission) (*identity, refusal, string) {
	if s.draining.Load() {
		return nil, refDraining, ""
	}
	// Before the token: refused upgrades (bad tokens cost a signature
	// check) use up the rate too.
	if r := s.ips.admit(a.ip, time.Now()); r != refNone {
		s.metrics.rateLimited["ip"].Inc()
		return nil, r, ""
	}
	id, r, msg := s.admitRequest(a)
	if r != refNone {
		s.ips.release(a.ip)
	}
	return id, r, msg
}

// admitRequest is admit after the per-IP accounting.
func (s *Server) admitRequest(a *admission) (*identity, refusal, string) {
	if a.bad != refNone {
		return nil, a.bad, a.badMsg
	}
	if !s.originAllowed(a.origin) {
		return nil, refOrigin, ""
	}
	id, err := s.auth.identify(a.token)
	if err != nil {
		return nil, refAuth, err.Error()
	}
	if id.anon {
		id.user = fmt.Sprintf("anon-%x", s.anonSeq.Add(1))
	}
	return id, refNone, ""
}

// refMaxConnsResponse is the answer of OnOpen past Config.MaxConns.
var refMaxConnsResponse = refMaxConns.response("")

// atConnCap reports whether the public listener holds Config.MaxConns
// connections already, and counts the refusal if so. Called by OnOpen.
func (s *Server) atConnCap() bool {
	if s.cfg.MaxConns < 0 || s.conns.Load() < int64(s.cfg.MaxConns) {
		return false
	}
	s.metrics.handshakeFail(refMaxConns.reason())
	return true
}

// refusalReasons are the reasons of the refusal table, each once, in order.
func refusalReasons() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range refusals[1:] {
		if !seen[r.reason] {
			seen[r.reason] = true
			out = append(out, r.reason)
		}
	}
	return out
}
