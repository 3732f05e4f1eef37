package relay

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
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
//
// What the trim cannot return is the free space inside spans that still
// hold a live object: the handshakes' garbage of the last collection cycle,
// freed in the spans that the connections' own small objects (gnet's
// addresses, memberships) share with it. That is about the garbage of one
// cycle, so it grows with the collector's GOGC: while connections arrive or
// leave at waveRate a second or more, memTrim lowers the collector's goal
// to waveGCPercent, and puts it back after trimQuiet ticks in which the
// count moved by less (relay/proto/PROTOCOL.md, "Memory per connection").
const (
	trimQuiet     = 2    // ticks (seconds) without a change in open connections
	trimWave      = 1000 // connections opened or closed since the last trim
	waveRate      = 500  // connections opened or closed in one tick that start a wave
	waveGCPercent = 25   // the collector's GOGC during a wave (if it is higher)
)

// memTrim decides when to trim. Owned by the tick goroutine.
type memTrim struct {
	base   int64 // open connections at the last trim
	prev   int64 // open connections at the previous tick
	quiet  int   // ticks since prev changed
	calm   int   // ticks since the count last moved by waveRate or more
	waving bool  // counted in gcWaves
}

// tick is called once a second with the open connections; it reports
// whether it trimmed.
func (m *memTrim) tick(conns int64) bool {
	m.wave(abs64(conns - m.prev))
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

// wave starts a wave when the count moved by waveRate or more in a tick,
// and ends it after trimQuiet ticks in which it moved by less (a relay
// whose count never holds still, with a few connections a second, is not
// in a wave).
func (m *memTrim) wave(moved int64) {
	if moved >= waveRate {
		m.calm = 0
		if !m.waving {
			m.waving = gcWaves.enter()
		}
		return
	}
	if m.calm++; m.calm >= trimQuiet {
		m.end()
	}
}

// end ends the trim's wave, if it is in one. The tick goroutine calls it
// when it stops.
func (m *memTrim) end() {
	if m.waving {
		m.waving = false
		gcWaves.leave()
	}
}

// gcWaves counts the relays of the process (tests run several) that are in
// a wave: the collector's goal is the process's, so the first to enter
// lowers it and the last to leave puts back the one it found. Any relay's
// tick goroutine calls enter and leave.
var gcWaves waveGC

type waveGC struct {
	mu  sync.Mutex
	n   int // relays in a wave
	old int // the GOGC to put back
}

// enter lowers the collector's goal to waveGCPercent unless it is that low
// already or off; then it reports false and counts nothing.
func (w *waveGC) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		if old := gcPercent(); old < 0 || old <= waveGCPercent {
			return false // not even for an instant: at 25 a GOGC=off heap would collect
		}
		w.old = debug.SetGCPercent(waveGCPercent)
	}
	w.n++
	return true
}

// leave undoes one enter that reported true.
func (w *waveGC) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n--; w.n == 0 {
		debug.SetGCPercent(w.old)
	}
}

// gcPercent returns the collector's GOGC, -1 when it is off, without
// setting it.
func gcPercent() int {
	s := [1]rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s[:])
	return int(int64(s[0].Value.Uint64()))
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
