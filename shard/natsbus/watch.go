package natsbus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/shard"
)

// How a node follows its rooms (docs/cluster.md, "One consumer per node"):
// one ordered consumer of the whole stream per node (live, started at Open
// from the stream's end) hands every record to the watches of its room; a
// watch starting catches up from the room's oldest kept record with an
// ordered consumer of the room's subject, stopped once it reached the
// room's last record, meanwhile keeping what live hands it (pending). One
// consumer per followed room made nats-server scan, for every record each
// of them received, every record stored since that consumer's previous
// one (filestore firstMatching): a cost per record that grows with the
// rooms (BENCHMARKS.md, "Lobbies spread over three relays").

// maxPending bounds the records live keeps for a watch still catching up;
// past it the catch-up starts over from where it is (errOverflow).
var maxPending = 4096 // a var for TestCatchUpWhilePublishing

// afterTarget, when set (tests), runs after a catch-up read the room's
// last record and before it reads the records.
var afterTarget func()

var errOverflow = errors.New("natsbus: records arrived faster than the room caught up")

// watcher is one Watch of a room.
type watcher struct {
	p *publisher
	f shard.Feed

	// mu orders the records fed: live's goroutine and the catch-up
	// consumer's goroutine both feed under it. Held while calling the feed.
	mu       sync.Mutex
	live     bool     // caught up: live's records are fed as they come
	catching bool     // a catch-up consumer feeds; false once it is done (late calls are ignored)
	last     uint64   // stream sequence of the last record fed
	target   uint64   // the catch-up is done at this stream sequence
	pending  []rawRec // live's records while catching up, stream order
	overflow bool     // pending passed maxPending: it was dropped
	reached  chan struct{}
}

type rawRec struct {
	seq  uint64
	data []byte
}

// Watch feeds f the room's records, from the oldest kept, until stop
// (shard.Bus). Any goroutine.
func (b *Bus) Watch(room string, f shard.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	p := b.watched(room)
	w := &watcher{p: p, f: f}
	b.addWatcher(w)
	b.m.watches.Inc() // a room is followed from Watch to stop, not only while it catches up
	go b.watch(ctx, w)
	stopPresence := b.followPresence(room, f)
	var once sync.Once
	return func() {
		cancel()
		stopPresence()
		once.Do(func() {
			b.m.watches.Dec()
			b.removeWatcher(w)
			p.mu.Lock()
			p.watches--
			p.mu.Unlock()
		})
	}
}

// addWatcher and removeWatcher change the watchers of a subject, copying
// its slice (live reads it without a lock: a record of a followed room
// costs one sync.Map load, no lock shared with the joins). Any goroutine.
func (b *Bus) addWatcher(w *watcher) {
	b.liveMu.Lock()
	defer b.liveMu.Unlock()
	ws := b.watchersOf(w.p.subj)
	b.watchers.Store(w.p.subj, append(ws[:len(ws):len(ws)], w))
}

func (b *Bus) removeWatcher(w *watcher) {
	b.liveMu.Lock()
	defer b.liveMu.Unlock()
	ws := b.watchersOf(w.p.subj)
	var kept []*watcher
	for _, o := range ws {
		if o != w {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 {
		b.watchers.Delete(w.p.subj)
	} else {
		b.watchers.Store(w.p.subj, kept)
	}
}

// watchersOf returns the watches of a subject. Any goroutine.
func (b *Bus) watchersOf(subj string) []*watcher {
	ws, _ := b.watchers.Load(subj)
	l, _ := ws.([]*watcher)
	return l
}

// watched returns the room's publisher, counting one more watch of the room,
// which tells it every record applied (learn). Under b.mu, so that the sweep
// cannot drop the publisher in between. Any goroutine.
func (b *Bus) watched(room string) *publisher {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.publisherLocked(room)
	p.mu.Lock()
	p.watches++
	p.mu.Unlock()
	return p
}

// startLive starts the node's consumer of every room's records, from the
// stream's end as the stream's info at Open tells it (a record stored since
// is delivered too). Called once by Open.
func (b *Bus) startLive(from uint64) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjectPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(b.onLive) // one goroutine at a time; ordered: resumes after its last record on a reset
	if err != nil {
		return err
	}
	b.liveStop = cc.Stop
	return nil
}

// onLive hands a record to the watches of its room (live's goroutine).
// Records of rooms this node does not follow are not decoded.
func (b *Bus) onLive(msg jetstream.Msg) {
	ws := b.watchersOf(msg.Subject())
	if len(ws) == 0 {
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	seq := md.Sequence.Stream
	for _, w := range ws {
		w.mu.Lock()
		switch {
		case w.live:
			w.feedLocked(b, seq, msg.Data())
		case !w.overflow && len(w.pending) < maxPending:
			w.pending = append(w.pending, rawRec{seq, msg.Data()})
		default:
			w.overflow, w.pending = true, nil
			w.signalLocked()
		}
		w.mu.Unlock()
	}
}

// feedLocked feeds the record at stream sequence seq unless it was fed
// already. w.mu held.
func (w *watcher) feedLocked(b *Bus, seq uint64, data []byte) {
	if seq <= w.last {
		return
	}
	w.last = seq
	var rec record
	if err := msgpack.Unmarshal(data, &rec); err != nil {
		b.m.bad.Inc()
		return
	}
	w.p.learn(seq, rec.S) // before the feed has it: a publish it prompts numbers after it
	rec.apply(w.f, b)
}

func (w *watcher) signalLocked() {
	if w.reached != nil {
		select {
		case w.reached <- struct{}{}:
		default:
		}
	}
}

// watch catches w up until ctx ends, starting over after a failure to set
// the catch-up up (NATS unreachable) or an overflow.
func (b *Bus) watch(ctx context.Context, w *watcher) {
	subj := w.p.subj
	wait := b.cfg.ReconnectWait
	for ctx.Err() == nil {
		err := b.catchUp(ctx, w)
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, errOverflow) {
			continue
		}
		b.log.Warn("cannot follow a room in NATS", "subject", subj, "err", err)
		w.f.Synced(err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// catchUp feeds the room's records after the last fed, up to the room's
// last record, then the ones live kept meanwhile, and leaves the room to
// live (nil); or fails.
func (b *Bus) catchUp(ctx context.Context, w *watcher) error {
	subj := w.p.subj
	setup, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if !b.Connected() {
		return shard.ErrUnavailable
	}
	reached := make(chan struct{}, 1)
	w.mu.Lock()
	w.pending, w.overflow, w.reached = nil, false, reached // live keeps every record from here on
	from := w.last + 1
	w.mu.Unlock()
	raw, err := b.stream.GetLastMsgForSubject(setup, subj)
	var target uint64 // records after it reach live after pending was emptied above
	switch {
	case err == nil:
		target = raw.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return err
	}
	w.mu.Lock()
	w.target = target
	done := w.last >= target
	w.mu.Unlock()
	if afterTarget != nil {
		afterTarget()
	}
	if !done {
		cons, err := b.stream.OrderedConsumer(setup, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj},
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.catching = true
		w.mu.Unlock()
		cc, err := cons.Consume(func(msg jetstream.Msg) { // one goroutine at a time
			md, err := msg.Metadata()
			if err != nil {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if !w.catching {
				return
			}
			w.feedLocked(b, md.Sequence.Stream, msg.Data())
			if w.last >= w.target { // the rest is live's, kept in pending
				w.catching = false
				w.signalLocked()
			}
		})
		if err != nil {
			return err
		}
		select {
		case <-reached:
		case <-ctx.Done():
		}
		w.mu.Lock()
		w.catching = false
		w.mu.Unlock()
		cc.Stop()
		if ctx.Err() != nil {
			return nil
		}
	}
	w.mu.Lock()
	if w.overflow {
		w.mu.Unlock()
		return errOverflow
	}
	for _, r := range w.pending { // stream order, after the records fed
		w.feedLocked(b, r.seq, r.data)
	}
	w.pending, w.live, w.reached = nil, true, nil
	w.mu.Unlock()
	w.f.Synced(nil)
	return nil
}

// apply feeds a record to f.
func (rec *record) apply(f shard.Feed, b *Bus) {
	switch {
	case len(rec.M) > 0:
		b.m.in.Add(float64(len(rec.M)))
		f.Ingest(rec.M)
	case rec.D > 0 || rec.C:
		f.Control(shard.Control{Delete: rec.D, Clear: rec.C})
	}
}
