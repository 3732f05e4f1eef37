package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// This file is the bench's publish hook backend (Config.HookBackend): a
// local HTTP server that answers the relay's publish hook {"allow": true}
// after Config.HookDelay, so that a run measures what a hook adds to
// publish-to-delivery latency. The operator points a namespace's
// publish_hook.url at it. It runs in the coordinator's process; its handler
// goroutines (net/http's) count calls and record answer times.

// HookStats are the hook backend's side of a run (Report.Hook).
type HookStats struct {
	URL     string  `json:"url"`      // where it listened
	DelayMS float64 `json:"delay_ms"` // the wait before each answer
	Calls   int64   `json:"calls"`    // hook requests answered, the whole run
	Bad     int64   `json:"bad"`      // requests that were not a POST of the hook's JSON (answered 400)
	Answer  Latency `json:"answer_ms"`
	// Answer is request read to answer written, in the backend: the delay
	// plus the backend's own time. The relay's round trip adds the HTTP
	// exchange (see roomcast_publish_hook_seconds).
}

// hookBackend is the running backend. Its fields are set before Serve and
// then read only, except the counters and the histogram, which the
// handler goroutines update.
type hookBackend struct {
	url   string
	delay time.Duration
	srv   *http.Server
	done  chan struct{} // closed when Serve returned

	calls, bad atomic.Int64
	answer     *lockedHist
}

// hookAllow is the answer: every message passes unchanged.
var hookAllow = []byte(`{"allow": true}`)

// startHookBackend serves the hook on ln (or on a new listener on addr if
// ln is nil).
func startHookBackend(ln net.Listener, addr string, delay time.Duration) (*hookBackend, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	b := &hookBackend{url: "http://" + ln.Addr().String() + "/", delay: delay, done: make(chan struct{}), answer: newLockedHist()}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serveHTTP), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute}
	go func() {
		defer close(b.done)
		// ErrServerClosed after close; an accept failure shows in the run
		// as sends the relay refuses (on_error deny) and in calls.
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

// serveHTTP answers one hook call. Handler goroutines call it.
func (b *hookBackend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req struct {
		Room *string `json:"room"`
		Body *string `json:"body"`
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	if r.Method != http.MethodPost || err != nil || req.Room == nil || req.Body == nil {
		b.bad.Add(1)
		http.Error(w, "want a POST of the publish hook's JSON", http.StatusBadRequest)
		return
	}
	if b.delay > 0 {
		time.Sleep(b.delay)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(hookAllow)
	b.calls.Add(1)
	b.answer.record(time.Since(start).Microseconds())
}

// close stops the backend, waiting a little for calls in flight.
func (b *hookBackend) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	<-b.done
}

// stats are the backend's figures so far.
func (b *hookBackend) stats() *HookStats {
	h := newHist()
	b.answer.export().mergeInto(h)
	return &HookStats{URL: b.url, DelayMS: float64(b.delay) / float64(time.Millisecond),
		Calls: b.calls.Load(), Bad: b.bad.Load(), Answer: summarize(h)}
}
