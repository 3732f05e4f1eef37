package bench

import (
	"bytes"
	"strings"
	"testing"
)

// checkHandshakeCPU: the in-process relay exports process_cpu_seconds_total
// (its process collector reads /proc), so the figure must be there and
// positive. It includes the bench's own CPU (same process), so no bound is
// checked beyond sanity: under a second per handshake.
func checkHandshakeCPU(t *testing.T, us float64, what string) {
	t.Helper()
	if us <= 0 || us > 1e6 {
		t.Errorf("%s: relay CPU per handshake %v us, want a positive figure", what, us)
	}
}

// TestHandshakeCPUOf: Δ CPU ÷ Δ handshakes, and nothing when the relay does
// not export either or made no handshake.
func TestHandshakeCPUOf(t *testing.T) {
	a := map[string]float64{"process_cpu_seconds_total": 1, "roomcast_handshakes_total": 100}
	b := map[string]float64{"process_cpu_seconds_total": 1.5, "roomcast_handshakes_total": 10100}
	if got := cpuPerHandshakeOf(a, b); got < 49.99 || got > 50.01 {
		t.Errorf("got %v us, want 50", got)
	}
	if got := cpuPerHandshakeOf(map[string]float64{"roomcast_handshakes_total": 100}, b); got != 0 {
		t.Errorf("without process CPU: %v, want 0", got)
	}
	if got := cpuPerHandshakeOf(b, b); got != 0 {
		t.Errorf("no handshakes: %v, want 0", got)
	}
	if got := cpuPerHandshakeUS(nil, &relaySample{metrics: b}); got != 0 {
		t.Errorf("no first sample: %v, want 0", got)
	}
	// The text table names it.
	r := &Report{Connections: ConnStats{RelayCPUPerHandshakeUS: 42.5}, Storm: &StormStats{RelayCPUPerHandshakeUS: 61}}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"42.5 us per handshake", "61.0 us per handshake"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
}
