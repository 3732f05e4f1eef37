package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

// plan is what one worker is told: the whole Config and its share of it.
type plan struct {
	Config  Config `json:"config"`
	Worker  int    `json:"worker"`  // this worker's index
	Workers int    `json:"workers"` // how many there are
	RunID   string `json:"run_id"`
	Prefix  string `json:"prefix"` // of room names
}

// worker holds one process's share of the connections and drives them
// through the phases: connect, run (publish, storm), drain, teardown.
type worker struct {
	// Static after newWorker.
	cfg     Config
	p       plan
	lay     *layout
	mine    []*member
	urls    []string        // the relays
	nodes   []*stats        // by relay: what the connections to it measured
	maxAck  []atomic.Uint64 // highest acknowledged seq, by room index
	body    string
	secret  []byte
	dialers []*net.Dialer // by source address; empty means the default

	winStart, winEnd atomic.Int64  // the window, Unix ns; zero until go
	stopRead         chan struct{} // closed at teardown; stalled readers go on

	helloOnce sync.Once
	sendLimit float64 // publishers' hello.limits.rate, set once by helloOnce

	// Owned by the worker goroutine (storm times: by the storm goroutine
	// until run returns).
	phases  phaseTimes
	cpu0    float64 // process CPU seconds when the window opened
	cpu1    float64 // ... and when it closed
	rt0     runtimeSample
	rt1     runtimeSample
	drained []bool // by mine index: live and reading when the drain ended
}

// phaseTimes are wall times of a worker's phases, Unix ns.
type phaseTimes struct {
	ConnectStart   int64 `json:"connect_start"`
	ConnectEnd     int64 `json:"connect_end"`
	ReconnectStart int64 `json:"reconnect_start,omitempty"`
	ReconnectEnd   int64 `json:"reconnect_end,omitempty"`
}

func newWorker(p plan) (*worker, error) {
	cfg := p.Config
	w := &worker{cfg: cfg, p: p, urls: cfg.urls(), stopRead: make(chan struct{}), secret: []byte(cfg.JWTSecret)}
	for range w.urls {
		w.nodes = append(w.nodes, newStats())
	}
	w.lay = newLayout(&cfg, p.Prefix)
	w.maxAck = make([]atomic.Uint64, len(w.lay.rooms))
	w.body = filler(cfg.MessageSize)
	for _, src := range cfg.Sources {
		ip := net.ParseIP(strings.TrimSpace(src))
		if ip == nil {
			return nil, fmt.Errorf("bench: bad source address %q", src)
		}
		w.dialers = append(w.dialers, &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Control: bindNoPort})
	}
	for i := p.Worker; i < len(w.lay.members); i += p.Workers {
		m, err := w.newMember(i)
		if err != nil {
			return nil, err
		}
		w.mine = append(w.mine, m)
	}
	return w, nil
}

// newMember prepares connection i, its token minted ahead so that signing
// is not part of the measured handshakes (real clients come with theirs).
func (w *worker) newMember(i int) (*member, error) {
	spec := w.lay.members[i]
	node := w.cfg.nodeOf(i)
	m := &member{w: w, idx: i, node: node, st: w.nodes[node], spec: spec, rng: uint32(i)*2654435761 | 1}
	kind := "u"
	if spec.publisher {
		kind = "p"
		m.acks = make([]ackSlot, 64)
	}
	m.user = fmt.Sprintf("%s-%s%d", w.p.RunID, kind, i)
	if spec.room >= 0 {
		m.room = w.lay.rooms[spec.room]
	}
	tok, err := w.token(m)
	if err != nil {
		return nil, err
	}
	m.url = w.urls[node]
	if tok != "" {
		sep := "?"
		if strings.Contains(m.url, "?") {
			sep = "&"
		}
		m.url += sep + "token=" + tok
	}
	return m, nil
}

// filler returns n bytes of chat-like ASCII text.
func filler(n int) string {
	const text = "gg wp, that was close! anyone up for another round? "
	return strings.Repeat(text, n/len(text)+1)[:n]
}

func (w *worker) inWindow(ns int64) bool {
	s := w.winStart.Load()
	return s != 0 && ns >= s && ns < w.winEnd.Load()
}

func (w *worker) noteAck(room int, seq uint64) {
	a := &w.maxAck[room]
	for {
		cur := a.Load()
		if seq <= cur || a.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (w *worker) noteHello(p []byte) {
	w.helloOnce.Do(func() {
		var h proto.Hello
		if msgpack.Unmarshal(p, &h) == nil {
			w.sendLimit = h.Limits.Rate
		}
	})
}

func (w *worker) acks() []uint64 {
	out := make([]uint64, len(w.maxAck))
	for i := range w.maxAck {
		out[i] = w.maxAck[i].Load()
	}
	return out
}

// dial opens one WebSocket connection for m.
func (w *worker) dial(ctx context.Context, m *member) (net.Conn, *bufio.Reader, error) {
	d := ws.Dialer{Timeout: w.cfg.DialTimeout, Protocols: []string{proto.SubprotocolMsgpack}}
	if len(w.dialers) > 0 {
		d.NetDial = w.dialers[m.idx%len(w.dialers)].DialContext
	}
	if w.cfg.Compress {
		d.Extensions = deflateOffer
	}
	conn, br, hs, err := d.Dial(ctx, m.url)
	if err != nil {
		return nil, nil, err
	}
	if w.cfg.Compress && !negotiated(hs.Extensions) {
		_ = conn.Close()
		return nil, nil, errNoDeflate
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 4096)
	}
	return conn, br, nil
}

// token mints m's HS256 token, or returns "" for an anonymous connection.
func (w *worker) token(m *member) (string, error) {
	role := w.cfg.ReaderRole
	if m.spec.publisher {
		role = w.cfg.PublisherRole
	}
	if len(w.secret) == 0 || role == "anon" {
		return "", nil
	}
	claims := jwt.MapClaims{"sub": m.user, "name": m.user, "role": role, "exp": time.Now().Add(24 * time.Hour).Unix()}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(w.secret)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return tok, nil
}

// connectAll connects ms, at most DialConcurrency at once and, if ramp,
// at the worker's share of RampRate.
func (w *worker) connectAll(ctx context.Context, ms []*member, resume, ramp bool) {
	rate := 0.0
	if ramp {
		rate = w.cfg.RampRate / float64(w.p.Workers)
	}
	sem := make(chan struct{}, w.cfg.DialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i, m := range ms {
		if rate > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(i)/rate*float64(time.Second)))) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.connectOne(ctx, m, resume)
		}()
	}
	wg.Wait()
}

func (w *worker) connectOne(ctx context.Context, m *member, resume bool) {
	err := m.connect(ctx, resume)
	switch {
	case resume && err == nil:
		m.st.inc(cReconnected)
	case resume:
		m.st.inc(cReconnectFailed)
	}
}

// sleepUntil sleeps until t; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// forEach runs fn for every member of ms, n at a time, and waits.
func forEach(ms []*member, n int, fn func(*member)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, m := range ms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(m)
		}()
	}
	wg.Wait()
}
