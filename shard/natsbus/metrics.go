package natsbus

import "github.com/prometheus/client_golang/prometheus"

// metrics are the bus's collectors, resolved up front.
type metrics struct {
	publish   prometheus.Histogram // a record's publish, from the first attempt to the last answer
	conflicts prometheus.Counter   // publishes refused because another node published first (each retried)
	failures  prometheus.Counter   // records not stored: senders got unavailable
	lastReads prometheus.Counter   // a room's last record read from the stream by a publisher (lastOf)
	msgs      *prometheus.CounterVec
	out       prometheus.Counter // messages this node stored
	in        prometheus.Counter // messages received from watches
	bad       prometheus.Counter // records that did not decode
	modStored prometheus.Counter // moderation changes stored
	watches   prometheus.Gauge   // rooms followed
	workers   prometheus.Gauge   // publisher goroutines (workers.go)
	connected prometheus.GaugeFunc
}

func newMetrics(b *Bus) metrics {
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_bus_messages_total",
		Help: "Messages through NATS: out = stored by this node, in = received from followed rooms."}, []string{"dir"})
	return metrics{
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_bus_publish_seconds",
			Help:    "Time to store a record of messages in JetStream, retries included.",
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 10, 18)}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_bus_conflicts_total",
			Help: "Publishes refused because another node stored the room's next record first; each is retried."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_bus_publish_failures_total",
			Help: "Records not stored (NATS unreachable or failing): their senders were answered unavailable."}),
		lastReads: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_bus_last_reads_total",
			Help: "Round trips of publishers reading a room's last record from the stream: the room's watch on this node did not know it (first publish, a room not followed, a conflict the watch did not resolve)."}),
		msgs: msgs,
		out:  msgs.WithLabelValues("out"),
		in:   msgs.WithLabelValues("in"),
		bad: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_bus_bad_records_total",
			Help: "Stream messages of a room subject that did not decode as records (skipped)."}),
		modStored: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_bus_mod_stored_total",
			Help: "Bans, timeouts and slow modes this node stored in the moderation bucket."}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_bus_rooms_followed",
			Help: "Rooms this node follows in NATS (it has or lately had members in them)."}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_bus_publish_workers",
			Help: "Goroutines storing rooms' records in JetStream: busy ones and idle ones kept for the next publish."}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_bus_connected",
			Help: "1 while the connection to NATS is up, else 0."}, func() float64 {
			if b.Connected() {
				return 1
			}
			return 0
		}),
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.publish, m.conflicts, m.failures, m.lastReads, m.msgs, m.bad, m.modStored, m.watches, m.workers, m.connected}
}
