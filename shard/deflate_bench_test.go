package shard

import (
	"fmt"
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
