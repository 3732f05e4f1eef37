package bench

import "fmt"

// NodeStats are the figures of one relay of several (Config.URL a list):
// what the bench's connections to it measured, and, with a metrics URL per
// relay, the relay's own view. Summed over the relays, the counts are the
// report's totals.
type NodeStats struct {
	Index       int              `json:"index"` // in Config.URL
	URL         string           `json:"url"`
	MetricsURL  string           `json:"metrics_url,omitempty"`
	Connections NodeConnStats    `json:"connections"`
	Handshake   Latency          `json:"handshake_ms"`
	Join        Latency          `json:"join_ms"`
	Messages    MessageStats     `json:"messages"` // rate: this relay's publishers' share of the rate asked for
	Ack         Latency          `json:"ack_ms"`
	Deliveries  DeliveryStats    `json:"deliveries"`
	Latency     Latency          `json:"latency_ms"`
	Loss        LossStats        `json:"loss"`
	Errors      map[string]int64 `json:"errors"`
	CloseCodes  map[string]int64 `json:"close_codes"`
	Server      *ServerStats     `json:"server,omitempty"` // with a metrics URL per relay
}

// NodeConnStats are one relay's share of the connections.
type NodeConnStats struct {
	Target     int              `json:"target"`
	Connected  int64            `json:"connected"`
	Failed     int64            `json:"failed"`
	JoinFailed int64            `json:"join_failed"`
	Dropped    int64            `json:"dropped"`
	DialErrors map[string]int64 `json:"dial_errors"`
	// RelayCPUPerHandshakeUS: ConnStats' figure for this relay (with a
	// metrics URL per relay).
	RelayCPUPerHandshakeUS float64 `json:"relay_cpu_us_per_handshake"`
}

// nodeStats breaks the run down by relay; nil with one relay.
func (c *coordinator) nodeStats(win float64) []NodeStats {
	urls := c.cfg.urls()
	if len(urls) < 2 {
		return nil
	}
	lay := newLayout(&c.cfg, c.plan.Prefix)
	out := make([]NodeStats, len(urls))
	pubs := make([]int, len(urls))
	totalPubs := 0
	for i := range out {
		rs := make([]nodeResult, 0, len(c.results))
		for _, w := range c.results {
			if w != nil && i < len(w.Nodes) {
				rs = append(rs, w.Nodes[i])
			}
		}
		out[i] = NodeStats{Index: i, URL: urls[i], Errors: map[string]int64{}, CloseCodes: map[string]int64{}}
		if len(rs) > 0 {
			sum := sumResults(rs)
			out[i].fill(sum, win)
			fillWire(&out[i].Deliveries, sum.Counts, c.cfg.Compress)
		}
	}
	for i, m := range lay.members {
		n := c.cfg.nodeOf(i)
		out[n].Connections.Target++
		out[n].Deliveries.SampledMembers += b2i(m.sampled)
		pubs[n] += b2i(m.publisher)
		totalPubs += b2i(m.publisher)
	}
	for i := range out {
		out[i].Messages.Publishers, out[i].Messages.Size = pubs[i], c.cfg.MessageSize
		if c.cfg.publishing() && totalPubs > 0 {
			out[i].Messages.Rate = c.cfg.Rate * float64(pubs[i]) / float64(totalPubs)
		}
	}
	c.nodeServers(out, win)
	return out
}

// fill sets the figures the bench measured from the relay's results.
func (n *NodeStats) fill(r nodeResult, win float64) {
	s := r.Counts
	n.Connections = NodeConnStats{Connected: s[cConnected], Failed: s[cDialFailed], JoinFailed: s[cJoinFailed],
		Dropped: s[cDropped], DialErrors: r.DialErrors}
	n.Messages = MessageStats{Sent: s[cSent], SentWindow: s[cSentWindow], PerSec: perSec(s[cSentWindow], win),
		Acked: s[cAcked], SendFailed: s[cSendFailed], Late: s[cLate]}
	n.Deliveries = DeliveryStats{Total: s[cDeliveries], Window: s[cDeliveriesWindow], PerSec: perSec(s[cDeliveriesWindow], win),
		Frames: s[cFrames], PresenceFrames: s[cPresence]}
	if s[cFrames] > 0 {
		n.Deliveries.MsgsPerFrame = float64(s[cDeliveries]) / float64(s[cFrames])
	}
	n.Loss = LossStats{Lost: s[cLost], MembersWithLoss: s[cLossMembers], Duplicates: s[cDups], GapMsgs: s[cGapMsgs],
		BadFrames: s[cBadFrames], BadMessages: s[cBadMessages]}
	n.Errors, n.CloseCodes = r.Errors, r.Closes
	n.Handshake, n.Join, n.Ack, n.Latency = summarizeData(r.Handshake), summarizeData(r.Join), summarizeData(r.Ack), summarizeData(r.Latency)
}

// nodeServers adds each relay's own view, with a metrics URL per relay.
func (c *coordinator) nodeServers(out []NodeStats, win float64) {
	murls := c.cfg.metricsURLs()
	b, w0, w1 := c.base, c.winStart, c.winEnd
	if len(murls) != len(out) || b == nil || w0 == nil || w1 == nil ||
		len(b.nodes) != len(out) || len(w0.nodes) != len(out) || len(w1.nodes) != len(out) {
		return
	}
	one := func(s *relaySample, i int) *relaySample {
		m := s.nodes[i]
		return &relaySample{at: s.at, metrics: m, rss: int64(m["process_resident_memory_bytes"]), busy: s.busy}
	}
	if cn := c.connected; cn != nil && len(cn.nodes) == len(out) {
		for i := range out {
			out[i].Connections.RelayCPUPerHandshakeUS = cpuPerHandshakeOf(b.nodes[i], cn.nodes[i])
		}
	}
	for i := range out {
		out[i].MetricsURL = murls[i]
		out[i].Server = serverStatsOf(one(b, i), one(w0, i), one(w1, i), win, out[i].Connections.Connected)
	}
}

func summarizeData(d histData) Latency {
	h := newHist()
	d.mergeInto(h)
	return summarize(h)
}

// nodeLine is one relay's row of the text report.
func (n *NodeStats) nodeLine() string {
	s := fmt.Sprintf("%d/%d conns, %d failed, %d dropped; %d sent, %d acked; %.0f deliveries/s; latency p50 %.3f p99 %.3f ms; %d lost; errors %s",
		n.Connections.Connected, n.Connections.Target, n.Connections.Failed+n.Connections.JoinFailed, n.Connections.Dropped,
		n.Messages.Sent, n.Messages.Acked, n.Deliveries.PerSec, n.Latency.P50, n.Latency.P99, n.Loss.Lost, keyedOrNone(n.Errors))
	if sv := n.Server; sv != nil {
		s += fmt.Sprintf("; relay %.2f cores, %.1f MB, %.0f deliveries/s, %.2f us CPU/delivery, %.1f us CPU/handshake",
			sv.CPUCores, sv.RSSEndMB, sv.DeliveriesPerSec, sv.CPUPerDeliveryUS, n.Connections.RelayCPUPerHandshakeUS)
		if bs := sv.Bus; bs != nil {
			s += fmt.Sprintf(", bus out %.0f in %.0f, %.0f conflicts, %.0f failures, publish p99 <= %.3g ms", bs.MessagesOut, bs.MessagesIn, bs.Conflicts, bs.PublishFailures, bs.PublishP99MS)
		}
	}
	return s
}
