package natsbus

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/shard"
)

// Watch feeds f the room's records, from the oldest kept, with an ordered
// consumer of the room's subject, until stop (shard.Bus). Any goroutine.
func (b *Bus) Watch(room string, f shard.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	p := b.watched(room)
	go b.watch(ctx, p, f)
	stopPresence := b.followPresence(room, f)
	var once sync.Once
	return func() {
		cancel()
		stopPresence()
		once.Do(func() {
			p.mu.Lock()
			p.watches--
			p.mu.Unlock()
		})
	}
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

// watch follows p's subject until ctx ends, starting over after a failure to
// set the consumer up (NATS unreachable).
func (b *Bus) watch(ctx context.Context, p *publisher, f shard.Feed) {
	subj := p.subj
	b.m.watches.Inc()
	defer b.m.watches.Dec()
	wait := b.cfg.ReconnectWait
	for ctx.Err() == nil {
		err := b.follow(ctx, p, f)
		if err == nil || ctx.Err() != nil {
			return
		}
		b.log.Warn("cannot follow a room in NATS", "subject", subj, "err", err)
		f.Synced(err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// follow consumes p's subject until ctx ends (nil), or fails to start.
func (b *Bus) follow(ctx context.Context, p *publisher, f shard.Feed) error {
	subj := p.subj
	setup, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if !b.Connected() {
		return shard.ErrUnavailable
	}
	raw, err := b.stream.GetLastMsgForSubject(setup, subj)
	var target uint64 // the stream sequence to reach before the room is synced
	switch {
	case err == nil:
		target = raw.Sequence
	case err != jetstream.ErrMsgNotFound:
		return err
	}
	cons, err := b.stream.OrderedConsumer(setup, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return err
	}
	synced := target == 0
	if synced {
		f.Synced(nil)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { // one goroutine at a time
		md, mdErr := msg.Metadata()
		var rec record
		if err := msgpack.Unmarshal(msg.Data(), &rec); err != nil {
			b.m.bad.Inc()
		} else {
			if mdErr == nil { // before the feed has it: a publish it prompts numbers after it
				p.learn(md.Sequence.Stream, rec.S)
			}
			rec.apply(f, b)
		}
		if !synced && mdErr == nil && md.Sequence.Stream >= target {
			synced = true
			f.Synced(nil)
		}
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
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
