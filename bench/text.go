package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report as a table for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	row("scenario", "%s  %s  procs %d  window %.1fs%s", r.Scenario, r.URL, r.Client.Procs, r.WindowSeconds, stoppedNote(r.Stopped))
	c := r.Connections
	row("connections", "%d of %d connected in %.2fs (%.0f/s), %d failed, %d joins failed, %d dropped%s",
		c.Connected, c.Target, c.ConnectSeconds, c.PerSec, c.Failed, c.JoinFailed, c.Dropped, keyed(" dial errors:", c.DialErrors))
	row("handshake ms", "%s", r.Handshake)
	if c.RelayCPUPerHandshakeUS > 0 {
		row("  relay CPU", "%.1f us per handshake (connect phase, with its joins)", c.RelayCPUPerHandshakeUS)
	}
	row("join ms", "%s", r.Join)
	m := r.Messages
	row("messages", "%d publishers, %d sent (%.1f/s in window, asked %.1f/s), %d acked, %d late, %d failed",
		m.Publishers, m.Sent, m.PerSec, m.Rate, m.Acked, m.Late, m.SendFailed)
	row("ack ms", "%s", r.Ack)
	d := r.Deliveries
	row("deliveries", "%d in all, %d in window = %.0f/s; %d batch frames (%.1f msgs/frame), %d presence frames",
		d.Total, d.Window, d.PerSec, d.Frames, d.MsgsPerFrame, d.PresenceFrames)
	wireRow(row, r)
	row("latency ms", "%s  (%d sampled members)", r.Latency, d.SampledMembers)
	l := r.Loss
	row("loss", "%d lost (%d members), %d duplicates, %d aged out on resume, %d bad frames, %d bad messages",
		l.Lost, l.MembersWithLoss, l.Duplicates, l.GapMsgs, l.BadFrames, l.BadMessages)
	row("errors", "%s", keyedOrNone(r.Errors))
	row("close codes", "%s", keyedOrNone(r.CloseCodes))
	if s := r.Storm; s != nil {
		row("storm", "%d back, %d failed in %.2fs (%.0f/s); %d messages resumed from history", s.Reconnected, s.Failed, s.Seconds, s.PerSec, s.Resumed)
		row("  handshake ms", "%s", s.Handshake)
		if s.RelayCPUPerHandshakeUS > 0 {
			row("  relay CPU", "%.1f us per handshake (reconnects, publishing on)", s.RelayCPUPerHandshakeUS)
		}
		row("  join ms", "%s", s.Join)
	}
	if d := r.Drift; d != nil {
		row("drift", "p99 %.2f -> %.2f ms, deliveries %.0f -> %.0f/s, relay RSS %.1f -> %.1f MB (first and last tenth of the window)",
			d.FirstP99MS, d.LastP99MS, d.FirstDeliveriesPS, d.LastDeliveriesPS, d.FirstRelayRSSMB, d.LastRelayRSSMB)
	}
	cl := r.Client
	row("bench", "%.2f cores in window (machine: %.2f of %d busy), %.1f CPU s in all (%.0f%% kernel), %.0f MB peak RSS, %d stalled",
		cl.CPUCoresWindow, cl.MachineCores, cl.CPUs, cl.CPUSeconds, 100*cl.CPUSysSeconds/max(cl.CPUSeconds, 1e-9), cl.MaxRSSMB, cl.Stalled)
	row("bench runtime", "goroutines waited p99 %.2f ms, max %.2f ms to run; GC paused %.2f ms in all, %.2f ms at most",
		cl.Runtime.SchedP99, cl.Runtime.SchedMax, cl.Runtime.GCPauseSum, cl.Runtime.GCPauseMax)
	if s := r.Server; s != nil && r.Config.MetricsURL != "" {
		row("relay", "%.0f deliveries/s, %.0f writes/s (%.1f msgs/write), %.2f cores, %d slow consumers, %.0f handshake failures%s",
			s.DeliveriesPerSec, s.WritesPerSec, s.MsgsPerWrite, s.CPUCores, int64(s.SlowConsumers), s.HandshakeFails, keyedF(" disconnects:", s.Disconnects))
		row("relay latency", "fan-out p50 <= %.3g ms, p99 <= %.3g ms; read to sequenced p99 <= %.3g ms (histogram buckets)", s.FanoutP50MS, s.FanoutP99MS, s.SequenceP99MS)
		row("relay runtime", "%.0f GCs, %.2f ms paused in the window", s.GCs, s.GCPauseMS)
	}
	if s := r.Server; s != nil && s.Deliveries > 0 && r.Config.MetricsURL != "" {
		row("relay cost", "%.2f us CPU per delivery", s.CPUPerDeliveryUS)
	}
	if b := r.Server; b != nil && b.Bus != nil {
		bs := b.Bus
		row("relay bus", "%.0f stored, %.0f received, %.0f conflicts, %.0f failures; publish p50 <= %.3g ms, p99 <= %.3g ms",
			bs.MessagesOut, bs.MessagesIn, bs.Conflicts, bs.PublishFailures, bs.PublishP50MS, bs.PublishP99MS)
	}
	if h := r.Hook; h != nil {
		row("hook backend", "%s  %d calls answered after %.3g ms, %d bad; answer ms %s", h.URL, h.Calls, h.DelayMS, h.Bad, h.Answer)
	}
	for _, n := range r.Nodes {
		row(fmt.Sprintf("node %d", n.Index), "%s  %s", n.URL, n.nodeLine())
	}
	if s := r.Server; s != nil && s.RSSEndMB > 0 {
		row("relay memory", "RSS %.1f MB before, %.1f MB at window start (%.0f B/connection), %.1f MB at end", s.RSSBaseMB, s.RSSWindowMB, s.RSSPerConnection, s.RSSEndMB)
	}
	for _, w := range r.Warnings {
		row("warning", "%s", w)
	}
	return tw.Flush()
}

func (l Latency) String() string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
}

func stoppedNote(stopped bool) string {
	if stopped {
		return "  (stopped early)"
	}
	return ""
}

func keyed(prefix string, m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	return prefix + " " + keyedOrNone(m)
}

func keyedOrNone(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// Line formats a progress line.
func (p Progress) Line() string {
	s := fmt.Sprintf("%6.1fs %-10s conns %6d  failed %d  sent %7.0f/s  deliveries %9.0f/s  p99 %7.2f ms  lost %d  cpu %.2f",
		p.Elapsed, p.Phase, p.Connections, p.Failed, p.SentPerSec, p.DeliveriesPerSec, p.P99, p.Lost, p.MachineCores)
	if p.RelayRSSMB > 0 {
		s += fmt.Sprintf("  relay %.0f MB", p.RelayRSSMB)
	}
	return s
}

func keyedF(prefix string, m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	n := make(map[string]int64, len(m))
	for k, v := range m {
		n[k] = int64(v)
	}
	return prefix + " " + keyedOrNone(n)
}
