package bench

import (
	"context"
	"sync"
	"time"
)

// Between the coordinator (Run) and a worker, in this order:
//
//	coordinator                       worker
//	plan                           ->
//	                               <- progress (every second, until result)
//	                               <- ready    (every connection tried)
//	go {at}                        ->
//	                               <- reconnected (storm only: every member back)
//	                               <- acks     (publishing stopped: highest seq acked per room)
//	drain {acks of all workers}    ->
//	                               <- result
//
// stop ends the current phase early; the worker still answers every later
// step. A worker process exchanges these as JSON lines (ServeWorker).

// Event kinds, worker to coordinator.
const (
	evProgress    = "progress"
	evReady       = "ready"
	evReconnected = "reconnected" // storm: this worker's members are all back (or given up)
	evAcks        = "acks"
	evResult      = "result"
	evError       = "error"
)

// Command kinds, coordinator to worker.
const (
	cmdGo    = "go"
	cmdDrain = "drain"
	cmdStop  = "stop"
)

type event struct {
	Kind     string        `json:"kind"`
	Worker   int           `json:"worker"`
	Progress *progressData `json:"progress,omitempty"`
	Acks     []uint64      `json:"acks,omitempty"`
	Result   *workerResult `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"`
}

type command struct {
	Kind string   `json:"kind"`
	At   int64    `json:"at,omitempty"`   // go: when publishing starts, Unix ns
	Acks []uint64 `json:"acks,omitempty"` // drain: highest acked seq per room, all workers
}

// progressData is a worker's state at one tick.
type progressData struct {
	At       int64    `json:"at"` // Unix ns
	Counts   counts   `json:"counts"`
	Interval histData `json:"interval"` // latencies since the previous tick
}

// workerResult is all a worker measured: the sums over the relays
// (nodeResult, inline) and, by relay, Nodes.
type workerResult struct {
	nodeResult
	Nodes     []nodeResult `json:"nodes"`
	Phases    phaseTimes   `json:"phases"`
	CPU       float64      `json:"cpu"`        // process CPU seconds, all of the run
	CPUSys    float64      `json:"cpu_sys"`    // ... of which in the kernel
	CPUWindow float64      `json:"cpu_window"` // ... inside the window
	MaxRSS    int64        `json:"max_rss"`    // bytes
	SendLimit float64      `json:"send_limit"` // publishers' hello.limits.rate
	Runtime   RuntimeStats `json:"runtime"`    // inside the window
}

// nodeResult is what the connections to one relay (or to all) measured.
type nodeResult struct {
	Counts      counts           `json:"counts"`
	Errors      map[string]int64 `json:"errors"`
	Closes      map[string]int64 `json:"closes"`
	DialErrors  map[string]int64 `json:"dial_errors"`
	Latency     histData         `json:"latency"`
	Handshake   histData         `json:"handshake"`
	Join        histData         `json:"join"`
	Ack         histData         `json:"ack"`
	ReHandshake histData         `json:"re_handshake"`
	ReJoin      histData         `json:"re_join"`
}

func (s *stats) result() nodeResult {
	errs, closes, dials := s.copyMaps()
	return nodeResult{Counts: s.snapshot(), Errors: errs, Closes: closes, DialErrors: dials,
		Latency: s.latency.total(), Handshake: s.handshake.export(), Join: s.join.export(),
		Ack: s.ack.export(), ReHandshake: s.reHandshake.export(), ReJoin: s.reJoin.export()}
}

// sumResults adds up results (of several relays, or several workers).
func sumResults(rs []nodeResult) nodeResult {
	if len(rs) == 1 {
		return rs[0]
	}
	out := nodeResult{Errors: map[string]int64{}, Closes: map[string]int64{}, DialErrors: map[string]int64{}}
	hs := make([][]histData, 6)
	for _, r := range rs {
		out.Counts.add(r.Counts)
		mergeMap(out.Errors, r.Errors)
		mergeMap(out.Closes, r.Closes)
		mergeMap(out.DialErrors, r.DialErrors)
		for i, h := range []histData{r.Latency, r.Handshake, r.Join, r.Ack, r.ReHandshake, r.ReJoin} {
			hs[i] = append(hs[i], h)
		}
	}
	out.Latency, out.Handshake, out.Join = mergeHistData(hs[0]), mergeHistData(hs[1]), mergeHistData(hs[2])
	out.Ack, out.ReHandshake, out.ReJoin = mergeHistData(hs[3]), mergeHistData(hs[4]), mergeHistData(hs[5])
	return out
}

// runWorker is one worker's whole life. emit may be called from several
// goroutines. cmds ends (is closed) when the coordinator is gone.
func runWorker(ctx context.Context, p plan, cmds <-chan command, emit func(event)) {
	w, err := newWorker(p)
	if err != nil {
		emit(event{Kind: evError, Error: err.Error()})
		return
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	goCh, drainCh := listen(cmds, stop, abort)
	stopProgress := w.progress(emit)
	defer stopProgress()

	w.phases.ConnectStart = time.Now().UnixNano()
	w.connectAll(runCtx, w.mine, false, true)
	w.phases.ConnectEnd = time.Now().UnixNano()
	emit(event{Kind: evReady})
	var c command
	if c, err = await(ctx, goCh); err != nil {
		w.teardown()
		return
	}
	w.run(runCtx, time.Unix(0, c.At), emit)
	w.awaitAcks(runCtx)
	emit(event{Kind: evAcks, Acks: w.acks()})
	if c, err = await(ctx, drainCh); err != nil {
		w.teardown()
		return
	}
	w.drain(ctx, c.Acks)
	w.teardown()
	w.tail(c.Acks)
	stopProgress()
	emit(event{Kind: evResult, Result: w.result()})
}

// listen sorts the commands: go and drain to their channels; stop ends the
// current phase; the end of cmds aborts the worker.
func listen(cmds <-chan command, stop, abort func()) (goCh, drainCh chan command) {
	goCh, drainCh = make(chan command, 1), make(chan command, 1)
	go func() {
		defer abort()
		for c := range cmds {
			switch c.Kind {
			case cmdGo:
				goCh <- c
			case cmdDrain:
				drainCh <- c
			case cmdStop:
				stop()
			}
		}
	}()
	return goCh, drainCh
}

func await(ctx context.Context, ch chan command) (command, error) {
	select {
	case c := <-ch:
		return c, nil
	case <-ctx.Done():
		return command{}, ctx.Err()
	}
}

// progress emits the worker's counters every second until the returned
// function is called (more than once is fine).
func (w *worker) progress(emit func(event)) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				emit(event{Kind: evProgress, Progress: w.progressAt(now)})
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// run publishes from at until the window closes, and storms if asked
// (then emits reconnected when the storm's members are back).
func (w *worker) run(ctx context.Context, at time.Time, emit func(event)) {
	start := at.Add(w.cfg.WarmUp)
	end := start.Add(w.cfg.Duration)
	w.winEnd.Store(end.UnixNano())
	w.winStart.Store(start.UnixNano())
	pubCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	w.startPublishers(pubCtx, &wg, at, end)
	if w.cfg.Scenario == Storm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w.storm(pubCtx, stormAt(start, w.cfg.Duration)) {
				emit(event{Kind: evReconnected})
			}
		}()
	}
	if sleepUntil(ctx, start) {
		w.cpu0, w.rt0 = cpuSeconds(), readRuntime()
	}
	sleepUntil(ctx, end)
	w.cpu1, w.rt1 = cpuSeconds(), readRuntime()
	wg.Wait()
}

// startPublishers starts one goroutine per connected publisher.
func (w *worker) startPublishers(ctx context.Context, wg *sync.WaitGroup, at, end time.Time) {
	if !w.cfg.publishing() {
		return
	}
	every := time.Duration(float64(time.Second) * float64(w.cfg.Publishers) / w.cfg.Rate)
	for _, m := range w.mine {
		if m.spec.publisher && m.live.Load() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.publishLoop(ctx, at, end, every)
			}()
		}
	}
}

// lateAfter is how far behind schedule a send counts as late.
const lateAfter = 10 * time.Millisecond

// publishLoop sends on a fixed schedule (open loop: it never waits for an
// ack), starting at a random phase so publishers do not send in step.
func (m *member) publishLoop(ctx context.Context, at, end time.Time, every time.Duration) {
	st := m.st
	next := at.Add(time.Duration(unit(m.w.cfg.Seed+3, uint64(m.idx)) * float64(every)))
	for next.Before(end) {
		if !sleepUntil(ctx, next) {
			return
		}
		now := time.Now()
		if now.Sub(next) > lateAfter {
			st.inc(cLate)
		}
		if err := m.publish(now); err != nil {
			st.inc(cSendFailed)
			return
		}
		st.inc(cSent)
		if m.w.inWindow(now.UnixNano()) {
			st.inc(cSentWindow)
		}
		next = next.Add(every)
	}
}

// stormAt is when the storm starts: a third into the window.
func stormAt(winStart time.Time, d time.Duration) time.Time { return winStart.Add(d / 3) }

// storm closes every reading member of this worker at once, then brings
// them all back as fast as possible, each resuming with since. It reports
// whether it ran.
func (w *worker) storm(ctx context.Context, at time.Time) bool {
	if !sleepUntil(ctx, at) {
		return false
	}
	var readers []*member
	for _, m := range w.mine {
		if !m.spec.publisher && !m.spec.stall && m.live.Load() {
			readers = append(readers, m)
		}
	}
	w.phases.ReconnectStart = time.Now().UnixNano()
	forEach(readers, 4*w.cfg.DialConcurrency, func(m *member) { m.close(time.Second) })
	w.connectAll(ctx, readers, true, false)
	w.phases.ReconnectEnd = time.Now().UnixNano()
	return true
}

// awaitAcks waits until every send of this worker was answered (ack or
// error), or DrainTimeout passes, so that the acks it reports, which the
// loss check and the drain go by, cover the messages sent last too: in a
// cluster acks come after a JetStream round trip, and members on other
// relays get the message after it. Without this wait the last messages
// were neither waited for nor counted as lost.
func (w *worker) awaitAcks(ctx context.Context) {
	deadline := time.Now().Add(w.cfg.DrainTimeout)
	for time.Now().Before(deadline) {
		var sent, answered int64
		for _, st := range w.nodes {
			c := st.snapshot()
			sent, answered = sent+c[cSent], answered+c[cAcked]
			errs, _, _ := st.copyMaps()
			for _, n := range errs {
				answered += n
			}
		}
		if answered >= sent || !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return
		}
	}
}

// drain waits until every live, reading member has every message acked in
// its room, or DrainTimeout passes; then it notes who was live.
func (w *worker) drain(ctx context.Context, acks []uint64) {
	deadline := time.Now().Add(w.cfg.DrainTimeout)
	for !w.caughtUp(acks) && time.Now().Before(deadline) {
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			break
		}
	}
	w.drained = make([]bool, len(w.mine))
	for i, m := range w.mine {
		w.drained[i] = m.reading()
	}
}

func (m *member) reading() bool {
	return m.spec.room >= 0 && m.live.Load() && !m.dropped.Load() && !m.spec.stall
}

func (w *worker) caughtUp(acks []uint64) bool {
	for _, m := range w.mine {
		if m.reading() && m.spec.room < len(acks) && m.last.Load() < acks[m.spec.room] {
			return false
		}
	}
	return true
}

// teardown closes every connection and waits for the readers.
func (w *worker) teardown() {
	close(w.stopRead)
	forEach(w.mine, 256, func(m *member) { m.close(time.Second) })
}

// tail counts, once the readers are gone, the acknowledged messages that
// members which stayed never received, and the members with any loss.
func (w *worker) tail(acks []uint64) {
	for i, m := range w.mine {
		lost := m.track.lost
		if w.drained[i] && m.spec.room < len(acks) && acks[m.spec.room] > m.track.last() {
			missing := int64(acks[m.spec.room] - m.track.last())
			m.st.add(cLost, missing)
			lost += missing
		}
		if lost > 0 {
			m.st.inc(cLossMembers)
		}
	}
}

// progressAt is the worker's state now: its counters summed over the
// relays, and the latencies since the previous call.
func (w *worker) progressAt(now time.Time) *progressData {
	p := &progressData{At: now.UnixNano()}
	ivs := make([]histData, len(w.nodes))
	for i, st := range w.nodes {
		p.Counts.add(st.snapshot())
		ivs[i] = st.latency.takeInterval()
	}
	p.Interval = mergeHistData(ivs)
	return p
}

func (w *worker) result() *workerResult {
	user, sys := cpuTimes()
	r := &workerResult{Phases: w.phases, CPU: user + sys, CPUSys: sys, CPUWindow: w.windowCPU(), MaxRSS: maxRSS(),
		SendLimit: w.sendLimit, Runtime: runtimeStats(w.rt0, w.rt1)}
	for _, st := range w.nodes {
		r.Nodes = append(r.Nodes, st.result())
	}
	r.nodeResult = sumResults(r.Nodes)
	return r
}

func (w *worker) windowCPU() float64 {
	if w.cpu0 == 0 {
		return 0
	}
	return max(w.cpu1-w.cpu0, 0)
}
