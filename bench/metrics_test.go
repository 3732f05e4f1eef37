package bench

import (
	"math"
	"testing"
)

func TestHistQuantile(t *testing.T) {
	a := map[string]float64{"h_count": 10, "h_bucket:0.001": 5, "h_bucket:0.01": 10, "h_bucket:+Inf": 10}
	b := map[string]float64{"h_count": 110, "h_bucket:0.001": 55, "h_bucket:0.01": 108, "h_bucket:+Inf": 110}
	f := func(q, want float64) {
		t.Helper()
		if got := histQuantile(a, b, "h", q); got != want {
			t.Errorf("q=%v: got %v, want %v", q, got, want)
		}
	}
	f(0.5, 0.001) // 50 of 100 new observations are <= 1ms
	f(0.9, 0.01)  // 98 are <= 10ms
	f(0.99, math.Inf(1))
	if got := histQuantile(b, b, "h", 0.5); got != 0 {
		t.Errorf("no observations: got %v, want 0", got)
	}
}

func TestDrift(t *testing.T) {
	var tl []Progress
	for i := 0; i < 40; i++ {
		tl = append(tl, Progress{Phase: PhaseWindow, P99: float64(i), RelayRSSMB: 100})
	}
	d := drift(tl)
	if d == nil || d.FirstP99MS != 2.5 || d.LastP99MS != 37.5 || d.LastRelayRSSMB != 100 {
		t.Errorf("drift %+v", d)
	}
	if drift(tl[:10]) != nil {
		t.Errorf("drift of 10 s, want none")
	}
}
