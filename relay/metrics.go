package relay

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzhttp"
	"github.com/klauspost/compress/gzhttp/writer"
	"github.com/klauspost/compress/gzhttp/writer/gzkp"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roomcast/roomcast/relay/proto"
)

// handshakeReasons are the label values of roomcast_handshake_failures_total.
var handshakeReasons = refusalReasons()

// metrics are the relay's Prometheus collectors, created once with their
// label values resolved, so that counting does no look-ups on hot paths.
type metrics struct {
	reg *prometheus.Registry

	accepted       prometheus.Counter // TCP connections accepted
	handshakes     prometheus.Counter
	handshakeFails map[string]prometheus.Counter
	openUser       prometheus.Gauge
	openZ          prometheus.Gauge // open WebSocket connections that negotiated permessage-deflate
	openAnon       prometheus.Gauge
	openSSE        prometheus.Gauge
	framesIn       prometheus.Counter // whole data messages received
	sendsAccepted  prometheus.Counter
	rejectedBy     map[proto.Code]prometheus.Counter
	disconnects    map[proto.CloseCode]prometheus.Counter
	slowConsumers  prometheus.Counter
	rateLimited    map[string]prometheus.Counter // by kind
	apiCalls       prometheus.Counter
	modActions     map[string]prometheus.Counter // by action
	panics         *panicStats
	hook           [numHookOutcomes]prometheus.Counter // publish hook calls by outcome (hook.go)
	hookSeconds    prometheus.Histogram                // publish hook call time

	acceptToSequenced prometheus.Histogram
	fanout            prometheus.Histogram // sequenced to written, for the last loop of a flush
	handshake         prometheus.Histogram
	batchSize         prometheus.Histogram
}

// rateLimitKinds are the label values of roomcast_ratelimit_hits_total.
var rateLimitKinds = []string{"send", "slow_mode", "join", "refresh", "ip", "room"}

// latencyBuckets span 50us to about 10s, for a relay.
var latencyBuckets = prometheus.ExponentialBucketsRange(50e-6, 10, 20)

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{reg: reg, handshakeFails: map[string]prometheus.Counter{},
		rejectedBy: map[proto.Code]prometheus.Counter{}, disconnects: map[proto.CloseCode]prometheus.Counter{}}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	m.accepted = counter("roomcast_connections_accepted_total", "TCP connections accepted on the public listener.")
	m.handshakes = counter("roomcast_handshakes_total", "WebSocket upgrades completed.")
	m.framesIn = counter("roomcast_messages_received_total", "Whole client messages (frames or reassembled fragments) received.")
	m.sendsAccepted = counter("roomcast_messages_accepted_total", "Client send frames sequenced into a room.")
	m.slowConsumers = counter("roomcast_slow_consumers_total", "Connections closed because their outbound queue passed max-outbound (4009).")
	m.panics = newPanicStats(f)
	m.apiCalls = counter("roomcast_admin_api_requests_total", "Admin API calls answered (any status).")
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		f(h)
		return h
	}
	m.acceptToSequenced = hist("roomcast_accept_to_sequenced_seconds", "From reading a send frame off the socket to its message being sequenced.", latencyBuckets)
	m.fanout = hist("roomcast_fanout_seconds", "From a flush's oldest message being sequenced to the last member of the room written (fan-out time of a whole room).", latencyBuckets)
	m.handshake = hist("roomcast_handshake_seconds", "From accepting a connection to the WebSocket upgrade done.", latencyBuckets)
	m.batchSize = hist("roomcast_batch_messages", "Messages per batch frame.", prometheus.ExponentialBuckets(1, 2, 10))
	m.hookSeconds = hist("roomcast_publish_hook_seconds", "Time of publish hook calls, answered or not.", latencyBuckets)
	hook := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_publish_hook_requests_total",
		Help: "Messages sent through a publish hook, by outcome: allow, rewrite, deny, timeout, error (on_error decided), overloaded (max_inflight: unavailable, not called)."}, []string{"outcome"})
	f(hook)
	for i, n := range hookOutcomeNames {
		m.hook[i] = hook.WithLabelValues(n)
	}
	rl := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_ratelimit_hits_total",
		Help: "Requests refused by a rate limit, by kind."}, []string{"kind"})
	f(rl)
	mods := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_moderation_actions_total",
		Help: "Moderation actions done (WebSocket mod frames and POST /api/mod), by action."}, []string{"action"})
	f(mods)
	m.modActions = map[string]prometheus.Counter{}
	for _, a := range proto.AllActions {
		m.modActions[a] = mods.WithLabelValues(a)
	}
	m.rateLimited = map[string]prometheus.Counter{}
	for _, k := range rateLimitKinds {
		m.rateLimited[k] = rl.WithLabelValues(k)
	}

	fails := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_handshake_failures_total",
		Help: "Upgrade requests refused, by reason."}, []string{"reason"})
	f(fails)
	for _, r := range handshakeReasons {
		m.handshakeFails[r] = fails.WithLabelValues(r)
	}
	rej := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_messages_rejected_total",
		Help: "Client frames answered with an error, by error code."}, []string{"code"})
	f(rej)
	for _, c := range proto.AllCodes {
		m.rejectedBy[c] = rej.WithLabelValues(string(c))
	}
	disc := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_disconnects_total",
		Help: "WebSocket connections closed by the relay or answered to a close, by close code."}, []string{"code"})
	f(disc)
	for _, c := range proto.AllCloseCodes {
		m.disconnects[c] = disc.WithLabelValues(strconv.Itoa(int(c)))
	}
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roomcast_connections",
		Help: "Open WebSocket connections, by kind and whether anonymous."}, []string{"kind", "anonymous"})
	f(open)
	m.openUser, m.openAnon = open.WithLabelValues("ws", "false"), open.WithLabelValues("ws", "true")
	m.openSSE = open.WithLabelValues("sse", "any")
	m.openZ = prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_compressed_connections",
		Help: "Open WebSocket connections that negotiated permessage-deflate (part of roomcast_connections)."})
	f(m.openZ)

	st := &s.hub.Stats
	gauge := func(name, help string, fn func() float64) {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
	}
	cfunc := func(name, help string, fn func() float64) {
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
	}
	gauge("roomcast_rooms", "Rooms held in memory.", func() float64 { return float64(st.Rooms.Load()) })
	gauge("roomcast_members", "Room memberships (a connection in two rooms counts twice).", func() float64 { return float64(st.Members.Load()) })
	cfunc("roomcast_messages_sequenced_total", "Messages given a seq (clients and API).", func() float64 { return float64(st.Messages.Load()) })
	cfunc("roomcast_deliveries_total", "Messages written to members (a batch of n to m members counts n*m).", func() float64 { return float64(st.Deliveries.Load()) })
	cfunc("roomcast_member_writes_total", "Writes of room frames to members.", func() float64 { return float64(st.Writes.Load()) })
	cfunc("roomcast_batches_total", "Batches built (each counted once, however many wire formats it is encoded in).", func() float64 { return float64(st.Batches.Load()) })
	cfunc("roomcast_flushes_total", "Room flushes handed to the event loops.", func() float64 { return float64(st.Flushes.Load()) })
	cfunc("roomcast_bytes_received_total", "Bytes read from public connections.", func() float64 { return float64(s.sumLoops(func(l *loop) int64 { return l.bytesIn.Load() })) })
	cfunc("roomcast_bytes_sent_total", "Bytes written to public connections.", func() float64 { return float64(s.sumLoops(func(l *loop) int64 { return l.bytesOut.Load() })) })

	for i := 0; i < s.cfg.Loops; i++ {
		lbl := prometheus.Labels{"loop": strconv.Itoa(i)}
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_loop_connections", Help: "Connections owned by each event loop.", ConstLabels: lbl},
			func() float64 { return float64(s.loopStat(i, func(l *loop) int64 { return l.conns.Load() })) }))
		f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomcast_loop_busy_seconds_total", Help: "Time each event loop spent handling traffic and writing flushes.", ConstLabels: lbl},
			func() float64 { return float64(s.loopStat(i, func(l *loop) int64 { return l.busy.Load() })) / 1e9 }))
	}
	gauge("roomcast_outbound_queued_bytes", "Bytes queued in the relay for slow sockets, summed at the last tick (1s).", func() float64 {
		return float64(s.sumLoops(func(l *loop) int64 { return l.queued.Load() }))
	})
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (s *Server) sumLoops(fn func(*loop) int64) int64 {
	var n int64
	s.eachLoop(func(l *loop) { n += fn(l) })
	return n
}

func (s *Server) loopStat(i int, fn func(*loop) int64) int64 {
	if p := s.loops.Load(); p != nil && i < len(*p) {
		return fn((*p)[i])
	}
	return 0
}

func (m *metrics) handshakeFail(reason string) { m.handshakeFails[reason].Inc() }
func (m *metrics) rejected(c proto.Code) prometheus.Counter {
	return m.rejectedBy[c]
}
func (m *metrics) disconnect(c proto.CloseCode) prometheus.Counter { return m.disconnects[c] }
func (m *metrics) open(anon bool) prometheus.Gauge {
	if anon {
		return m.openAnon
	}
	return m.openUser
}

// observer feeds the shard's fan-out measurements to the metrics.
type observer struct{ s *Server }

func (o observer) BatchBuilt(msgs int)          { o.s.metrics.batchSize.Observe(float64(msgs)) }
func (o observer) FlushWritten(d time.Duration) { o.s.metrics.fanout.Observe(d.Seconds()) }
func (o observer) LoopBusy(loop int, d time.Duration) {
	if p := o.s.loops.Load(); p != nil && loop < len(*p) {
		(*p)[loop].busy.Add(int64(d))
	}
}

// metricsGzipBuffer is how much of the exposition is compressed at a time:
// a stateless compressor compresses each Write on its own, and the
// encoder writes a metric family at a time.
const metricsGzipBuffer = 32 << 10

// metricsHandler serves /metrics, gzip-compressed when the scraper accepts
// gzip (klauspost/compress gzhttp: Accept-Encoding, Vary, small bodies
// left plain), at level StatelessCompression instead of promhttp's own
// gzip: promhttp pools a compress/gzip writer of about 800 KB after the
// first compressed scrape, and a scrape every 15 s keeps it for good; the
// stateless one keeps nothing of its own between scrapes, for a body
// about 15% larger (the exposition is tens of KB). Called on admin request
// goroutines.
func (s *Server) metricsHandler() http.Handler {
	plain := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{DisableCompression: true})
	batched := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := bufferedResponse{ResponseWriter: w, buf: bufio.NewWriterSize(w, metricsGzipBuffer)}
		plain.ServeHTTP(bw, r)
		_ = bw.buf.Flush()
	})
	wrap, err := gzhttp.NewWrapper(gzhttp.CompressionLevel(kgzip.StatelessCompression), gzhttp.EnableZstd(false),
		gzhttp.Implementation(writer.GzipWriterFactory{Levels: gzkp.Levels, New: newScrapeGzip}))
	if err != nil { // only for invalid options, which these are not
		panic(err)
	}
	return wrap(batched)
}

// newScrapeGzip makes a gzip writer for one scrape, not taken from a pool:
// gzhttp's default pools its writers, which kept about 300 KB between
// scrapes (TestMetricsGzipKeepsLittle).
func newScrapeGzip(w io.Writer, level int) writer.GzipWriter {
	zw, _ := kgzip.NewWriterLevel(w, level) // gzhttp passes a level within gzkp.Levels
	return zw
}

// bufferedResponse batches a handler's writes (metricsHandler).
type bufferedResponse struct {
	http.ResponseWriter
	buf *bufio.Writer
}

func (b bufferedResponse) Write(p []byte) (int, error) { return b.buf.Write(p) }
