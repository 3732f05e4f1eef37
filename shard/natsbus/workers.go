package natsbus

import "time"

// workerIdle is how long a publisher goroutine waits for another room's
// publisher to run before it ends.
const workerIdle = 10 * time.Second

// spawn runs f on an idle worker goroutine, or on a new one when none is
// idle. A publish in a quiet room (a lobby: a message every second or so)
// used to start a goroutine of its own, which grew its stack through the
// JetStream publish every time (runtime.newstack/copystack, 5% of a relay's
// CPU in the lobby run of BENCHMARKS.md); a reused worker keeps its stack.
// There is no cap: a publisher blocked on a slow round trip never holds
// another room's back. Any goroutine.
func (b *Bus) spawn(f func()) {
	select {
	case b.work <- f:
	default:
		go b.worker(f)
	}
}

// worker runs f, then the functions spawn hands it, until it has been idle
// for workerIdle or the bus is closed.
func (b *Bus) worker(f func()) {
	b.m.workers.Inc()
	defer b.m.workers.Dec()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-b.work:
		case <-t.C:
			return
		case <-b.ctx.Done():
			return
		}
	}
}
