package relay

import (
	"testing"
	"unsafe"
)

// TestSessionSize keeps the per-connection struct in its size class: every
// idle connection holds one (BENCHMARKS.md, memory per connection).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 160 {
		t.Errorf("session is %d bytes, want at most 160: move rarely used fields to sessionCold", n)
	}
}
