package relay

import "testing"

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
