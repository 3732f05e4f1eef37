// Package natsbus is the shard.Bus of relays that share rooms through NATS
// JetStream, or keep them durable in an embedded NATS server.
//
// One stream (Config.Stream) holds every room: a room's subject is
// Subject(room), and each stream message is a record of one or more of the
// room's messages, numbered by the node that published it. A node publishes
// a room's pending messages with the expected last sequence of the room's
// subject (optimistic concurrency), as its own last PubAck or its watch of
// the room tell it: on a conflict another node published first, so it takes
// the winning record from its watch (or reads the stream), numbers again and
// retries.
// JetStream accepting the record is what makes the messages exist: only then
// are their senders answered, and every node (the publisher too) learns them
// from its one ordered consumer of the whole stream, after catching a room up
// with an ordered consumer of the room's subject (watch.go). See
// docs/cluster.md.
package natsbus

import (
	"context"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// Config configures a Bus. Zero values are replaced by the defaults noted.
type Config struct {
	URL               string        // NATS servers, comma separated; zero means an embedded server (DataDir)
	DataDir           string        // embedded server's JetStream file store, when URL is zero
	Stream            string        // stream name; zero means "ROOMCAST"
	Replicas          int           // stream replicas when this node creates it; zero means 1
	MaxMsgsPerSubject int64         // records kept per room; zero means 1000 (set it to the largest history a room keeps)
	PublishTimeout    time.Duration // one publish attempt; zero means 2s
	ReconnectWait     time.Duration // between reconnects to NATS; zero means 250ms
	Name              string        // connection name shown by NATS; zero means "roomcast"
	Logger            *slog.Logger  // zero means slog.Default()
	PresenceTTL       time.Duration // drops another node's presence not repeated within it (node died); zero means 15s (presence.go)
}

// subjectPrefix prefixes every room's subject.
const subjectPrefix = "roomcast.room."

const (
	maxAttempts = 32  // publish attempts of one batch (conflicts included) before it may fail; conflicts are retried past it while the batch is younger than PublishTimeout (a node other nodes keep beating to a busy room is not refused)
	maxBatch    = 256 // messages in one record
)

// Subject returns the subject of a room: '.' (a subject's token separator,
// allowed in room names) becomes '~' (not allowed in room names).
func Subject(room string) string {
	return subjectPrefix + strings.ReplaceAll(room, ".", "~")
}

// Room returns the room of a subject (the inverse of Subject).
func Room(subject string) string {
	return strings.ReplaceAll(strings.TrimPrefix(subject, subjectPrefix), "~", ".")
}

// record is one stream message of a room: consecutive messages, or one
// moderation event ordered with them.
type record struct {
	S uint64          `msgpack:"s"`           // room seq of the last message once this record is applied
	M []proto.Message `msgpack:"m,omitempty"` // messages, seqs ascending by one
	D uint64          `msgpack:"d,omitempty"` // a deleted message
	C bool            `msgpack:"c,omitempty"` // every kept message cleared
}

// Bus is a shard.Bus on JetStream. Open, then hand it to shard.Config.Bus;
// Close when the Hub is done.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	ns     *server.Server // embedded server, or nil
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue // moderation state (mod.go)
	epoch  string
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	m      metrics

	node string // names this node in presence messages

	mu   sync.Mutex
	pubs map[string]*publisher // by room

	work chan func() // unbuffered: hands a publisher to an idle worker (workers.go)

	liveMu   sync.Mutex // serializes changes of watchers; live reads it without a lock
	watchers sync.Map   // subject -> []*watcher; a slice is replaced, never changed (watch.go)
	liveStop func()     // stops the node's consumer of every room (startLive)

	presMu sync.Mutex
	pres   map[*presence]struct{} // followed rooms (presence.go)
}

// Open connects to NATS (or starts the embedded server), and finds or
// creates the stream.
func Open(cfg Config) (*Bus, error) {
	if cfg.Stream == "" {
		cfg.Stream = "ROOMCAST"
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxMsgsPerSubject == 0 {
		cfg.MaxMsgsPerSubject = 1000
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 250 * time.Millisecond
	}
	if cfg.Name == "" {
		cfg.Name = "roomcast"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = 15 * time.Second
	}
	b := &Bus{cfg: cfg, log: cfg.Logger, pubs: map[string]*publisher{}, pres: map[*presence]struct{}{}, node: nuid.Next(),
		work: make(chan func())}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if err := b.connect(); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.openStream(); err != nil {
		b.Close()
		return nil, err
	}
	b.m = newMetrics(b)
	if err := b.startLive(b.stream.CachedInfo().State.LastSeq + 1); err != nil {
		b.Close()
		return nil, fmt.Errorf("natsbus: consumer of the rooms: %w", err)
	}
	go b.sweep()
	go b.presenceLoop()
	return b, nil
}

// maxFollowed bounds the consumers of the stream this relay creates: the
// rooms all nodes follow at once, together.
const maxFollowed = 1 << 24

func (b *Bus) connect() error {
	opts := []nats.Option{nats.Name(b.cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(b.cfg.ReconnectWait),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by Close
				b.log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { b.log.Info("NATS reconnected", "url", nc.ConnectedUrl()) }),
	}
	url := b.cfg.URL
	if url == "" {
		if b.cfg.DataDir == "" {
			return errors.New("natsbus: neither a NATS URL nor a data directory")
		}
		ns, err := startEmbedded(b.cfg.DataDir)
		if err != nil {
			return err
		}
		b.ns = ns
		opts = append(opts, nats.InProcessServer(ns))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("natsbus: cannot connect to NATS: %w", err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc)
	return err
}

// startEmbedded runs a NATS server with JetStream stored in dir, reachable
// only in process (it listens on no port).
func startEmbedded(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{ServerName: "roomcast", JetStream: true, StoreDir: dir,
		DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("natsbus: embedded NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsbus: embedded NATS server did not start")
	}
	return ns, nil
}

// openStream finds the stream, or creates it. An existing stream is used as
// it is (its operator owns replicas and limits).
func (b *Bus) openStream() error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:              b.cfg.Stream,
			Description:       "roomcast rooms: one subject per room, records of sequenced messages",
			Subjects:          []string{subjectPrefix + ">"},
			Storage:           jetstream.FileStorage,
			Replicas:          b.cfg.Replicas,
			MaxMsgsPerSubject: b.cfg.MaxMsgsPerSubject,
			Discard:           jetstream.DiscardOld,
			// Each node follows each of its rooms with a consumer; the
			// server's default (1 000 per stream, and -1 here counts as
			// unset) would cap a cluster at 1 000 followed rooms.
			MaxConsumers: maxFollowed,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another node created it first
			st, err = b.js.Stream(ctx, b.cfg.Stream)
		}
	}
	if err != nil {
		return fmt.Errorf("natsbus: stream %s: %w", b.cfg.Stream, err)
	}
	b.stream = st
	b.epoch = epochOf(b.cfg.Stream, st.CachedInfo().Created)
	if err := b.openMod(ctx); err != nil {
		return fmt.Errorf("natsbus: moderation bucket: %w", err)
	}
	return nil
}

// epochOf names the history of a stream: the same on every node, and new
// when the stream is created anew (a wiped store).
func epochOf(stream string, created time.Time) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(stream))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(created.UnixNano()))
	_, _ = h.Write(b[:])
	sum := h.Sum(nil)
	return epochEncoding.EncodeToString(sum[:5])
}

var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Epoch names the stream's history: every room of the bus has it (for
// shard.Config.Epoch). Any goroutine.
func (b *Bus) Epoch() string { return b.epoch }

// Connected reports whether the connection to NATS is up. Any goroutine.
func (b *Bus) Connected() bool { return b.nc != nil && b.nc.IsConnected() }

// Close stops every watch and publisher, and the connection (and the
// embedded server).
func (b *Bus) Close() {
	b.cancel()
	if b.liveStop != nil {
		b.liveStop()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// Collectors are the bus's Prometheus collectors, for the caller's registry.
func (b *Bus) Collectors() []prometheus.Collector { return b.m.all() }

// sweep drops the state of rooms nobody published in for a while.
func (b *Bus) sweep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.sweepIdle(now)
		}
	}
}

// sweepIdle drops the publishers idle for a minute at now and not watched.
// Under b.mu, taking each publisher's mu inside it (as enqueue and watched
// do), so that a publisher handed out is not dropped before it is used.
func (b *Bus) sweepIdle(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for room, p := range b.pubs {
		if p.idleSince(now) > time.Minute {
			delete(b.pubs, room)
		}
	}
}

var _ shard.Bus = (*Bus)(nil)
