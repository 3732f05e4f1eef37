package bench

import (
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms hold microseconds, from 1us to 10 minutes, to 3 significant
// digits.
const (
	histLow  = 1
	histHigh = 600_000_000
	histSig  = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLow, histHigh, histSig) }

var histCountsLen = len(newHist().Export().Counts)

// record adds a value in microseconds, clamped to the histogram's range.
func record(h *hdrhistogram.Histogram, us int64) {
	_ = h.RecordValue(min(max(us, histLow), histHigh))
}

// histData is a histogram in transit between processes: its non-zero counts
// as [index, count] pairs.
type histData struct {
	Counts [][2]int64 `json:"counts,omitempty"`
}

func exportHist(h *hdrhistogram.Histogram) histData {
	var d histData
	for i, c := range h.Export().Counts {
		if c != 0 {
			d.Counts = append(d.Counts, [2]int64{int64(i), c})
		}
	}
	return d
}

// mergeHistData adds up histograms in transit.
func mergeHistData(ds []histData) histData {
	if len(ds) == 1 {
		return ds[0]
	}
	h := newHist()
	for _, d := range ds {
		d.mergeInto(h)
	}
	return exportHist(h)
}

// mergeInto adds d's counts to h.
func (d histData) mergeInto(h *hdrhistogram.Histogram) {
	if len(d.Counts) == 0 {
		return
	}
	counts := make([]int64, histCountsLen)
	for _, p := range d.Counts {
		if p[0] >= 0 && int(p[0]) < len(counts) {
			counts[p[0]] += p[1]
		}
	}
	h.Merge(hdrhistogram.Import(&hdrhistogram.Snapshot{
		LowestTrackableValue: histLow, HighestTrackableValue: histHigh, SignificantFigures: histSig, Counts: counts}))
}

// Latency summarizes a latency histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

// lockedHist is a histogram many goroutines record into.
type lockedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLockedHist() *lockedHist { return &lockedHist{h: newHist()} }

func (l *lockedHist) record(us int64) {
	l.mu.Lock()
	record(l.h, us)
	l.mu.Unlock()
}

func (l *lockedHist) export() histData {
	l.mu.Lock()
	defer l.mu.Unlock()
	return exportHist(l.h)
}

// latencyHists holds the delivery latencies of the sampled members: the
// whole window, and the interval since the last progress report. It is
// split into shards so that readers recording at once rarely meet.
type latencyHists struct {
	shards [8]struct {
		mu              sync.Mutex
		total, interval *hdrhistogram.Histogram
	}
}

func newLatencyHists() *latencyHists {
	l := &latencyHists{}
	for i := range l.shards {
		l.shards[i].total, l.shards[i].interval = newHist(), newHist()
	}
	return l
}

// record adds the latencies of one frame (microseconds) to shard k.
func (l *latencyHists) record(k int, us []int64) {
	s := &l.shards[k%len(l.shards)]
	s.mu.Lock()
	for _, v := range us {
		record(s.total, v)
		record(s.interval, v)
	}
	s.mu.Unlock()
}

// takeInterval returns the interval's latencies and starts a new interval.
func (l *latencyHists) takeInterval() histData {
	h := newHist()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.interval)
		s.interval.Reset()
		s.mu.Unlock()
	}
	return exportHist(h)
}

func (l *latencyHists) total() histData {
	h := newHist()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.total)
		s.mu.Unlock()
	}
	return exportHist(h)
}
