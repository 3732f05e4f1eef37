package shard

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchRoom joins n counting members to room, spread over the env's loops,
// and waits until the joins' presence is written.
func benchRoom(b *testing.B, e *testEnv, room string, n int) {
	b.Helper()
	per := make([][]*countMember, len(e.loops))
	for i := range n {
		li := i % len(e.loops)
		per[li] = append(per[li], &countMember{})
	}
	for li, l := range e.loops {
		var err error
		l.do(b, func() {
			for i, m := range per[li] {
				if _, _, err = e.hub.Join(room, &JoinRequest{LoopIndex: li, Loop: l, Member: m,
					User: fmt.Sprintf("u%d-%d", li, i), Name: "N"}); err != nil {
					return
				}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	settle(b, e.hub)
}

// waitDeliveries waits until Stats.Deliveries reaches want.
func waitDeliveries(b *testing.B, h *Hub, want int64) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for h.Stats.Deliveries.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries after a minute", h.Stats.Deliveries.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkFanout publishes one message per iteration into a room whose
// members are spread over two loops, and waits at the end until every member
// has every message. Batching coalesces what arrives while a flush is in
// flight, as in the relay.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			e := newEnv(b, Config{Loops: 2})
			const room = "bench:fanout"
			benchRoom(b, e, room, n)
			msg := &Message{From: "bench", Name: "Bench", Body: strings.Repeat("x", 64)}
			st := &e.hub.Stats
			del0, bat0, wr0 := st.Deliveries.Load(), st.Batches.Load(), st.Writes.Load()

			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := e.hub.Publish(room, msg); err != nil {
					b.Fatal(err)
				}
			}
			waitDeliveries(b, e.hub, del0+int64(b.N)*int64(n))
			elapsed := time.Since(start)
			b.StopTimer()

			deliveries := st.Deliveries.Load() - del0
			b.ReportMetric(float64(deliveries)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(b.N)/float64(max(1, st.Batches.Load()-bat0)), "msgs/batch")
			b.ReportMetric(float64(st.Writes.Load()-wr0)/float64(b.N), "writes/op")
		})
	}
}

// BenchmarkPublish has parallel publishers sending into one room of 100
// members on two loops.
func BenchmarkPublish(b *testing.B) {
	const members = 100
	e := newEnv(b, Config{Loops: 2})
	const room = "bench:publish"
	benchRoom(b, e, room, members)
	msg := &Message{From: "bench", Name: "Bench", Body: strings.Repeat("x", 64)}
	st := &e.hub.Stats
	msgs0, del0 := st.Messages.Load(), st.Deliveries.Load()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.hub.Publish(room, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	published := st.Messages.Load() - msgs0
	waitDeliveries(b, e.hub, del0+published*members)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(published)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Deliveries.Load()-del0)/elapsed.Seconds(), "deliveries/s")
}
