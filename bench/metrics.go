package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// relaySample is the relay's state at one moment, as far as the bench can
// see it: its /metrics (counters and gauges summed over their labels; the
// disconnects also by code) and its resident memory. With several relays
// (one metrics URL each), metrics and rss are sums over them, and nodes
// holds each relay's own metrics.
type relaySample struct {
	at      time.Time
	metrics map[string]float64   // nil without MetricsURL
	nodes   []map[string]float64 // by relay, with more than one metrics URL
	rss     int64                // bytes; 0 if unknown
	busy    float64              // the machine's busy CPU seconds so far (machineCPU)
}

// sampleRelay reads what cfg says to read; errors are returned for the
// report's warnings, the sample holds whatever was read.
func sampleRelay(ctx context.Context, cfg *Config) (*relaySample, error) {
	s := &relaySample{at: time.Now()}
	s.busy, _ = machineCPU()
	var errs []error
	if urls := cfg.metricsURLs(); len(urls) > 0 {
		s.metrics = map[string]float64{}
		for _, u := range urls {
			m, err := scrape(ctx, u)
			if err != nil {
				errs = append(errs, err)
			}
			for k, v := range m {
				s.metrics[k] += v
			}
			if len(urls) > 1 {
				s.nodes = append(s.nodes, m)
			}
		}
		s.rss = int64(s.metrics["process_resident_memory_bytes"])
	}
	if cfg.RelayPID > 0 {
		rss, err := vmRSS(cfg.RelayPID)
		if err != nil {
			errs = append(errs, err)
		} else {
			s.rss = rss
		}
	}
	if len(errs) > 0 {
		return s, errs[0]
	}
	return s, nil
}

// scrape fetches a Prometheus text exposition and flattens it.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad metrics URL: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape relay metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot scrape relay metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cannot parse relay metrics: %w", err)
	}
	return flatten(fams), nil
}

// byLabel are the metrics flatten also keeps by one label's value, as
// "<name>:<value>".
var byLabel = map[string]string{"roomcast_disconnects_total": "code", "roomcast_bus_messages_total": "dir"}

// flatten sums every counter and gauge over its label sets, and keeps the
// metrics of byLabel by their label too, e.g. "roomcast_disconnects_total:<code>".
func flatten(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				addHistogram(out, name, h)
				continue
			}
			if sm := m.GetSummary(); sm != nil {
				out[name+"_sum"] += sm.GetSampleSum()
				out[name+"_count"] += float64(sm.GetSampleCount())
				continue
			}
			v := value(m)
			out[name] += v
			if label, ok := byLabel[name]; ok {
				for _, l := range m.GetLabel() {
					if l.GetName() == label {
						out[name+":"+l.GetValue()] += v
					}
				}
			}
		}
	}
	return out
}

// addHistogram keeps a histogram as name_count, name_sum and its
// cumulative buckets as "name_bucket:<le>".
func addHistogram(out map[string]float64, name string, h *dto.Histogram) {
	out[name+"_count"] += float64(h.GetSampleCount())
	out[name+"_sum"] += h.GetSampleSum()
	for _, b := range h.GetBucket() {
		out[name+"_bucket:"+strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)] += float64(b.GetCumulativeCount())
	}
}

// histQuantile estimates quantile q of histogram name over the observations
// made between samples a and b: the upper bound of the bucket it falls in,
// in seconds (+Inf past the last bucket; 0 without observations).
func histQuantile(a, b map[string]float64, name string, q float64) float64 {
	prefix := name + "_bucket:"
	var bounds []float64
	for k := range b {
		if le, ok := strings.CutPrefix(k, prefix); ok {
			if v, err := strconv.ParseFloat(le, 64); err == nil {
				bounds = append(bounds, v)
			}
		}
	}
	sort.Float64s(bounds)
	total := b[name+"_count"] - a[name+"_count"]
	if total <= 0 {
		return 0
	}
	for _, le := range bounds {
		key := prefix + strconv.FormatFloat(le, 'g', -1, 64)
		if b[key]-a[key] >= q*total {
			return le
		}
	}
	return math.Inf(1)
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
