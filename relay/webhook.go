package relay

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/shard"
)

// This file is the event webhooks (Config.Webhooks): room events (message,
// join, leave, moderation) are queued without blocking the code that
// raised them, and each webhook's goroutine POSTs them in batches, signed
// with its secret, retrying with exponential back-off. Queues are bounded:
// an event that finds its webhook's queue full is dropped and counted.
// Delivery is at least once; every event carries an id to deduplicate by.

// Webhook configures one receiver of room events.
type Webhook struct {
	URL    string   `yaml:"url"`    // http(s) URL events are POSTed to; required
	Secret string   `yaml:"secret"` // key of the HMAC-SHA256 signature; required
	Events []string `yaml:"events"` // of message, join, leave, moderation; zero means all
	Rooms  []string `yaml:"rooms"`  // room patterns ('*' as a suffix wildcard); zero means all

	BatchSize   int           `yaml:"batch_size"`   // events per POST at most; zero means 100
	BatchWait   time.Duration `yaml:"batch_wait"`   // a batch is sent this long after its first event at the latest; zero means 200ms
	QueueSize   int           `yaml:"queue_size"`   // events waiting at most, then new ones are dropped; zero means 10 000
	Timeout     time.Duration `yaml:"timeout"`      // per POST; zero means 5s
	MaxAttempts int           `yaml:"max_attempts"` // POSTs of one batch before it is dropped; zero means 10
	RetryWait   time.Duration `yaml:"retry_wait"`   // first back-off, doubled after each failure up to 30s; zero means 500ms
}

// Event types.
const (
	evMessage = iota
	evJoin
	evLeave
	evModeration
	numEventTypes
)

var eventTypeNames = [numEventTypes]string{"message", "join", "leave", "moderation"}

// maxMentions bounds the mentions looked at in one message.
const maxMentions = 20

// webhookEvent is one event as the backend receives it.
type webhookEvent struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Room  string `json:"room"`
	At    int64  `json:"at"` // Unix milliseconds
	Epoch string `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`

	From            string            `json:"from,omitempty"`
	Name            string            `json:"name,omitempty"`
	Body            string            `json:"body,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	OfflineMentions []string          `json:"offline_mentions,omitempty"`

	User   string `json:"user,omitempty"`
	Action string `json:"action,omitempty"`
	Secs   int64  `json:"secs,omitempty"`
	Actor  string `json:"actor,omitempty"`
}

// events fans room events out to the webhooks. Static after New; nil
// when there are no webhooks (every method is then a no-op).
type events struct {
	srv   *Server
	hooks []*webhook
	wants [numEventTypes]bool // some webhook wants this type
}

// webhook is one receiver: its queue and its sender goroutine.
type webhook struct {
	cfg    Webhook
	want   [numEventTypes]bool
	queue  chan *webhookEvent
	client *http.Client
	ev     *events

	batch atomic.Int64 // events taken from queue and not yet sent or dropped

	sent, dropFull, dropFailed prometheus.Counter
	postsOK, postsFailed       prometheus.Counter
}

func newEvents(s *Server) (*events, error) {
	if len(s.cfg.Webhooks) == 0 {
		return nil, nil
	}
	e := &events{srv: s}
	for i, c := range s.cfg.Webhooks {
		w, err := newWebhook(c, e)
		if err != nil {
			return nil, fmt.Errorf("webhook %d: %w", i, err)
		}
		for t := range w.want {
			e.wants[t] = e.wants[t] || w.want[t]
		}
		e.hooks = append(e.hooks, w)
	}
	e.register(s.metrics.reg)
	return e, nil
}

func newWebhook(c Webhook, e *events) (*webhook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url must be an http or https URL, not %q", c.URL)
	}
	if c.Secret == "" {
		return nil, fmt.Errorf("a secret is required (events are signed with it)")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BatchSize, 100)
	def(&c.QueueSize, 10_000)
	def(&c.MaxAttempts, 10)
	defd(&c.BatchWait, 200*time.Millisecond)
	defd(&c.Timeout, 5*time.Second)
	defd(&c.RetryWait, 500*time.Millisecond)
	w := &webhook{cfg: c, queue: make(chan *webhookEvent, c.QueueSize), ev: e,
		client: &http.Client{Timeout: c.Timeout, Transport: newBackendTransport(c.Timeout, 2)}}
	for _, name := range c.Events {
		t := eventType(name)
		if t < 0 {
			return nil, fmt.Errorf("events: unknown %q (use message, join, leave, moderation)", name)
		}
		w.want[t] = true
	}
	if len(c.Events) == 0 {
		w.want = [numEventTypes]bool{true, true, true, true}
	}
	return w, nil
}

func eventType(name string) int {
	for i, n := range eventTypeNames {
		if n == name {
			return i
		}
	}
	return -1
}

// register adds the webhooks' collectors, labelled by the webhook's index
// in the config.
func (e *events) register(reg *prometheus.Registry) {
	ev := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_webhook_events_total",
		Help: "Webhook events by webhook (index in the config) and fate: sent, dropped_full (queue full), dropped_failed (every attempt failed)."},
		[]string{"webhook", "outcome"})
	posts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_webhook_posts_total",
		Help: "Webhook POSTs by webhook and result (ok, failed)."}, []string{"webhook", "result"})
	reg.MustRegister(ev, posts)
	for i, w := range e.hooks {
		l := strconv.Itoa(i)
		w.sent, w.dropFull, w.dropFailed = ev.WithLabelValues(l, "sent"), ev.WithLabelValues(l, "dropped_full"), ev.WithLabelValues(l, "dropped_failed")
		w.postsOK, w.postsFailed = posts.WithLabelValues(l, "ok"), posts.WithLabelValues(l, "failed")
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_webhook_backlog",
			Help: "Webhook events queued or in the batch being sent.", ConstLabels: prometheus.Labels{"webhook": l}},
			func() float64 { return float64(len(w.queue)) + float64(w.batch.Load()) }))
	}
}

// start runs each webhook's sender until quit is closed; each calls done
// when it returns.
func (e *events) start(quit <-chan struct{}, done func()) {
	if e == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-quit
		cancel()
	}()
	for _, w := range e.hooks {
		go func() {
			defer done()
			w.run(ctx)
		}()
	}
}

// senders is how many goroutines start runs.
func (e *events) senders() int {
	if e == nil {
		return 0
	}
	return len(e.hooks)
}

// message raises a message event for a sequenced message. It does nothing
// unless a webhook wants the room's messages; then it queues one event per
// such webhook without blocking. Any goroutine.
func (e *events) message(room string, seq uint64, m *shard.Message) {
	if e == nil || !e.wants[evMessage] {
		return
	}
	e.raise(evMessage, room, func() *webhookEvent {
		return &webhookEvent{Seq: seq, From: m.From, Name: m.Name, Body: m.Body, Meta: m.Meta}
	})
}

// member raises a join or leave event of a signed-in user (anonymous
// viewers raise none). Any goroutine.
func (e *events) member(typ int, room string, id *identity) {
	if e == nil || !e.wants[typ] || id == nil || id.anon {
		return
	}
	e.raise(typ, room, func() *webhookEvent { return &webhookEvent{User: id.user, Name: id.name} })
}

// closed raises the leave event of a WebSocket session that closed while
// in room (an /sse stream raises neither join nor leave). Called on the
// session's loop.
func (e *events) closed(room string, ss *session) {
	if e != nil && !ss.sse {
		e.member(evLeave, room, ss.id)
	}
}

// moderation raises a moderation event. Any goroutine.
func (e *events) moderation(req modRequest, actor string) {
	if e == nil || !e.wants[evModeration] {
		return
	}
	e.raise(evModeration, req.Room, func() *webhookEvent {
		return &webhookEvent{Action: req.Action, User: req.User, Secs: req.Secs, Seq: req.Seq, Actor: actor}
	})
}

// raise queues an event made by mk (called once, only if a webhook matches)
// on every webhook that wants typ in room.
func (e *events) raise(typ int, room string, mk func() *webhookEvent) {
	var ev *webhookEvent
	for _, w := range e.hooks {
		if !w.want[typ] || !roomAllowed(w.cfg.Rooms, room) {
			continue
		}
		if ev == nil {
			ev = mk()
			ev.Type, ev.Room, ev.At = eventTypeNames[typ], room, time.Now().UnixMilli()
		}
		cp := *ev // each sender fills in its own copy
		select {
		case w.queue <- &cp:
		default:
			w.dropFull.Inc()
		}
	}
}

// run is the webhook's sender goroutine: it gathers batches of up to
// BatchSize events, or what came within BatchWait of a batch's first one,
// and delivers them.
func (w *webhook) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []*webhookEvent
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.queue:
			batch = append(batch, ev)
			w.batch.Add(1)
			if len(batch) == 1 {
				timer.Reset(w.cfg.BatchWait)
			}
			if len(batch) < w.cfg.BatchSize {
				continue
			}
			timer.Stop()
		case <-timer.C:
		}
		if len(batch) > 0 {
			w.deliver(ctx, batch)
			batch = batch[:0:0]
		}
	}
}

// deliver POSTs one batch until it is taken, every attempt failed, or ctx
// is done (shutdown).
func (w *webhook) deliver(ctx context.Context, batch []*webhookEvent) {
	defer w.batch.Add(-int64(len(batch)))
	w.fill(batch)
	body, err := json.Marshal(map[string]any{"events": batch})
	if err != nil {
		w.dropFailed.Add(float64(len(batch)))
		return
	}
	sig := "sha256=" + sign(w.cfg.Secret, body)
	wait := w.cfg.RetryWait
	for attempt := 1; ; attempt++ {
		retry, ok := w.post(ctx, body, sig)
		if ok {
			w.postsOK.Inc()
			w.sent.Add(float64(len(batch)))
			return
		}
		w.postsFailed.Inc()
		if !retry || attempt >= w.cfg.MaxAttempts || !sleep(ctx, wait) {
			w.dropFailed.Add(float64(len(batch)))
			if attempt == 1 || attempt >= w.cfg.MaxAttempts {
				w.ev.srv.cfg.Logger.Warn("webhook batch dropped", "url", w.cfg.URL, "events", len(batch), "attempts", attempt)
			}
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// post makes one attempt: ok if the backend answered 2xx; retry unless it
// answered a 4xx other than 408 and 429 (it will not take this batch).
func (w *webhook) post(ctx context.Context, body []byte, sig string) (retry, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "roomcast")
	req.Header.Set("X-Roomcast-Signature", sig)
	resp, err := w.client.Do(req)
	if err != nil {
		return true, false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch st := resp.StatusCode; {
	case st/100 == 2:
		return false, true
	case st/100 == 4 && st != http.StatusRequestTimeout && st != http.StatusTooManyRequests:
		return false, false
	}
	return true, false
}

// sign is the hex HMAC-SHA256 of body with secret.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// sleep waits d or until ctx is done; false if ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// fill completes a batch's events before it is first sent: ids (a
// message's is room/epoch/seq, so a message raised twice has one id; the
// others a random one), epochs and offline mentions. Sender goroutine.
func (w *webhook) fill(batch []*webhookEvent) {
	epochs := map[string]string{}
	for _, ev := range batch {
		if ev.Type != eventTypeNames[evMessage] {
			ev.ID = randomID()
			continue
		}
		ep, ok := epochs[ev.Room]
		if !ok {
			if r := w.ev.srv.hub.Lookup(ev.Room); r != nil {
				ep = r.Info().Epoch
			}
			epochs[ev.Room] = ep
		}
		ev.Epoch = ep
		ev.ID = ev.Room + "/" + ep + "/" + strconv.FormatUint(ev.Seq, 10)
		ev.OfflineMentions = w.ev.srv.offline(mentions(ev.Body, ev.Meta["mentions"]))
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// mentions returns the user ids a message mentions: each "@id" of body (an
// id of letters, digits and _ . -, after the start or a space or
// punctuation) and each comma-separated id of meta "mentions", at most
// maxMentions, without repeats.
func mentions(body, meta string) []string {
	var out []string
	add := func(id string) {
		id = strings.TrimSpace(id)
		if id == "" || len(out) >= maxMentions {
			return
		}
		for _, o := range out {
			if o == id {
				return
			}
		}
		out = append(out, id)
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '@' || i > 0 && idByte(body[i-1]) {
			continue
		}
		j := i + 1
		for j < len(body) && idByte(body[j]) {
			j++
		}
		add(strings.TrimRight(body[i+1:j], ".")) // "@ann." ends a sentence
		i = j - 1
	}
	for id := range strings.SplitSeq(meta, ",") {
		add(id)
	}
	return out
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// offline returns the users of ids with no connection to this relay.
// Any goroutine.
func (s *Server) offline(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	var out []string
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	for _, id := range ids {
		if !s.users.has(id) {
			out = append(out, id)
		}
	}
	return out
}
