package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Progress is the state of a run at one moment; Run reports it about once
// a second, and the Report keeps them as its timeline.
type Progress struct {
	Elapsed          float64 `json:"t"`     // seconds since Run started
	Phase            string  `json:"phase"` // connecting, warm-up, window, draining
	Connections      int64   `json:"connections"`
	Failed           int64   `json:"failed"` // connections that could not connect or join, so far
	SentPerSec       float64 `json:"sent_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	P99              float64 `json:"p99_ms"`        // delivery latency over the last tick, sampled members; 0 if none
	Lost             int64   `json:"lost"`          // gaps seen so far (the tail is counted at the end)
	MachineCores     float64 `json:"machine_cores"` // busy CPU of the whole machine since the previous tick
	RelayRSSMB       float64 `json:"relay_rss_mb,omitempty"`
}

// Phases of a run, as Progress.Phase.
const (
	PhaseConnecting = "connecting"
	PhaseWarmUp     = "warm-up"
	PhaseWindow     = "window"
	PhaseDraining   = "draining"
)

// Run performs one load test against a relay and returns its report.
// progress, if not nil, is called from Run's goroutine about once a second.
// Cancelling ctx ends the run early: the report then covers what ran.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		if cfg.HookListener != nil {
			cfg.HookListener.Close()
		}
		return nil, err
	}
	c := newCoordinator(cfg, progress)
	defer c.close()
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	if err := c.loop(ctx); err != nil {
		return nil, err
	}
	return c.report(), nil
}

// coordinator drives the workers through the phases of phases.go and
// merges what they report. Owned by Run's goroutine, except events and
// quit, which the workers' goroutines use.
type coordinator struct {
	cfg        Config
	plan       plan
	onProgress func(Progress)
	handles    []*handle
	events     chan event
	quit       chan struct{}

	started  time.Time
	goAt     time.Time
	stopped  bool
	warnings []string

	latest   []counts // each worker's last progress
	prev     counts   // sum at the previous tick
	prevAt   time.Time
	prevBusy float64 // machineCPU at the previous tick
	interval *hdrhistogram.Histogram
	timeline []Progress

	ready, acked, finished int
	acks                   []uint64
	results                []*workerResult

	hook *hookBackend // with Config.HookBackend or HookListener

	base, winStart, winEnd *relaySample
	winStartC, winEndC     <-chan time.Time

	// Connect-phase cost (phases.go): the relay sampled when every worker
	// is ready, and around the storm's reconnects.
	connected, stormStart, stormEnd *relaySample
	stormStartC                     <-chan time.Time
	reconnected                     int
}

func newCoordinator(cfg Config, progress func(Progress)) *coordinator {
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	runID := hex.EncodeToString(id)
	prefix := cfg.RoomPrefix
	if prefix == "" {
		prefix = cfg.Scenario + ":" + runID + "-"
	}
	return &coordinator{
		cfg: cfg, plan: plan{Config: cfg, Workers: cfg.Procs, RunID: runID, Prefix: prefix},
		onProgress: progress, events: make(chan event, 64), quit: make(chan struct{}),
		latest: make([]counts, cfg.Procs), results: make([]*workerResult, cfg.Procs), interval: newHist(),
	}
}

// start samples the relay and starts the workers.
func (c *coordinator) start(ctx context.Context) error {
	c.started = time.Now()
	c.prevAt = c.started
	c.base = c.sample(ctx)
	if c.cfg.HookListener != nil || c.cfg.HookBackend != "" {
		h, err := startHookBackend(c.cfg.HookListener, c.cfg.HookBackend, c.cfg.HookDelay)
		if err != nil {
			return fmt.Errorf("cannot start the hook backend: %w", err)
		}
		c.hook = h
	}
	for i := 0; i < c.cfg.Procs; i++ {
		p := c.plan
		p.Worker = i
		h, err := c.startWorker(ctx, p)
		if err != nil {
			return fmt.Errorf("cannot start worker %d: %w", i, err)
		}
		c.handles = append(c.handles, h)
	}
	return nil
}

func (c *coordinator) startWorker(ctx context.Context, p plan) (*handle, error) {
	if c.cfg.Procs == 1 {
		return startLocal(ctx, p, c.post), nil
	}
	return startProc(p, c.post)
}

// post hands an event to the coordinator; workers call it.
func (c *coordinator) post(ev event) {
	select {
	case c.events <- ev:
	case <-c.quit:
	}
}

// close ends every worker that is still running.
func (c *coordinator) close() {
	close(c.quit)
	for _, h := range c.handles {
		h.close()
	}
	if c.hook != nil {
		c.hook.close()
	}
}

// stopGrace bounds how long a stopped run may take to wind down.
const stopGrace = 30 * time.Second

func (c *coordinator) loop(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := ctx.Done()
	var grace <-chan time.Time
	for c.finished < len(c.handles) {
		select {
		case ev := <-c.events:
			if err := c.handle(ctx, ev); err != nil {
				return err
			}
		case now := <-tick.C:
			c.tick(now)
		case <-c.winStartC:
			c.winStart, c.winStartC = c.sample(ctx), nil
		case <-c.winEndC:
			c.winEnd, c.winEndC = c.sample(context.WithoutCancel(ctx)), nil
		case <-c.stormStartC:
			c.stormStart, c.stormStartC = c.sample(ctx), nil
		case <-done:
			c.stopped, done, grace = true, nil, time.After(stopGrace)
			c.broadcast(command{Kind: cmdStop})
		case <-grace:
			return errors.New("bench: workers did not stop in time")
		}
	}
	return nil
}

func (c *coordinator) handle(ctx context.Context, ev event) error {
	switch ev.Kind {
	case evProgress:
		c.latest[ev.Worker] = ev.Progress.Counts
		ev.Progress.Interval.mergeInto(c.interval)
	case evReady:
		if c.ready++; c.ready == len(c.handles) {
			c.connected = c.sample(ctx)
			c.sendGo()
		}
	case evReconnected:
		if c.reconnected++; c.reconnected == len(c.handles) && c.stormStart != nil {
			c.stormEnd = c.sample(ctx)
		}
	case evAcks:
		c.mergeAcks(ev.Acks)
		if c.acked++; c.acked == len(c.handles) {
			if c.winEnd == nil {
				c.winEnd, c.winEndC = c.sample(context.WithoutCancel(ctx)), nil
			}
			c.broadcast(command{Kind: cmdDrain, Acks: c.acks})
		}
	case evResult:
		c.results[ev.Worker] = ev.Result
		c.finished++
	case evError:
		return fmt.Errorf("bench: worker %d: %s", ev.Worker, ev.Error)
	}
	return nil
}

// sendGo starts publishing everywhere at one moment, shortly ahead.
func (c *coordinator) sendGo() {
	c.goAt = time.Now().Add(100 * time.Millisecond)
	start := c.goAt.Add(c.cfg.WarmUp)
	c.winStartC = time.After(time.Until(start))
	c.winEndC = time.After(time.Until(start.Add(c.cfg.Duration)))
	if c.cfg.Scenario == Storm {
		c.stormStartC = time.After(time.Until(stormAt(start, c.cfg.Duration)))
	}
	c.broadcast(command{Kind: cmdGo, At: c.goAt.UnixNano()})
}

func (c *coordinator) mergeAcks(acks []uint64) {
	if c.acks == nil {
		c.acks = make([]uint64, len(acks))
	}
	for i, a := range acks {
		if i < len(c.acks) {
			c.acks[i] = max(c.acks[i], a)
		}
	}
}

func (c *coordinator) broadcast(cmd command) {
	for _, h := range c.handles {
		h.send(cmd)
	}
}

// sample reads the relay; a failure becomes a warning, once.
func (c *coordinator) sample(ctx context.Context) *relaySample {
	s, err := sampleRelay(ctx, &c.cfg)
	if err != nil && len(c.warnings) < 8 {
		c.warnings = append(c.warnings, err.Error())
	}
	return s
}

// tick reports progress: sums of the workers' last counts, rates against
// the previous tick, and the p99 of the latencies that came in since.
func (c *coordinator) tick(now time.Time) {
	var sum counts
	for _, l := range c.latest {
		sum.add(l)
	}
	dt := now.Sub(c.prevAt).Seconds()
	p := Progress{
		Elapsed:          now.Sub(c.started).Seconds(),
		Phase:            c.phase(now),
		Connections:      sum[cOpen],
		Failed:           sum[cDialFailed] + sum[cJoinFailed],
		SentPerSec:       float64(sum[cSent]-c.prev[cSent]) / dt,
		DeliveriesPerSec: float64(sum[cDeliveries]-c.prev[cDeliveries]) / dt,
		P99:              float64(c.interval.ValueAtQuantile(99)) / 1000,
		Lost:             sum[cLost],
	}
	busy, _ := machineCPU()
	if c.prevBusy > 0 {
		p.MachineCores = (busy - c.prevBusy) / dt
	}
	c.prevBusy = busy
	if c.cfg.RelayPID > 0 {
		if rss, err := vmRSS(c.cfg.RelayPID); err == nil {
			p.RelayRSSMB = float64(rss) / (1 << 20)
		}
	}
	c.interval.Reset()
	c.prev, c.prevAt = sum, now
	c.timeline = append(c.timeline, p)
	if c.onProgress != nil {
		c.onProgress(p)
	}
}

func (c *coordinator) phase(now time.Time) string {
	switch {
	case c.goAt.IsZero():
		return PhaseConnecting
	case now.Before(c.goAt.Add(c.cfg.WarmUp)):
		return PhaseWarmUp
	case now.Before(c.goAt.Add(c.cfg.WarmUp + c.cfg.Duration)):
		return PhaseWindow
	}
	return PhaseDraining
}
