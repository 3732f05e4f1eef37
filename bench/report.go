package bench

import (
	"fmt"
	"math"
	"runtime"
	"time"
)

// SchemaVersion names the layout of Report's JSON; it changes only when a
// field changes meaning or goes away (new fields may be added).
const SchemaVersion = "roomcast-bench/v1"

// Report is the result of one run. Its JSON form is the stable schema
// documented in BENCHMARKS.md. Latencies are in milliseconds; "window"
// figures count what happened inside the measured window only.
type Report struct {
	Schema        string    `json:"schema"`
	Scenario      string    `json:"scenario"`
	URL           string    `json:"url"`
	RunID         string    `json:"run_id"`
	Started       time.Time `json:"started"`
	Config        Config    `json:"config"` // with every default filled in; the JWT secret is never written
	WindowSeconds float64   `json:"window_seconds"`
	Stopped       bool      `json:"stopped"` // ended early by the caller

	Connections ConnStats        `json:"connections"`
	Handshake   Latency          `json:"handshake_ms"` // TCP connect and WebSocket upgrade
	Join        Latency          `json:"join_ms"`      // join sent to joined received
	Messages    MessageStats     `json:"messages"`
	Ack         Latency          `json:"ack_ms"` // send to ack, sends inside the window
	Deliveries  DeliveryStats    `json:"deliveries"`
	Latency     Latency          `json:"latency_ms"` // send to delivery, sampled members, sends inside the window
	Loss        LossStats        `json:"loss"`
	Errors      map[string]int64 `json:"errors"`      // error frames received, by code
	CloseCodes  map[string]int64 `json:"close_codes"` // closes the bench did not ask for, by code ("eof": no close frame)
	Storm       *StormStats      `json:"storm,omitempty"`
	Drift       *DriftStats      `json:"drift,omitempty"` // windows of 20 s or more
	Client      ClientStats      `json:"client"`
	Server      *ServerStats     `json:"server,omitempty"` // with several relays: sums over them (latency quantiles over all)
	Nodes       []NodeStats      `json:"nodes,omitempty"`  // by relay, with several relays (Config.URL a list)
	Hook        *HookStats       `json:"hook,omitempty"`   // the bench's publish hook backend (Config.HookBackend) only
	Timeline    []Progress       `json:"timeline"`
	Warnings    []string         `json:"warnings"`
}

// ConnStats are the connections of the first connect phase.
type ConnStats struct {
	Target         int              `json:"target"`
	Connected      int64            `json:"connected"`   // reached hello
	Failed         int64            `json:"failed"`      // did not reach hello
	JoinFailed     int64            `json:"join_failed"` // connected but not joined
	Dropped        int64            `json:"dropped"`     // ended by the relay or the network while the bench held them
	ConnectSeconds float64          `json:"connect_seconds"`
	PerSec         float64          `json:"per_sec"` // connected / connect_seconds
	DialErrors     map[string]int64 `json:"dial_errors"`
	// RelayCPUPerHandshakeUS is the relay's CPU over the connect phase
	// (Δ process_cpu_seconds_total from before the workers start to every
	// worker ready) ÷ the handshakes it made then (Δ
	// roomcast_handshakes_total), in microseconds: each handshake with its
	// token check and joins. 0 without a metrics URL. A relay in the
	// bench's own process counts the bench's CPU too.
	RelayCPUPerHandshakeUS float64 `json:"relay_cpu_us_per_handshake"`
}

// MessageStats are the publishers' side.
type MessageStats struct {
	Publishers int     `json:"publishers"`
	Rate       float64 `json:"rate"` // the rate asked for, messages per second
	Size       int     `json:"size"` // body bytes
	Sent       int64   `json:"sent"`
	SentWindow int64   `json:"sent_window"`
	PerSec     float64 `json:"per_sec"` // sent_window / window_seconds
	Acked      int64   `json:"acked"`
	SendFailed int64   `json:"send_failed"`
	Late       int64   `json:"late"` // sent more than 10 ms behind schedule: the bench could not keep up
}

// DeliveryStats count messages members received in batches (new ones only).
type DeliveryStats struct {
	Total          int64   `json:"total"` // the whole run
	Window         int64   `json:"window"`
	PerSec         float64 `json:"per_sec"`         // window / window_seconds
	Frames         int64   `json:"frames"`          // batch frames received, the whole run
	PresenceFrames int64   `json:"presence_frames"` // presence frames received, the whole run
	MsgsPerFrame   float64 `json:"msgs_per_frame"`
	SampledMembers int     `json:"sampled_members"`

	WireBytes                int64   `json:"wire_bytes"`                            // server data frames received inside the window, headers included (compress.go)
	WireBytesPerDelivery     float64 `json:"wire_bytes_per_delivery"`               // wire_bytes / window
	InflatedBytes            int64   `json:"inflated_bytes,omitempty"`              // with compress: the same messages inflated (headers not included)
	InflatedBytesPerDelivery float64 `json:"inflated_bytes_per_delivery,omitempty"` // inflated_bytes / window
}

// LossStats are the failures of the relay's delivery guarantee.
type LossStats struct {
	Lost            int64 `json:"lost"`              // acknowledged messages that a member which stayed joined never got
	MembersWithLoss int64 `json:"members_with_loss"` //
	Duplicates      int64 `json:"duplicates"`        // messages a member got twice
	GapMsgs         int64 `json:"gap_msgs"`          // messages a resuming join reported as aged out (joined.gap); not loss
	BadFrames       int64 `json:"bad_frames"`        // server frames that did not parse
	BadMessages     int64 `json:"bad_messages"`      // sampled messages without the send time or with a wrong body size
}

// StormStats are the mass disconnect and resume of the storm scenario.
type StormStats struct {
	Reconnected int64   `json:"reconnected"`
	Failed      int64   `json:"failed"`
	Seconds     float64 `json:"seconds"` // from the first close to the last member back
	PerSec      float64 `json:"per_sec"` // reconnected / seconds
	Handshake   Latency `json:"handshake_ms"`
	Join        Latency `json:"join_ms"`
	Resumed     int64   `json:"resumed"` // messages that came back in resuming joins' history
	// RelayCPUPerHandshakeUS is ConnStats' figure over the reconnects: from
	// the storm's start to every worker's members back. Publishing goes on
	// meanwhile, so its cost is in the figure too.
	RelayCPUPerHandshakeUS float64 `json:"relay_cpu_us_per_handshake"`
}

// DriftStats compare the first and the last tenth of the window's
// timeline (at least 2 points each): means of the per-second figures.
type DriftStats struct {
	FirstP99MS        float64 `json:"first_p99_ms"`
	LastP99MS         float64 `json:"last_p99_ms"`
	FirstDeliveriesPS float64 `json:"first_deliveries_per_sec"`
	LastDeliveriesPS  float64 `json:"last_deliveries_per_sec"`
	FirstRelayRSSMB   float64 `json:"first_relay_rss_mb"` // 0 without -relay-pid
	LastRelayRSSMB    float64 `json:"last_relay_rss_mb"`
}

// ClientStats are the bench's own costs, so a reader can tell whether the
// bench, not the relay, was the limit.
type ClientStats struct {
	Procs          int          `json:"procs"`
	CPUs           int          `json:"cpus"`             // of the machine
	CPUSeconds     float64      `json:"cpu_seconds"`      // all worker processes, the whole run
	CPUSysSeconds  float64      `json:"cpu_sys_seconds"`  // ... of which in the kernel (mostly TCP on loopback)
	CPUCoresWindow float64      `json:"cpu_cores_window"` // CPU seconds inside the window / window_seconds
	MachineCores   float64      `json:"machine_cores"`    // the whole machine's busy CPU in the window / window_seconds: bench, relay and anything else
	MaxRSSMB       float64      `json:"max_rss_mb"`       // sum over processes of the peak resident set
	Stalled        int64        `json:"stalled"`          // members that stopped reading on purpose
	Runtime        RuntimeStats `json:"runtime"`
}

// ServerStats are the relay's own view, from its /metrics (window figures
// between the scrapes at the window's start and end) and its memory.
type ServerStats struct {
	Deliveries       float64            `json:"deliveries"`
	DeliveriesPerSec float64            `json:"deliveries_per_sec"`
	Messages         float64            `json:"messages"` // sequenced
	Writes           float64            `json:"writes"`
	WritesPerSec     float64            `json:"writes_per_sec"`
	MsgsPerWrite     float64            `json:"msgs_per_write"`
	SlowConsumers    float64            `json:"slow_consumers"`
	CPUCores         float64            `json:"cpu_cores"`           // process CPU seconds / window_seconds
	FanoutP50MS      float64            `json:"fanout_p50_ms"`       // roomcast_fanout_seconds in the window: a flush's oldest message sequenced to the room's last member written (bucket upper bound)
	FanoutP99MS      float64            `json:"fanout_p99_ms"`       //
	SequenceP99MS    float64            `json:"sequence_p99_ms"`     // roomcast_accept_to_sequenced_seconds in the window: send frame read to sequenced
	GCPauseMS        float64            `json:"gc_pause_ms"`         // total stop-the-world GC time in the window
	GCs              float64            `json:"gcs"`                 // GC cycles in the window
	Connections      float64            `json:"connections"`         // open at the window's end
	HandshakeFails   float64            `json:"handshake_failures"`  // the whole run
	Disconnects      map[string]float64 `json:"disconnects"`         // the whole run, by close code
	RSSBaseMB        float64            `json:"rss_base_mb"`         // before the bench connected
	RSSWindowMB      float64            `json:"rss_window_mb"`       // when the window opened
	RSSEndMB         float64            `json:"rss_end_mb"`          // when it closed
	RSSPerConnection float64            `json:"rss_per_connection"`  // bytes: (window - base) / connections open at the window's start
	CPUPerDeliveryUS float64            `json:"cpu_us_per_delivery"` // relay CPU microseconds per delivery in the window (cpu_cores / deliveries_per_sec)
	Bus              *BusStats          `json:"bus,omitempty"`       // relays with a bus (-nats, -data-dir) only
}

// BusStats are a relay's NATS bus figures in the window.
type BusStats struct {
	MessagesOut     float64 `json:"messages_out"`     // stored by the relay(s)
	MessagesIn      float64 `json:"messages_in"`      // received from followed rooms
	Conflicts       float64 `json:"conflicts"`        // publishes retried after another node won
	PublishFailures float64 `json:"publish_failures"` // records not stored
	PublishP50MS    float64 `json:"publish_p50_ms"`   // roomcast_bus_publish_seconds (bucket upper bound)
	PublishP99MS    float64 `json:"publish_p99_ms"`
	Connected       float64 `json:"connected"` // roomcast_bus_connected at the window's end (summed over relays)
}

func (c *coordinator) report() *Report {
	var sum counts
	for _, r := range c.results {
		sum.add(r.Counts)
	}
	win := c.windowSeconds()
	cfg := c.cfg
	cfg.JWTSecret = ""
	r := &Report{Schema: SchemaVersion, Scenario: cfg.Scenario, URL: cfg.URL, RunID: c.plan.RunID,
		Started: c.started, Config: cfg, WindowSeconds: win, Stopped: c.stopped,
		Errors: map[string]int64{}, CloseCodes: map[string]int64{}, Timeline: c.timeline, Warnings: c.warnings}
	c.fillCounts(r, sum, win)
	c.fillMaps(r)
	c.fillLatencies(r)
	c.fillClient(r, sum, win)
	c.fillHandshakeCPU(r)
	r.Server = c.serverStats(win, sum)
	r.Nodes = c.nodeStats(win)
	r.Drift = drift(c.timeline)
	if c.hook != nil {
		r.Hook = c.hook.stats()
	}
	r.Warnings = append(r.Warnings, c.checks(r)...)
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	return r
}

// windowSeconds is the window's length, shortened if the run was stopped.
func (c *coordinator) windowSeconds() float64 {
	if c.goAt.IsZero() || c.winEnd == nil {
		return 0
	}
	start := c.goAt.Add(c.cfg.WarmUp)
	end := start.Add(c.cfg.Duration)
	if c.winEnd.at.Before(end) {
		end = c.winEnd.at
	}
	return max(end.Sub(start).Seconds(), 0)
}

func perSec(n int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

func (c *coordinator) fillCounts(r *Report, s counts, win float64) {
	lay := newLayout(&c.cfg, c.plan.Prefix)
	pubs, sampled := 0, 0
	for _, m := range lay.members {
		pubs += b2i(m.publisher)
		sampled += b2i(m.sampled)
	}
	r.Connections = ConnStats{Target: c.cfg.Connections, Connected: s[cConnected],
		Failed: s[cDialFailed], JoinFailed: s[cJoinFailed], Dropped: s[cDropped], DialErrors: map[string]int64{}}
	r.Messages = MessageStats{Publishers: pubs, Rate: c.cfg.Rate, Size: c.cfg.MessageSize, Sent: s[cSent],
		SentWindow: s[cSentWindow], PerSec: perSec(s[cSentWindow], win), Acked: s[cAcked],
		SendFailed: s[cSendFailed], Late: s[cLate]}
	if !c.cfg.publishing() {
		r.Messages.Rate = 0
	}
	r.Deliveries = DeliveryStats{Total: s[cDeliveries], Window: s[cDeliveriesWindow], PerSec: perSec(s[cDeliveriesWindow], win),
		Frames: s[cFrames], PresenceFrames: s[cPresence], SampledMembers: sampled}
	if s[cFrames] > 0 {
		r.Deliveries.MsgsPerFrame = float64(s[cDeliveries]) / float64(s[cFrames])
	}
	fillWire(&r.Deliveries, s, c.cfg.Compress)
	r.Loss = LossStats{Lost: s[cLost], MembersWithLoss: s[cLossMembers], Duplicates: s[cDups], GapMsgs: s[cGapMsgs],
		BadFrames: s[cBadFrames], BadMessages: s[cBadMessages]}
	if c.cfg.Scenario == Storm {
		r.Storm = &StormStats{Reconnected: s[cReconnected], Failed: s[cReconnectFailed], Resumed: s[cResumed]}
	}
}

func (c *coordinator) fillMaps(r *Report) {
	var first, last, rfirst, rlast int64
	for _, w := range c.results {
		mergeMap(r.Errors, w.Errors)
		mergeMap(r.CloseCodes, w.Closes)
		mergeMap(r.Connections.DialErrors, w.DialErrors)
		first, last = minNZ(first, w.Phases.ConnectStart), max(last, w.Phases.ConnectEnd)
		rfirst, rlast = minNZ(rfirst, w.Phases.ReconnectStart), max(rlast, w.Phases.ReconnectEnd)
	}
	r.Connections.ConnectSeconds = float64(last-first) / 1e9
	r.Connections.PerSec = perSec(r.Connections.Connected, r.Connections.ConnectSeconds)
	if r.Storm != nil && rlast > rfirst {
		r.Storm.Seconds = float64(rlast-rfirst) / 1e9
		r.Storm.PerSec = perSec(r.Storm.Reconnected, r.Storm.Seconds)
	}
}

// fillHandshakeCPU sets the relay CPU per handshake of the connect phase
// and the storm's reconnects.
func (c *coordinator) fillHandshakeCPU(r *Report) {
	r.Connections.RelayCPUPerHandshakeUS = cpuPerHandshakeUS(c.base, c.connected)
	if r.Storm != nil {
		r.Storm.RelayCPUPerHandshakeUS = cpuPerHandshakeUS(c.stormStart, c.stormEnd)
	}
}

// cpuPerHandshakeUS is the relay CPU microseconds per handshake between two
// samples of one relay (or sums over several): Δ process_cpu_seconds_total
// ÷ Δ roomcast_handshakes_total; 0 when a sample or a metric is missing or
// no handshake was made.
func cpuPerHandshakeUS(a, b *relaySample) float64 {
	if a == nil || b == nil {
		return 0
	}
	return cpuPerHandshakeOf(a.metrics, b.metrics)
}

func cpuPerHandshakeOf(a, b map[string]float64) float64 {
	const cpu, hs = "process_cpu_seconds_total", "roomcast_handshakes_total"
	cpu0, ok0 := a[cpu]
	cpu1, ok1 := b[cpu]
	n := b[hs] - a[hs]
	if !ok0 || !ok1 || n <= 0 || cpu1 < cpu0 {
		return 0
	}
	return jsonSafe((cpu1 - cpu0) / n * 1e6)
}

func minNZ(a, b int64) int64 {
	if a == 0 || b != 0 && b < a {
		return b
	}
	return a
}

func (c *coordinator) fillLatencies(r *Report) {
	merged := func(get func(*workerResult) histData) Latency {
		h := newHist()
		for _, w := range c.results {
			get(w).mergeInto(h)
		}
		return summarize(h)
	}
	r.Latency = merged(func(w *workerResult) histData { return w.Latency })
	r.Handshake = merged(func(w *workerResult) histData { return w.Handshake })
	r.Join = merged(func(w *workerResult) histData { return w.Join })
	r.Ack = merged(func(w *workerResult) histData { return w.Ack })
	if r.Storm != nil {
		r.Storm.Handshake = merged(func(w *workerResult) histData { return w.ReHandshake })
		r.Storm.Join = merged(func(w *workerResult) histData { return w.ReJoin })
	}
}

func (c *coordinator) fillClient(r *Report, s counts, win float64) {
	cl := ClientStats{Procs: c.cfg.Procs, CPUs: runtime.NumCPU(), Stalled: s[cStalled]}
	var cpuWin float64
	for _, w := range c.results {
		cl.CPUSeconds += w.CPU
		cl.CPUSysSeconds += w.CPUSys
		cpuWin += w.CPUWindow
		cl.MaxRSSMB += float64(w.MaxRSS) / (1 << 20)
		cl.Runtime.worst(w.Runtime)
	}
	if win > 0 {
		cl.CPUCoresWindow = cpuWin / win
		if c.winStart != nil && c.winEnd != nil {
			cl.MachineCores = (c.winEnd.busy - c.winStart.busy) / win
		}
	}
	r.Client = cl
}

// serverStats compares the relay samples; nil if nothing was sampled.
func (c *coordinator) serverStats(win float64, s counts) *ServerStats {
	b, w0, w1 := c.base, c.winStart, c.winEnd
	if b == nil || w0 == nil || w1 == nil || (w1.metrics == nil && w1.rss == 0) {
		return nil
	}
	return serverStatsOf(b, w0, w1, win, s[cConnected])
}

// serverStatsOf compares three samples of one relay (or sums over several):
// before the bench connected, at the window's start and at its end.
// conns is the bench's connections, for memory per connection when the
// relay's metrics do not say.
func serverStatsOf(b, w0, w1 *relaySample, win float64, conns int64) *ServerStats {
	d := func(name string) float64 { return w1.metrics[name] - w0.metrics[name] }
	st := &ServerStats{Deliveries: d("roomcast_deliveries_total"), Messages: d("roomcast_messages_sequenced_total"),
		Writes: d("roomcast_member_writes_total"), SlowConsumers: d("roomcast_slow_consumers_total"),
		Connections:    w1.metrics["roomcast_connections"],
		HandshakeFails: w1.metrics["roomcast_handshake_failures_total"] - b.metrics["roomcast_handshake_failures_total"],
		Disconnects:    map[string]float64{}, RSSBaseMB: mb(b.rss), RSSWindowMB: mb(w0.rss), RSSEndMB: mb(w1.rss)}
	if win > 0 {
		st.DeliveriesPerSec, st.WritesPerSec = st.Deliveries/win, st.Writes/win
		st.CPUCores = d("process_cpu_seconds_total") / win
	}
	if st.Deliveries > 0 {
		st.CPUPerDeliveryUS = d("process_cpu_seconds_total") / st.Deliveries * 1e6
	}
	st.GCPauseMS, st.GCs = d("go_gc_duration_seconds_sum")*1000, d("go_gc_duration_seconds_count")
	st.FanoutP50MS = jsonSafe(histQuantile(w0.metrics, w1.metrics, "roomcast_fanout_seconds", 0.5) * 1000)
	st.FanoutP99MS = jsonSafe(histQuantile(w0.metrics, w1.metrics, "roomcast_fanout_seconds", 0.99) * 1000)
	st.SequenceP99MS = jsonSafe(histQuantile(w0.metrics, w1.metrics, "roomcast_accept_to_sequenced_seconds", 0.99) * 1000)
	if st.Writes > 0 {
		st.MsgsPerWrite = st.Deliveries / st.Writes
	}
	for _, code := range []string{"1000", "1001", "1002", "1007", "1008", "1009", "4000", "4003", "4009"} {
		if v := w1.metrics["roomcast_disconnects_total:"+code] - b.metrics["roomcast_disconnects_total:"+code]; v > 0 {
			st.Disconnects[code] = v
		}
	}
	if open := w0.metrics["roomcast_connections"]; open > 0 && b.rss > 0 {
		st.RSSPerConnection = float64(w0.rss-b.rss) / open
	} else if conns > 0 && b.rss > 0 {
		st.RSSPerConnection = float64(w0.rss-b.rss) / float64(conns)
	}
	if _, ok := w1.metrics["roomcast_bus_connected"]; ok {
		st.Bus = &BusStats{MessagesOut: d("roomcast_bus_messages_total:out"), MessagesIn: d("roomcast_bus_messages_total:in"),
			Conflicts: d("roomcast_bus_conflicts_total"), PublishFailures: d("roomcast_bus_publish_failures_total"),
			PublishP50MS: jsonSafe(histQuantile(w0.metrics, w1.metrics, "roomcast_bus_publish_seconds", 0.5) * 1000),
			PublishP99MS: jsonSafe(histQuantile(w0.metrics, w1.metrics, "roomcast_bus_publish_seconds", 0.99) * 1000),
			Connected:    w1.metrics["roomcast_bus_connected"]}
	}
	return st
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// checks returns warnings about the run's own validity.
func (c *coordinator) checks(r *Report) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if lim := c.sendLimit(); lim > 0 && r.Messages.Publishers > 0 && c.cfg.Rate/float64(r.Messages.Publishers) > lim*1.01 {
		add("each publisher sends %.1f msgs/s but the relay allows %.1f: expect rate_limited errors (add publishers)",
			c.cfg.Rate/float64(r.Messages.Publishers), lim)
	}
	if r.Messages.Sent > 0 && r.Messages.Late*100 > r.Messages.Sent {
		add("%d of %d sends were more than 10 ms late: the bench could not keep its schedule", r.Messages.Late, r.Messages.Sent)
	}
	if cores := float64(runtime.NumCPU()); r.Client.CPUCoresWindow > cores/2 {
		add("the bench used %.2f of %.0f cores in the window: on a shared machine it competes with the relay", r.Client.CPUCoresWindow, cores)
	}
	if other := r.Client.MachineCores - r.Client.CPUCoresWindow - r.serverCores(); other > 0.25 {
		add("other processes used about %.2f cores of the machine in the window: the numbers are not clean", other)
	}
	if r.Messages.Sent > 0 && r.Latency.Count < 1000 {
		add("only %d latency samples: raise -sample for steadier percentiles", r.Latency.Count)
	}
	if lo, hi := portRange(); hi > lo && c.cfg.Connections/max(len(c.cfg.Sources), 1) > (hi-lo)/2 {
		add("more than %d connections per source address: past half the local port range (%d-%d) the kernel's connect() searches long for a port; add -sources",
			(hi-lo)/2, lo, hi)
	}
	if r.Connections.Failed > 0 || r.Connections.JoinFailed > 0 {
		add("%d connections failed and %d joins failed", r.Connections.Failed, r.Connections.JoinFailed)
	}
	return out
}

func (c *coordinator) sendLimit() float64 {
	for _, w := range c.results {
		if w.SendLimit > 0 {
			return w.SendLimit
		}
	}
	return 0
}

func (r *Report) serverCores() float64 {
	if r.Server == nil {
		return 0
	}
	return r.Server.CPUCores
}

// jsonSafe replaces +Inf (a quantile past the last bucket), which JSON
// cannot carry, by -1.
func jsonSafe(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return -1
	}
	return v
}

// drift compares the start and the end of the window's timeline.
func drift(tl []Progress) *DriftStats {
	var win []Progress
	for _, p := range tl {
		if p.Phase == PhaseWindow {
			win = append(win, p)
		}
	}
	if len(win) < 20 {
		return nil
	}
	k := max(len(win)/10, 2)
	mean := func(ps []Progress, f func(Progress) float64) float64 {
		var s float64
		for _, p := range ps {
			s += f(p)
		}
		return s / float64(len(ps))
	}
	first, last := win[1:k+1], win[len(win)-k:] // the first point may straddle the window's start
	p99 := func(p Progress) float64 { return p.P99 }
	dps := func(p Progress) float64 { return p.DeliveriesPerSec }
	rss := func(p Progress) float64 { return p.RelayRSSMB }
	return &DriftStats{FirstP99MS: mean(first, p99), LastP99MS: mean(last, p99),
		FirstDeliveriesPS: mean(first, dps), LastDeliveriesPS: mean(last, dps),
		FirstRelayRSSMB: mean(first, rss), LastRelayRSSMB: mean(last, rss)}
}
