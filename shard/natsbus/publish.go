package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// publisher stores one room's messages: one record in flight at a time, the
// messages sent meanwhile coalesced into the next.
type publisher struct {
	b    *Bus
	subj string

	mu    sync.Mutex
	queue []pending // waiting for the next record
	busy  bool      // a goroutine runs the publisher
	idle  time.Time // when it last stopped

	// The room's latest record received by this bus's watch of the room,
	// written by the watch's goroutine (learn), read by the publisher's;
	// under mu. seq and last below are a consistent pair, so the publisher
	// may take them instead of its own at any time: a stale pair costs a
	// conflict, never a wrong seq.
	watches int           // watches of the room on this bus (the sweep keeps the publisher while > 0)
	tipLast uint64        // stream sequence of the latest record a watch received; 0 if none
	tipSeq  uint64        // its s
	tipWake chan struct{} // closed at the next tip, while the publisher waits for one (awaitTip)

	// Owned by the goroutine running the publisher (handed over through mu).
	known bool   // seq and last are the subject's latest as far as we know
	seq   uint64 // room seq of the subject's last message
	last  uint64 // stream sequence of the subject's last record; 0 if none
	want  uint64 // after a conflict: the subject's last stream sequence the server named; 0 if none
	msgs  []proto.Message
}

type pending struct {
	m    *proto.Message // a message, or
	ctl  *shard.Control // a moderation event
	done func(uint64, error)
}

// Publish queues m for the room's next record (shard.Bus). Any goroutine.
func (b *Bus) Publish(room string, m *proto.Message, done func(uint64, error)) {
	b.enqueue(room, pending{m: m, done: done})
}

// Moderate queues a moderation event as the room's next record after the
// messages queued before it (shard.Bus). Any goroutine.
func (b *Bus) Moderate(room string, c shard.Control, done func(uint64, error)) {
	b.enqueue(room, pending{ctl: &c, done: done})
}

// enqueue queues pd on the room's publisher. p.mu is taken before b.mu is
// let go: the sweep (under b.mu) would otherwise drop an idle publisher
// between the two, and the next message would start a second publisher for
// the room beside it (TestEnqueueVersusSweep).
func (b *Bus) enqueue(room string, pd pending) {
	b.mu.Lock()
	p := b.publisherLocked(room)
	p.mu.Lock()
	b.mu.Unlock()
	p.queue = append(p.queue, pd)
	start := !p.busy
	p.busy = true
	p.mu.Unlock()
	if start {
		b.spawn(p.run)
	}
}

// publisherLocked returns the room's publisher, made if needed. b.mu held.
func (b *Bus) publisherLocked(room string) *publisher {
	p := b.pubs[room]
	if p == nil {
		p = &publisher{b: b, subj: Subject(room)}
		b.pubs[room] = p
	}
	return p
}

func (p *publisher) idleSince(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy || len(p.queue) > 0 || p.watches > 0 {
		return 0
	}
	return now.Sub(p.idle)
}

// run stores the queue, a record at a time, until it is empty.
func (p *publisher) run() {
	for {
		p.mu.Lock()
		n := p.batchLenLocked()
		if n == 0 {
			p.busy, p.idle = false, time.Now()
			p.mu.Unlock()
			return
		}
		batch := append([]pending(nil), p.queue[:n]...)
		rest := copy(p.queue, p.queue[n:])
		clear(p.queue[rest:])
		p.queue = p.queue[:rest]
		p.mu.Unlock()

		first, err := p.store(batch)
		for i, pd := range batch {
			switch {
			case err != nil:
				pd.done(0, err)
			case pd.ctl != nil:
				pd.done(0, nil)
			default:
				pd.done(first+uint64(i), nil)
			}
		}
	}
}

// batchLenLocked returns how many queued items make the next record: one
// moderation event, or the messages before the next one (at most maxBatch).
func (p *publisher) batchLenLocked() int {
	if len(p.queue) > 0 && p.queue[0].ctl != nil {
		return 1
	}
	n := 0
	for n < len(p.queue) && n < maxBatch && p.queue[n].ctl == nil {
		n++
	}
	return n
}

// store publishes batch as the subject's next record and returns the seq
// of its first message.
func (p *publisher) store(batch []pending) (uint64, error) {
	b := p.b
	start := time.Now()
	defer func() { b.m.publish.Observe(time.Since(start).Seconds()) }()
	for attempt := 1; ; attempt++ {
		if !b.Connected() {
			b.m.failures.Inc()
			return 0, shard.ErrUnavailable
		}
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
		first, err := p.attempt(ctx, batch)
		cancel()
		switch {
		case err == nil:
			if batch[0].ctl == nil {
				b.m.out.Add(float64(len(batch)))
			}
			return first, nil
		case isConflict(err) && (attempt < maxAttempts || time.Since(start) < b.cfg.PublishTimeout):
			b.m.conflicts.Inc()
			p.known, p.want = false, conflictLast(err)
		default:
			p.known, p.want = false, 0
			b.m.failures.Inc()
			b.log.Warn("cannot store messages in NATS", "subject", p.subj, "attempts", attempt, "err", err)
			return 0, fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
		}
	}
}

// attempt numbers batch after the subject's last message and publishes it
// on the condition that the subject's last record is still the one known.
func (p *publisher) attempt(ctx context.Context, batch []pending) (uint64, error) {
	if err := p.refresh(ctx); err != nil {
		return 0, err
	}
	rec := record{S: p.seq}
	if c := batch[0].ctl; c != nil {
		rec.D, rec.C = c.Delete, c.Clear
	} else {
		p.msgs = p.msgs[:0]
		for i, pd := range batch {
			m := *pd.m
			m.Seq = p.seq + 1 + uint64(i)
			p.msgs = append(p.msgs, m)
		}
		rec.M, rec.S = p.msgs, p.seq+uint64(len(batch))
	}
	data, err := msgpack.Marshal(&rec)
	clear(p.msgs) // drop the references to bodies
	if err != nil {
		return 0, err
	}
	ack, err := p.b.js.Publish(ctx, p.subj, data, jetstream.WithExpectLastSequencePerSubject(p.last))
	if err != nil {
		return 0, err
	}
	first := p.seq + 1
	p.seq, p.last = rec.S, ack.Sequence
	return first, nil
}

// refresh brings seq and last up to the subject's latest record as far as
// this node knows: the watch's tip when it is newer; after a conflict the
// record the server named (or a later one), once the watch received it
// (awaitTip); else, when nothing is known, the stream's last record (one
// round trip).
func (p *publisher) refresh(ctx context.Context) error {
	if want := p.want; want > 0 {
		p.want = 0
		if last, seq := p.awaitTip(ctx, want); last >= want {
			p.seq, p.last, p.known = seq, last, true
			return nil
		}
	} else if last, seq := p.tip(); last > p.last {
		p.seq, p.last, p.known = seq, last, true
		return nil
	}
	if p.known {
		return nil
	}
	p.b.m.lastReads.Inc()
	seq, last, err := p.b.lastOf(ctx, p.subj)
	if err != nil {
		return err
	}
	p.seq, p.last, p.known = seq, last, true
	return nil
}

// tipWait bounds the wait, after a conflict, for the watch to receive the
// record that won: it is on its way to this node already (stored before the
// conflict was answered), so it usually comes within a fraction of a round
// trip; past this the publisher reads the stream instead.
const tipWait = 5 * time.Millisecond

// tip returns the latest record the room's watch received (zeros if none).
// The publisher's goroutine.
func (p *publisher) tip() (last, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tipLast, p.tipSeq
}

// awaitTip returns the watch's tip once its stream sequence reaches want,
// or the tip it has when the room has no watch on this bus, after tipWait,
// or when ctx ends. The publisher's goroutine.
func (p *publisher) awaitTip(ctx context.Context, want uint64) (last, seq uint64) {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		last, seq = p.tipLast, p.tipSeq
		if last >= want || p.watches == 0 {
			p.mu.Unlock()
			return last, seq
		}
		if p.tipWake == nil {
			p.tipWake = make(chan struct{})
		}
		wake := p.tipWake
		p.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(tipWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			return last, seq
		case <-ctx.Done():
			return last, seq
		}
	}
}

// learn records a record of the room a watch received (before feeding it):
// stream sequence last, room seq s. Older records (a watch starting over replays the kept
// ones) leave the tip as it is. The watch's goroutine.
func (p *publisher) learn(last, s uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last <= p.tipLast {
		return
	}
	p.tipLast, p.tipSeq = last, s
	if p.tipWake != nil {
		close(p.tipWake)
		p.tipWake = nil
	}
}

// lastOf returns the room seq of a subject's last message and the stream
// sequence of its record (zeros for a subject without messages).
func (b *Bus) lastOf(ctx context.Context, subj string) (seq, last uint64, err error) {
	raw, err := b.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var rec record
	if err := msgpack.Unmarshal(raw.Data, &rec); err != nil {
		return 0, 0, fmt.Errorf("natsbus: bad record %d on %s: %w", raw.Sequence, subj, err)
	}
	return rec.S, raw.Sequence, nil
}

// isConflict reports a publish refused because the subject's last record
// changed (another node published first).
func isConflict(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	return api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// conflictLast returns the subject's last stream sequence as a conflict's
// error names it, or 0 when it names none. nats-server (2.15.2:
// stream.go processJetStreamMsg, jetstream_batching.go) answers code 10071
// "wrong last sequence: N" with N the subject's last record (or a record
// being stored, in a cluster), and 10164 "wrong last sequence" without one.
// N is 0 for a subject without records: then too the stream is read.
func conflictLast(err error) uint64 {
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		return 0
	}
	s, ok := strings.CutPrefix(api.Description, "wrong last sequence: ")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
