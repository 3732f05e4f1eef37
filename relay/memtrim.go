package relay

import (
	"runtime/debug"
)

// After a wave of connections (or of disconnects) the Go heap keeps the
// garbage of the handshakes and joins: the collector lets the heap grow to
// twice what is live before it collects, and the runtime returns free memory
// to the OS only down to about that goal. An idle relay holding 19 500
// connections kept about 40% more memory than it used. Once the connection
// count has held still for trimQuiet ticks after changing by at least
// trimWave, memTrim collects and returns the free memory at once
// (debug.FreeOSMemory: one forced collection, a few milliseconds for a heap
// of tens of MB, run on the tick goroutine while the loops work on).
const (
	trimQuiet = 2    // ticks (seconds) without a change in open connections
	trimWave  = 1000 // connections opened or closed since the last trim
)

// memTrim decides when to trim. Owned by the tick goroutine.
type memTrim struct {
	base  int64 // open connections at the last trim
	prev  int64 // open connections at the previous tick
	quiet int   // ticks since prev changed
}

// tick is called once a second with the open connections; it reports
// whether it trimmed.
func (m *memTrim) tick(conns int64) bool {
	if conns != m.prev {
		m.prev, m.quiet = conns, 0
		return false
	}
	if m.quiet++; m.quiet < trimQuiet || abs64(conns-m.base) < trimWave {
		return false
	}
	m.base = conns
	debug.FreeOSMemory()
	return true
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
