package shard

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchRoomZ is benchRoom with members that negotiated compression (z) or
// not.
func benchRoomZ(b *testing.B, e *testEnv, room string, n int, z bool) []*countMember {
	b.Helper()
	per := make([][]*countMember, len(e.loops))
	var all []*countMember
	for i := range n {
		li := i % len(e.loops)
		m := &countMember{}
		per[li] = append(per[li], m)
		all = append(all, m)
	}
	for li, l := range e.loops {
		var err error
		l.do(b, func() {
			for i, m := range per[li] {
				if _, _, err = e.hub.Join(room, &JoinRequest{LoopIndex: li, Loop: l, Member: m,
					User: fmt.Sprintf("u%d-%d", li, i), Name: "N", Compressed: z}); err != nil {
					return
				}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	settle(b, e.hub)
	return all
}

// BenchmarkFanoutCompressed is BenchmarkFanout with chat-like messages (100
// bytes of body), with members that negotiated compression and without:
// B/delivery is what a member receives per message, allocs/op what a
// message costs (it must not grow with members), ns/op the publisher's and
// flusher's CPU per message (the compression included).
func BenchmarkFanoutCompressed(b *testing.B) {
	bodies := make([]string, 1024)
	for i := range bodies {
		bodies[i] = chatBody(i, 100)
	}
	for _, n := range []int{1000} {
		for _, z := range []bool{false, true} {
			b.Run(fmt.Sprintf("members=%d/compressed=%v", n, z), func(b *testing.B) {
				e := newEnv(b, Config{Loops: 2})
				const room = "bench:fanoutz"
				members := benchRoomZ(b, e, room, n, z)
				st := &e.hub.Stats
				del0, bat0, wr0 := st.Deliveries.Load(), st.Batches.Load(), st.Writes.Load()
				e.loops[0].do(b, func() {})
				e.loops[1].do(b, func() {})
				bytes0 := members[0].bytes
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					if _, err := e.hub.Publish(room, &Message{From: "bench", Name: "Bench", Body: bodies[i%len(bodies)]}); err != nil {
						b.Fatal(err)
					}
				}
				waitDeliveries(b, e.hub, del0+int64(b.N)*int64(n))
				elapsed := time.Since(start)
				b.StopTimer()
				settle(b, e.hub)
				e.loops[0].do(b, func() {}) // the member's loop is idle: its counts may be read
				b.ReportMetric(float64(st.Deliveries.Load()-del0)/elapsed.Seconds(), "deliveries/s")
				b.ReportMetric(float64(b.N)/float64(max(1, st.Batches.Load()-bat0)), "msgs/batch")
				b.ReportMetric(float64(st.Writes.Load()-wr0)/float64(b.N), "writes/op")
				b.ReportMetric(float64(members[0].bytes-bytes0)/float64(b.N), "B/delivery")
			})
		}
	}
}

// windowObserver records how long each flush's oldest message waited.
type windowObserver struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (o *windowObserver) BatchBuilt(int)              {}
func (o *windowObserver) LoopBusy(int, time.Duration) {}
func (o *windowObserver) FlushWritten(d time.Duration) {
	o.mu.Lock()
	o.waits = append(o.waits, d)
	o.mu.Unlock()
}

// BenchmarkFlushWindow publishes paced messages (an op is one message, at
// 50 or 200 msgs/s: run it with -benchtime 60x) into a room of 1 000
// members with flush windows of 0 to 100 ms, and reports messages per
// write, the process's CPU per delivery (getrusage: publisher, flusher and
// the fake loops' counting members) and how long the oldest message of
// each flush waited (mean and max).
func BenchmarkFlushWindow(b *testing.B) {
	const members = 1000
	for _, rate := range []int{50, 200} {
		for _, w := range []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
			b.Run(fmt.Sprintf("rate=%d/window=%v", rate, w), func(b *testing.B) { benchWindow(b, rate, members, w) })
		}
	}
}

func benchWindow(b *testing.B, rate, members int, w time.Duration) {
	obs := &windowObserver{}
	e := newEnv(b, Config{Loops: 2, Observer: obs, Policy: policies(map[string]Policy{"win": {FlushInterval: w}})})
	const room = "win:bench"
	benchRoomZ(b, e, room, members, false)
	obs.mu.Lock()
	obs.waits = obs.waits[:0]
	obs.mu.Unlock()
	st := &e.hub.Stats
	del0, wr0 := st.Deliveries.Load(), st.Writes.Load()
	cpu0 := cpuTime()
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		if _, err := e.hub.Publish(room, &Message{From: "bench", Body: chatBody(i, 100)}); err != nil {
			b.Fatal(err)
		}
	}
	waitDeliveries(b, e.hub, del0+int64(b.N)*int64(members))
	b.StopTimer()
	cpu := cpuTime() - cpu0
	obs.mu.Lock()
	var sum, worst time.Duration
	for _, d := range obs.waits {
		sum += d
		worst = max(worst, d)
	}
	n := len(obs.waits)
	obs.mu.Unlock()
	b.ReportMetric(float64(st.Deliveries.Load()-del0)/float64(max(1, st.Writes.Load()-wr0)), "msgs/write")
	b.ReportMetric(float64(sum.Microseconds())/float64(max(1, n))/1000, "wait-mean-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "wait-max-ms")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(st.Deliveries.Load()-del0), "cpu-ns/delivery")
}

// cpuTime is the CPU time the process used so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
