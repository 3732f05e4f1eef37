package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// BenchmarkRelayFanout publishes into one room whose members are real
// WebSocket connections on loopback (reading and discarding), and reports
// deliveries per second: messages written to members' sockets. One process
// holds both ends, so 5 000 members use 10 000 descriptors; bigger rooms are
// the bench tool's job (several processes).
func BenchmarkRelayFanout(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			srv := startRelay(b, func(c *relay.Config) { c.MaxOutbound = 64 << 20 })
			members := discardMembers(b, srv, "bench", n)
			defer members.close()
			st := &srv.Hub().Stats
			msg := &shard.Message{From: "bot", Name: "Bot", Body: strings.Repeat("x", 100)}
			startDeliveries, startWrites := st.Deliveries.Load(), st.Writes.Load()
			want := startDeliveries + int64(b.N)*int64(n)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := srv.Hub().Publish("bench", msg); err != nil {
					b.Fatal(err)
				}
			}
			for deadline := time.Now().Add(time.Minute); st.Deliveries.Load() < want; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("delivered %d of %d", st.Deliveries.Load()-startDeliveries, want-startDeliveries)
				}
			}
			el := time.Since(start)
			b.StopTimer()
			writes := st.Writes.Load() - startWrites
			b.ReportMetric(float64(b.N)*float64(n)/el.Seconds(), "deliveries/s")
			b.ReportMetric(float64(writes)/el.Seconds(), "writes/s")
			b.ReportMetric(float64(b.N)*float64(n)/float64(writes), "msgs/write")
		})
	}
}
