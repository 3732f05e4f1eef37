package shard

import (
	"errors"
	"slices"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// Bus connects the rooms of several relay nodes (or of one node and its
// durable store) through a shared, ordered log: package natsbus implements it
// on NATS JetStream. With a Bus the log is the sequencer: a message gets its
// seq when the log stores it, and every node, the sender's included, learns
// it from the log through Watch. A nil Bus is a single node with everything
// in memory, sequenced by the room itself.
type Bus interface {
	// Publish stores m (its Seq unset) as the next message of room. done is
	// called once, on a goroutine of the bus, with the seq the message got,
	// or with an error (ErrUnavailable when the log cannot be reached).
	// Publish must not block and must not call done before it returns.
	Publish(room string, m *proto.Message, done func(seq uint64, err error))

	// Watch starts feeding f every message of room the log keeps, then
	// every new one, in seq order, until stop is called; then f.Synced(nil)
	// once the messages stored when Watch was called have been fed.
	// Watch must not block and must not call f before it returns: it is
	// called with the room locked. stop must not block either.
	Watch(room string, f Feed) (stop func())

	// Moderate stores a moderation event of room in order with its
	// messages; every node applies it when its watch feeds it back. done
	// is called like Publish's (seq 0).
	Moderate(room string, c Control, done func(seq uint64, err error))
}

// Control is a moderation event ordered with a room's messages.
type Control struct {
	Delete uint64 // the message deleted; zero if none
	Clear  bool   // every kept message is removed
}

// Feed receives a watched room's messages from the Bus. Ingest, Control
// and Synced are called on one goroutine of the bus at a time; Local and
// Remote on another.
type Feed interface {
	// Local returns the room's connections on this node and, while the room
	// lists members, its users here (remote_members.go).
	Local() LocalPresence
	// Remote sets the room's connections on the other nodes and the users
	// they list, merged: each user once (any order), nil when none list.
	Remote(n int, members []proto.Member)
	// Ingest adds messages in seq order; seqs at or below the room's last
	// are ignored (a restarted feed may repeat them).
	Ingest(msgs []proto.Message)
	// Control applies a moderation event, after the messages fed before it.
	Control(c Control)
	// Synced reports that the room caught up with the log (err nil), or
	// that it could not yet (joins waiting for it fail with ErrUnavailable;
	// the bus keeps trying).
	Synced(err error)
}

var (
	// ErrUnavailable refuses a message or a join when the Bus cannot reach
	// its log.
	ErrUnavailable = errors.New("shard: the message bus is unavailable")
	// ErrSyncing is returned by Join with a Wait callback while the room
	// catches up with the Bus: Wait is called once it did (or failed), and
	// the join must then be made again.
	ErrSyncing = errors.New("shard: the room is catching up with the bus")
)

// Clustered reports whether the hub has a Bus. Any goroutine.
func (h *Hub) Clustered() bool { return h.cfg.Bus != nil }

// Send publishes a message in the room called name and calls done with its
// seq or the reason it was refused. Without a Bus it is Publish, and done is
// called before Send returns. With a Bus, the checks of the room (bans,
// timeouts, slow mode, size) run now, done is called on a goroutine of the
// bus once the log stored the message, and the message reaches members when
// the room's watch feeds it back. Any goroutine.
func (h *Hub) Send(name string, m *Message, done func(seq uint64, err error)) {
	bus := h.cfg.Bus
	if bus == nil {
		done(h.Publish(name, m))
		return
	}
	for {
		r, err := h.room(name, nil, true, true)
		if err != nil {
			done(0, err)
			return
		}
		msg, err := r.prepare(m)
		switch {
		case err == errRoomGone:
			continue
		case err != nil:
			done(0, err)
		default:
			bus.Publish(name, msg, done)
		}
		return
	}
}

// publishBus is Publish with a Bus: it waits for the log's answer.
func (h *Hub) publishBus(name string, m *Message) (uint64, error) {
	type result struct {
		seq uint64
		err error
	}
	ch := make(chan result, 1)
	h.Send(name, m, func(seq uint64, err error) { ch <- result{seq, err} })
	res := <-ch
	return res.seq, res.err
}

// prepare checks a message of the room and builds it, without a seq.
func (r *Room) prepare(m *Message) (*proto.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return nil, errRoomGone
	}
	now := r.hub.cfg.Now()
	err := r.checkSenderLocked(m.From, now)
	if err == nil {
		err = r.slowLocked(m, now)
	}
	if err != nil {
		return nil, err
	}
	msg := &proto.Message{TS: now.UnixMilli(), From: m.From, Name: m.Name, Body: m.Body, Badges: m.Badges, Meta: m.Meta}
	enc := r.hub.getEncoder()
	defer r.hub.putEncoder(enc)
	msg.Seq = 1 << 62 // the widest seq a message may get: the size check holds for any
	b, err := enc.MessagePayload(proto.Msgpack, r.epoch, msg)
	msg.Seq = 0
	switch {
	case err != nil:
		return nil, err
	case len(b) > r.hub.cfg.MaxBatchBytes:
		return nil, ErrTooLarge
	}
	return msg, nil
}

// watchLocked starts the room's watch if it has none yet.
func (r *Room) watchLocked() {
	if r.stopWatch == nil {
		r.stopWatch = r.hub.cfg.Bus.Watch(r.name, roomFeed{r})
	}
}

// unwatchLocked stops the room's watch, when the room is dropped.
func (r *Room) unwatchLocked() {
	if r.stopWatch != nil {
		r.stopWatch()
		r.stopWatch = nil
	}
	for _, w := range r.waiters {
		go w(ErrUnavailable) // Wait callbacks never run under a room lock
	}
	r.waiters = nil
	for _, w := range r.behind {
		w.timer.Stop()
		go w.wait(ErrUnavailable)
	}
	r.behind = nil
}

// AheadWait bounds how long a resume from a seq this node has not received
// yet waits for it (another node delivered it first); then the join is
// answered as a seq the room never gave out (gap). A variable for tests.
var AheadWait = 2 * time.Second

// seqWaiter is a resume waiting for the Bus to feed its seq.
type seqWaiter struct {
	since uint64
	wait  func(error)
	timer *time.Timer
}

// aheadLocked reports a resume from a seq of the room's epoch that this
// node has not received yet.
func (r *Room) aheadLocked(req *JoinRequest) bool {
	return r.hub.cfg.Bus != nil && req.HasSince && req.Since > r.seq && (req.Epoch == "" || req.Epoch == r.epoch)
}

// waitSeqLocked makes req wait until the room received req.Since, or
// AheadWait passed.
func (r *Room) waitSeqLocked(req *JoinRequest) {
	w := &seqWaiter{since: req.Since, wait: req.Wait}
	r.behind = append(r.behind, w)
	w.timer = time.AfterFunc(AheadWait, func() {
		r.mu.Lock()
		i := slices.Index(r.behind, w)
		if i >= 0 {
			r.behind = slices.Delete(r.behind, i, i+1)
		}
		r.mu.Unlock()
		if i >= 0 {
			w.wait(nil)
		}
	})
}

// caughtUpLocked takes the resumes whose seq the room received.
func (r *Room) caughtUpLocked() []*seqWaiter {
	var ready []*seqWaiter
	kept := r.behind[:0]
	for _, w := range r.behind {
		switch {
		case w.since > r.seq:
			kept = append(kept, w)
		case w.timer.Stop():
			ready = append(ready, w)
		default:
			kept = append(kept, w) // its timer fired: the timer answers it
		}
	}
	clear(r.behind[len(kept):])
	r.behind = kept
	return ready
}

// roomFeed is the Feed of a room's watch.
type roomFeed struct{ r *Room }

// Ingest adds messages the log sequenced (bus goroutine).
func (f roomFeed) Ingest(msgs []proto.Message) {
	r := f.r
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return
	}
	added := false
	for i := range msgs {
		if msgs[i].Seq > r.seq && r.sequenceLocked(&msgs[i]) == nil {
			added = true
		}
	}
	kick := added && r.kickLocked()
	var ready []*seqWaiter
	if added && len(r.behind) > 0 {
		ready = r.caughtUpLocked()
	}
	r.mu.Unlock()
	if kick {
		r.flush()
	}
	for _, w := range ready {
		w.wait(nil)
	}
}

// Synced answers the joins waiting for the room (bus goroutine).
func (f roomFeed) Synced(err error) {
	r := f.r
	r.mu.Lock()
	if err == nil {
		r.synced = true
	} else {
		err = ErrUnavailable
	}
	ws := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	for _, w := range ws {
		w(err)
	}
}

// Control applies a moderation event from the log (bus goroutine).
func (f roomFeed) Control(c Control) {
	switch {
	case c.Clear:
		f.r.clearLocal()
	case c.Delete > 0:
		f.r.deleteLocal(c.Delete)
	}
}

// moderateBus hands a moderation event to the Bus. A failure is the Bus's
// to count and log: the moderator was answered already.
func (r *Room) moderateBus(c Control) {
	r.hub.cfg.Bus.Moderate(r.name, c, func(uint64, error) {})
}

// totalLocked is the room's connections on every node.
func (r *Room) totalLocked() int { return r.count + r.remote }
