package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// This file is the publish hook (Namespace.PublishHook): before a client's
// message in a hooked namespace is sequenced, the relay POSTs it to the
// backend, which allows, denies or rewrites it.
//
// The event loop never waits: the session hands a ticket to the hook
// (enqueue, on the loop), the HTTP call runs on its own goroutine, and the
// answer comes back to the session's loop as a task (sendDone). A room's
// tickets wait in a FIFO: a message is sequenced only once every earlier
// message of its room was answered and sequenced, so order within a room
// is arrival order whatever order the backend answers in. Other rooms, and
// other namespaces, never wait for it.

// PublishHook configures a namespace's publish hook.
type PublishHook struct {
	URL string `yaml:"url"` // http(s) URL the relay POSTs each message to; required
	// Timeout bounds one call (connect, request, answer); zero means 1s.
	Timeout time.Duration `yaml:"timeout"`
	// OnError decides a message whose call failed (timeout, error, an
	// answer that is not 2xx JSON): "deny" refuses it with unavailable,
	// "allow" sequences it unchanged. Zero means "deny".
	OnError string `yaml:"on_error"`
	// MaxInflight bounds the messages of the namespace waiting for the
	// hook (called, or answered and waiting for an earlier message of
	// their room); past it a send gets unavailable at once. Zero means 256.
	MaxInflight int `yaml:"max_inflight"`
}

// hookRequest is what the backend receives. Backends code against it:
// keep the fields.
type hookRequest struct {
	Room string            `json:"room"`
	From string            `json:"from"`
	Name string            `json:"name"`
	Role string            `json:"role"`
	Body string            `json:"body"`
	Meta map[string]string `json:"meta"`
}

// hookAnswer is the backend's answer: allow (required), a reason when
// denied, and an optional rewrite of body and meta.
type hookAnswer struct {
	Allow  *bool             `json:"allow"`
	Reason string            `json:"reason"`
	Body   *string           `json:"body"`
	Meta   map[string]string `json:"meta"`
}

// maxHookAnswer bounds the bytes of an answer read.
const maxHookAnswer = 64 << 10

var (
	errHookBusy = newCodeError(proto.CodeUnavailable, "too many messages wait for the publish hook; retry")
	errHookDown = newCodeError(proto.CodeUnavailable, "the publish hook did not answer; retry")
)

// publishHook is one namespace's hook. Static after New, except what mu
// guards.
type publishHook struct {
	url          string
	timeout      time.Duration
	allowOnError bool
	max          int
	client       *http.Client

	mu       sync.Mutex
	inflight int                   // tickets in rooms
	rooms    map[string]*hookQueue // rooms with tickets
}

// hookQueue is a room's tickets in arrival order; draining is set while a
// goroutine sequences the answered ones at its head.
type hookQueue struct {
	tickets  []*hookTicket
	draining bool
}

// hookTicket is one message waiting for the hook. Set on the loop, then
// owned by the hook's goroutine; done and err are guarded by the hook's mu.
type hookTicket struct {
	s       *session
	id      *identity
	ref     uint64
	room    string
	start   time.Time
	msg     shard.Message
	whisper bool

	done bool
	err  error
}

func newPublishHook(c PublishHook) (*publishHook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url must be an http or https URL, not %q", c.URL)
	}
	h := &publishHook{url: c.URL, timeout: c.Timeout, max: c.MaxInflight, rooms: map[string]*hookQueue{}}
	switch c.OnError {
	case "", "deny":
	case "allow":
		h.allowOnError = true
	default:
		return nil, fmt.Errorf("on_error must be allow or deny, not %q", c.OnError)
	}
	if h.timeout <= 0 {
		h.timeout = time.Second
	}
	if h.max <= 0 {
		h.max = 256
	}
	h.client = &http.Client{Timeout: h.timeout, Transport: newBackendTransport(h.timeout, h.max)}
	return h, nil
}

// newBackendTransport is a keep-alive transport with explicit timeouts,
// keeping up to conns idle connections to the backend.
func newBackendTransport(timeout time.Duration, conns int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // the backend is ours: no proxy from the environment
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// sendHooked asks the hook before sequencing a checked message. Called on
// the session's loop; the answer comes back to it as a sendDone task.
func (s *session) sendHooked(c *proto.Command, m *shard.Message, h *publishHook, whisper bool) {
	t := &hookTicket{s: s, id: s.id, ref: c.Ref, room: c.Room, start: s.lastRecv.time(), msg: *m, whisper: whisper}
	if !h.enqueue(t) {
		s.srv().metrics.hook[hookOverloaded].Inc()
		s.refused(c, "send", errHookBusy)
		return
	}
	go h.call(t)
}

// enqueue adds t behind its room's tickets; false if max_inflight are
// waiting already. Any goroutine.
func (h *publishHook) enqueue(t *hookTicket) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inflight >= h.max {
		return false
	}
	h.inflight++
	q := h.rooms[t.room]
	if q == nil {
		q = &hookQueue{}
		h.rooms[t.room] = q
	}
	q.tickets = append(q.tickets, t)
	return true
}

// call asks the backend about t, then sequences what its room can.
// Its own goroutine.
func (h *publishHook) call(t *hookTicket) {
	srv := t.s.srv()
	start := time.Now()
	outcome, err := h.safeAsk(t)
	srv.metrics.hookSeconds.Observe(time.Since(start).Seconds())
	srv.metrics.hook[outcome].Inc()
	h.finish(t, err)
}

// safeAsk is ask, a panic in which refuses the message (internal) and is
// logged, so that the room's queue moves on.
func (h *publishHook) safeAsk(t *hookTicket) (o hookOutcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			t.s.srv().cfg.Logger.Error("publish hook panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			o, err = hookError, newCodeError(proto.CodeInternal, "internal error")
		}
	}()
	return h.ask(t)
}

// finish records t's answer and sequences the answered tickets at the head
// of its room, in order, unless another goroutine is doing so already (it
// then takes t too). Any goroutine.
func (h *publishHook) finish(t *hookTicket, err error) {
	h.mu.Lock()
	t.done, t.err = true, err
	q := h.rooms[t.room]
	if q.draining {
		h.mu.Unlock()
		return
	}
	q.draining = true
	for {
		n := 0
		for n < len(q.tickets) && q.tickets[n].done {
			n++
		}
		if n == 0 {
			q.draining = false
			if len(q.tickets) == 0 {
				delete(h.rooms, t.room)
			}
			h.mu.Unlock()
			return
		}
		ready := q.tickets[:n:n]
		q.tickets = q.tickets[n:]
		h.inflight -= n
		h.mu.Unlock()
		for _, r := range ready {
			r.sequence()
		}
		h.mu.Lock()
	}
}

// sequence publishes an allowed message (or passes on its refusal) and
// answers the sender on its loop. In memory mode Hub.Send sequences before
// returning; with a bus it hands messages to the log in call order.
// Called by the goroutine draining the ticket's room.
func (t *hookTicket) sequence() {
	if t.err != nil {
		t.answer(0, t.err)
		return
	}
	t.s.srv().hub.Send(t.room, &t.msg, t.answer)
}

// answer writes the outcome to the sender from its loop. Any goroutine.
func (t *hookTicket) answer(seq uint64, err error) {
	if t.whisper {
		err = whisperErr(err)
	}
	if err == nil {
		t.s.srv().events.message(t.room, seq, &t.msg)
	}
	_ = t.s.loop.Execute(sendDone{s: t.s, ref: t.ref, room: t.room, seq: seq, err: err, start: t.start})
}

// ask makes one call and returns its outcome (a label of
// roomcast_publish_hook_requests_total) and the message's fate: nil to
// sequence t.msg (rewritten if the backend said so), else the refusal.
func (h *publishHook) ask(t *hookTicket) (hookOutcome, error) {
	body, err := json.Marshal(hookRequest{Room: t.room, From: t.msg.From, Name: t.msg.Name, Role: t.id.role.String(),
		Body: t.msg.Body, Meta: t.msg.Meta})
	if err != nil {
		return h.failed(hookError)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return h.failed(hookError)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "roomcast")
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return h.failed(hookTimeout)
		}
		return h.failed(hookError)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHookAnswer)) // keep the connection
		_ = resp.Body.Close()
	}()
	var a hookAnswer
	if resp.StatusCode/100 != 2 || json.NewDecoder(io.LimitReader(resp.Body, maxHookAnswer)).Decode(&a) != nil || a.Allow == nil {
		if ctx.Err() != nil {
			return h.failed(hookTimeout)
		}
		return h.failed(hookError)
	}
	return t.apply(&a)
}

// apply applies an answer to t.msg.
func (t *hookTicket) apply(a *hookAnswer) (hookOutcome, error) {
	if !*a.Allow {
		reason := a.Reason
		if reason == "" {
			reason = "refused by the publish hook"
		}
		return hookDeny, newCodeError(proto.CodeForbidden, reason)
	}
	if a.Body == nil && a.Meta == nil {
		return hookAllow, nil
	}
	if a.Body != nil {
		t.msg.Body = *a.Body
	}
	if a.Meta != nil {
		t.msg.Meta = a.Meta
		if len(a.Meta) == 0 {
			t.msg.Meta = nil
		}
	}
	if msg, code := t.s.srv().checkMessage(t.msg.Body, t.msg.Meta); code != "" {
		return hookRewrite, newCodeError(code, "the publish hook's rewrite: "+msg)
	}
	return hookRewrite, nil
}

// failed is the fate of a message whose call failed: on_error.
func (h *publishHook) failed(o hookOutcome) (hookOutcome, error) {
	if h.allowOnError {
		return o, nil
	}
	return o, errHookDown
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hookOutcome labels roomcast_publish_hook_requests_total.
type hookOutcome uint8

const (
	hookAllow      hookOutcome = iota // allowed unchanged
	hookRewrite                       // allowed with a new body or meta
	hookDeny                          // refused by the backend (forbidden)
	hookTimeout                       // no answer in time (on_error)
	hookError                         // failed otherwise: connection, status, JSON (on_error)
	hookOverloaded                    // refused before calling: max_inflight (unavailable)
	numHookOutcomes
)

var hookOutcomeNames = [numHookOutcomes]string{"allow", "rewrite", "deny", "timeout", "error", "overloaded"}
