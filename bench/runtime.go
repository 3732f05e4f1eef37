package bench

import (
	"math"
	"runtime/metrics"
)

// The bench's own health in the window, from the Go runtime: how long
// runnable goroutines waited for a CPU (a busy bench delays its reads and
// inflates latency), and how long the garbage collector stopped it.
const (
	schedLatencies = "/sched/latencies:seconds"
	gcPauses       = "/sched/pauses/total/gc:seconds"
)

// runtimeSample holds the two histograms at one moment.
type runtimeSample [2]*metrics.Float64Histogram

func readRuntime() runtimeSample {
	s := []metrics.Sample{{Name: schedLatencies}, {Name: gcPauses}}
	metrics.Read(s)
	var out runtimeSample
	for i := range s {
		if s[i].Value.Kind() == metrics.KindFloat64Histogram {
			out[i] = s[i].Value.Float64Histogram()
		}
	}
	return out
}

// RuntimeStats summarize the bench processes' runtime in the window, in
// milliseconds (the worst process for each figure).
type RuntimeStats struct {
	SchedP99   float64 `json:"sched_latency_p99_ms"` // goroutines waiting to run
	SchedMax   float64 `json:"sched_latency_max_ms"`
	GCPauseMax float64 `json:"gc_pause_max_ms"`
	GCPauseSum float64 `json:"gc_pause_total_ms"`
}

// runtimeStats compares two samples.
func runtimeStats(a, b runtimeSample) RuntimeStats {
	var st RuntimeStats
	if d := histDelta(a[0], b[0]); d != nil {
		st.SchedP99, st.SchedMax = quantile(d, 0.99)*1000, quantile(d, 1)*1000
	}
	if d := histDelta(a[1], b[1]); d != nil {
		st.GCPauseMax = quantile(d, 1) * 1000
		for i, c := range d.Counts {
			st.GCPauseSum += float64(c) * mid(d, i) * 1000
		}
	}
	return st
}

func (s *RuntimeStats) worst(o RuntimeStats) {
	s.SchedP99, s.SchedMax = max(s.SchedP99, o.SchedP99), max(s.SchedMax, o.SchedMax)
	s.GCPauseMax, s.GCPauseSum = max(s.GCPauseMax, o.GCPauseMax), max(s.GCPauseSum, o.GCPauseSum)
}

// histDelta is b minus a, bucket by bucket.
func histDelta(a, b *metrics.Float64Histogram) *metrics.Float64Histogram {
	if a == nil || b == nil || len(a.Counts) != len(b.Counts) {
		return nil
	}
	d := &metrics.Float64Histogram{Buckets: b.Buckets, Counts: make([]uint64, len(b.Counts))}
	for i := range d.Counts {
		d.Counts[i] = b.Counts[i] - a.Counts[i]
	}
	return d
}

// quantile returns the upper bound of the bucket holding quantile q
// (the lower bound for the last, unbounded bucket); 0 if empty.
func quantile(h *metrics.Float64Histogram, q float64) float64 {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range h.Counts {
		if seen += c; seen >= rank && c > 0 {
			if hi := h.Buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return h.Buckets[i]
		}
	}
	return 0
}

// mid is the middle of bucket i, for sums.
func mid(h *metrics.Float64Histogram, i int) float64 {
	lo, hi := h.Buckets[i], h.Buckets[i+1]
	switch {
	case math.IsInf(lo, -1):
		return max(hi, 0)
	case math.IsInf(hi, 1):
		return lo
	}
	return (lo + hi) / 2
}
