package relay

import (
	"runtime/debug"
	"testing"
)

// TestMemTrimAfterWave: memTrim trims once the open count has held still for
// trimQuiet ticks after moving by trimWave, and not again until it moves as
// much once more.
func TestMemTrimAfterWave(t *testing.T) {
	var m memTrim
	steps := []struct {
		conns int64
		trim  bool
	}{
		{500, false}, {500, false}, {500, false}, {500, false}, // a small change: never
		{3000, false}, {5000, false}, {5000, false}, {5000, true}, // a wave, then quiet
		{5000, false}, {5000, false}, // trimmed once
		{4500, false}, {4500, false}, {4500, false}, // 500 closed: not a wave
		{3000, false}, {3000, false}, {3000, true}, // 2 000 closed since the trim
	}
	for i, s := range steps {
		if got := m.tick(s.conns); got != s.trim {
			t.Fatalf("tick %d (%d open): trimmed %v, want %v", i, s.conns, got, s.trim)
		}
	}
}

// TestMemTrimWaveGC: a wave (waveRate a tick or more) lowers GOGC to
// waveGCPercent until the count holds still for trimQuiet ticks, then puts
// back the GOGC it found; two relays' waves overlapping put it back when
// the last ends; a GOGC already low is left alone.
func TestMemTrimWaveGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(200))
	var a, b memTrim
	a.tick(100) // a small change: no wave
	if got := gcPercent(); got != 200 {
		t.Fatalf("GOGC %d after a small change, want 200", got)
	}
	a.tick(100 + waveRate)
	if got := gcPercent(); got != waveGCPercent {
		t.Fatalf("GOGC %d in a wave, want %d", got, waveGCPercent)
	}
	b.tick(waveRate) // a second relay's wave
	a.tick(100 + waveRate)
	a.tick(100 + waveRate) // a is quiet: its wave ends, b's goes on
	if got := gcPercent(); got != waveGCPercent {
		t.Fatalf("GOGC %d with one relay still in a wave, want %d", got, waveGCPercent)
	}
	b.tick(waveRate)
	b.tick(waveRate)
	if got := gcPercent(); got != 200 {
		t.Fatalf("GOGC %d after both waves, want 200 back", got)
	}
	debug.SetGCPercent(20)
	var c memTrim
	c.tick(5 * waveRate)
	if got := gcPercent(); got != 20 || c.waving {
		t.Fatalf("GOGC %d (waving %v) with GOGC 20 set, want 20 left alone", got, c.waving)
	}
	debug.SetGCPercent(-1)
	c.tick(0)
	if got := gcPercent(); got != -1 || c.waving {
		t.Fatalf("GOGC %d (waving %v) with the collector off, want it left off", got, c.waving)
	}
}

// TestMemTrimWaveEndsUnderChurn: a wave ends, and GOGC is put back, once
// the count moves by less than waveRate a tick for trimQuiet ticks, even
// if it never holds still (a busy relay's few connections a second).
func TestMemTrimWaveEndsUnderChurn(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(200))
	var m memTrim
	defer m.end()
	m.tick(0)
	m.tick(2 * waveRate)
	if got := gcPercent(); got != waveGCPercent {
		t.Fatalf("GOGC %d in a wave, want %d", got, waveGCPercent)
	}
	for i := int64(1); i <= trimQuiet; i++ {
		m.tick(2*waveRate + i) // one more connection a tick
	}
	if got := gcPercent(); got != 200 || m.waving {
		t.Fatalf("GOGC %d (waving %v) after %d ticks of one connection each, want 200 back", got, m.waving, trimQuiet)
	}
}

// TestGCPercentReads: gcPercent reads what SetGCPercent set, off included.
func TestGCPercentReads(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, p := range []int{100, 25, 300, -1} {
		debug.SetGCPercent(p)
		if got := gcPercent(); got != p {
			t.Errorf("gcPercent() = %d after SetGCPercent(%d)", got, p)
		}
	}
}
