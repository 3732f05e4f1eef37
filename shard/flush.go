package shard

import (
	"context"
	"time"
	"unsafe"

	"github.com/roomcast/roomcast/relay/proto"
)

// A wire is a format as members receive it: the plain frames of a format
// (wire = format), or the compressed ones of a WebSocket format for members
// that negotiated permessage-deflate (wire = format + proto.NumFormats).
const numWires = 2 * int(proto.NumFormats)

// wireOf is the wire of a member of format f, compressed or not. SSE is
// never compressed.
func wireOf(f proto.Format, compressed bool) uint8 {
	if compressed && f != proto.SSE {
		return uint8(f) + uint8(proto.NumFormats)
	}
	return uint8(f)
}

// flight is one flush of a room: its frames, built once per wire in use,
// and the loops that write them. Only one flight per room is under way at a
// time, so its buffers are reused from one flight to the next.
type flight struct {
	items   []item
	formats [numWires]bool // wires in use when the flight started (a compressed wire needs its plain one)
	targets []*loopRoom

	all     [numWires][]byte // every frame of the flight, back to back
	viewers bool             // the room hides member lists from its anonymous viewers, and has some
	split   bool             // viewers, and a presence frame lists members: viewers read vall
	vall    [numWires][]byte // all, with count-only presence frames (when split)
	parts   []part           // where each frame lies in all (and vall)
	minMsg  uint64           // lowest evn of a batch frame (maxEvn if none)
	minPres uint64           // lowest evn of a presence frame (maxEvn if none)
	msgs    int64            // messages in the flight
	oldest  time.Time        // when its first message was sequenced
	scratch [][]byte
}

type part struct {
	off, end   [numWires]int
	voff, vend [numWires]int // in vall
	evn        uint64
	pres       bool
	msgs       int64
}

// kickLocked starts a flight if none is under way, events are pending and
// the room's flush window (if any) is over. It reports whether the caller
// must call flush after unlocking.
func (r *Room) kickLocked() bool {
	if len(r.pending) == 0 || r.waitLocked() || r.inFlight {
		return false
	}
	if r.fl == nil {
		r.fl = &flight{} // the first flight since the room was made or trimmed
	}
	fl := r.fl
	fl.items, fl.oldest = fl.items[:0], time.Time{}
	size, n := 0, 0
	for n < len(r.pending) {
		it := r.pending[n]
		if it.e != nil {
			if n > 0 && size+len(it.e.mp) > r.hub.cfg.MaxBatchBytes {
				break
			}
			size += len(it.e.mp)
			r.dispSeq, r.dispEvn = it.e.seq, it.e.evn
			n++
			if it.e.deleted {
				continue // deleted before it went out: never sent
			}
			it.enc[proto.Msgpack] = it.e.mp // the flusher reads it.enc, not e, outside the lock
			if fl.oldest.IsZero() {
				fl.oldest = it.e.at
			}
			fl.items = append(fl.items, it)
			continue
		}
		if it.c != nil {
			r.dispEvn = it.c.evn // ordered with the messages, skipped by later joiners alike
		}
		fl.items = append(fl.items, it)
		n++
	}
	rest := copy(r.pending, r.pending[n:])
	clear(r.pending[rest:])
	r.pending = r.pending[:rest]
	r.presScanned = 0
	if rest == 0 {
		r.windowEnd = 0 // what is left (if any) waited its window already
	}
	if r.open != nil && n > 0 {
		r.open = nil // handed out: later leaves start a new event
	}
	for f := range proto.NumFormats {
		fl.formats[f] = f == proto.Msgpack || r.fmtCount[f] > 0 // fmtCount counts compressed members too
		if f != proto.SSE {
			fl.formats[wireOf(f, true)] = r.zCount[f] > 0
		}
	}
	fl.viewers = r.policy.NoViewerList && r.anon > 0
	r.targetLocked()
	r.inFlight, r.flew = true, true
	return true
}

// targetLocked lists the loops the flight is for: those with members, but
// for a loop whose members all skip every item of the flight. That is a
// presence-only flight whose events are at or below the loop's floor: the
// joins of its own members (a join into a room of one, a loop whose members
// joined since its last flight), which a joiner never sees. A flight for
// nobody goes to no loop: no Execute, no wake-up.
func (r *Room) targetLocked() {
	fl := r.fl
	fl.targets = fl.targets[:0]
	var top uint64 // highest presence evn; maxEvn if the flight holds a message or control
	for i := range fl.items {
		if p := fl.items[i].p; p != nil {
			top = max(top, p.evn)
		} else {
			top = maxEvn
			break
		}
	}
	for _, lr := range r.loops {
		if lr != nil && lr.count > 0 && top > lr.floor {
			fl.targets = append(fl.targets, lr)
		}
	}
}

// unheardPresenceLocked records a presence change that no member on this
// node hears now: a join that leaves its joiner alone here (it skips its
// own join), a leave that leaves nobody. A listed room drops it, with
// whatever presence is pending (dropPresenceLocked); a count-only room
// counts it as presenceLocked does, for the periodic count that later
// members hear.
func (r *Room) unheardPresenceLocked() {
	if r.listMax() < 0 || r.totalLocked() > r.listMax() {
		r.presenceLocked(nil, "")
		return
	}
	r.evn++
	r.dropPresenceLocked()
}

// dropPresenceLocked drops the pending presence events when no member on
// this node can hear them: the room has no members here, or only one, who
// has just joined and skips every presence event up to its own join
// (joinPres). Messages and controls stay, in order. Nothing else reads
// pending presence (other nodes learn of this one's members by the Bus's
// Local), so a lone joiner or the last leaver opens no presence window,
// arms no timer and starts no flight.
func (r *Room) dropPresenceLocked() {
	n := 0
	for _, it := range r.pending {
		if it.p == nil {
			r.pending[n] = it
			n++
		}
	}
	if n == len(r.pending) {
		return
	}
	clear(r.pending[n:])
	r.pending = r.pending[:n]
	r.presScanned, r.open = 0, nil
	if n == 0 {
		r.windowEnd = 0 // as if handed out: the next event opens a new window
	}
}

// waitLocked reports whether the pending events wait for the room's flush
// window (Policy.FlushInterval): a window opens with the first pending
// event and ends FlushInterval later (with FlushPerMember, count times
// that, at most FlushInterval), when a timer kicks the flight. A window's
// worth of events (MaxBatchMsgs) goes at once. A window opened by presence
// alone lasts Config.PresenceWindow if that is longer, so that a join
// storm goes out in one flight; a message or control coming meanwhile cuts
// it back to the flush window (chatEnd), and everything pending goes then,
// in order.
func (r *Room) waitLocked() bool {
	if len(r.pending) >= r.hub.cfg.MaxBatchMsgs {
		return false
	}
	now := stampNow()
	if r.windowEnd == 0 {
		w := r.flushWindowLocked()
		r.chatEnd = now.add(w)
		if pw := r.hub.cfg.PresenceWindow; pw > w && r.presenceOnlyLocked() {
			w = pw
		}
		if w <= 0 {
			return false
		}
		r.windowEnd = now.add(w)
	} else if r.windowEnd > r.chatEnd && !r.presenceOnlyLocked() {
		r.windowEnd = r.chatEnd // chat came into a presence window: it waits no longer than without presence
	}
	left := time.Duration(r.windowEnd - now)
	if left <= 0 {
		return false
	}
	if !r.windowSet || r.windowAt > r.windowEnd {
		r.windowSet, r.windowAt = true, r.windowEnd
		if r.window == nil {
			r.window = time.AfterFunc(left, r.windowFired)
		} else {
			r.window.Reset(left)
		}
	}
	return true
}

// stamp is a time on the monotonic clock, for a room's flush windows
// (Room.windowEnd, chatEnd, windowAt): nanoseconds since stampBase, plus
// one so that zero means none. 8 bytes where a time.Time takes 24
// (TestRoomSize).
type stamp int64

var stampBase = time.Now()

// stampNow is the stamp of now.
func stampNow() stamp { return stamp(time.Since(stampBase)) + 1 }

// add is the stamp d after s.
func (s stamp) add(d time.Duration) stamp { return s + stamp(d) }

// flushWindowLocked is the flush window a pending event opens now.
func (r *Room) flushWindowLocked() time.Duration {
	w := r.policy.FlushInterval
	if pm := r.policy.FlushPerMember; pm > 0 {
		w = min(w, time.Duration(r.count)*pm)
	}
	return w
}

// presenceOnlyLocked reports whether every pending event is presence. It
// scans only the items queued since it last looked (presScanned).
func (r *Room) presenceOnlyLocked() bool {
	for r.presScanned < len(r.pending) && r.pending[r.presScanned].p != nil {
		r.presScanned++
	}
	return r.presScanned == len(r.pending)
}

// windowFired ends a flush window. It runs on the timer's goroutine.
func (r *Room) windowFired() {
	r.mu.Lock()
	r.windowSet, r.windowAt = false, 0
	r.unlockKick()
}

// unlockKick unlocks the room, having started a flight if one is due, and
// flushes it outside the lock.
func (r *Room) unlockKick() {
	kick := r.kickLocked()
	r.mu.Unlock()
	if kick {
		r.flush()
	}
}

// endFlightLocked ends the flight in flight: its items (and the
// encodings they hold) are let go.
func (r *Room) endFlightLocked() {
	r.inFlight = false
	clear(r.fl.items)
	r.fl.items = r.fl.items[:0]
}

// flush encodes the flight kickLocked prepared and hands it to its loops.
// The last loop to finish starts the next flight.
func (r *Room) flush() {
	for {
		fl := r.fl // set while inFlight: the trim pass leaves it alone
		if len(fl.targets) > 0 || !presenceOnly(fl.items) {
			r.encodeFlight() // a message flight for nobody is still built (Stats.Batches, Observer)
		} else {
			fl.parts = fl.parts[:0]
		}
		if len(fl.targets) > 0 && len(fl.parts) > 0 {
			r.hub.Stats.Flushes.Add(1)
			r.remaining.Store(int32(len(fl.targets)))
			for _, lr := range fl.targets {
				if lr.loop.Execute(lr) != nil {
					r.taskDone() // the loop is gone (shutdown): its members with it
				}
			}
			return
		}
		r.mu.Lock()
		r.endFlightLocked()
		kick := r.kickLocked()
		r.mu.Unlock()
		if !kick {
			return
		}
	}
}

// taskDone is called once per target loop when it has written the flight.
func (r *Room) taskDone() {
	if r.remaining.Add(-1) != 0 {
		return
	}
	if obs := r.hub.cfg.Observer; obs != nil && !r.fl.oldest.IsZero() {
		obs.FlushWritten(time.Since(r.fl.oldest))
	}
	r.mu.Lock()
	r.endFlightLocked()
	r.unlockKick()
}

// encodeFlight builds the frames of the flight: a batch frame per run of
// messages (capped at MaxBatchMsgs), a presence frame per presence event.
func (r *Room) encodeFlight() {
	fl := r.fl
	enc := r.hub.getEncoder()
	defer r.hub.putEncoder(enc)
	for f := range fl.all {
		fl.all[f], fl.vall[f] = fl.all[f][:0], fl.vall[f][:0]
	}
	fl.parts, fl.minMsg, fl.minPres, fl.msgs = fl.parts[:0], maxEvn, maxEvn, 0
	fl.split = fl.viewers && listsMembers(fl.items)
	for i := 0; i < len(fl.items); {
		if p := fl.items[i].p; p != nil {
			r.addPresence(enc, p)
			i++
			continue
		}
		if c := fl.items[i].c; c != nil {
			r.addControl(c)
			i++
			continue
		}
		j := i
		for j < len(fl.items) && fl.items[j].e != nil && j-i < r.hub.cfg.MaxBatchMsgs {
			j++
		}
		r.addBatch(enc, fl.items[i:j])
		i = j
	}
	r.compressFlight()
}

// compressFlight builds the compressed wires in use from the plain ones:
// each frame deflated once, without context, for every member that
// negotiated compression. Frames that would not shrink go as they are.
func (r *Room) compressFlight() {
	fl := r.fl
	if !fl.formats[wireOf(proto.Msgpack, true)] && !fl.formats[wireOf(proto.JSON, true)] {
		return
	}
	d := r.hub.getDeflater()
	defer r.hub.putDeflater(d)
	for f := proto.Format(0); f < proto.SSE; f++ {
		w := wireOf(f, true)
		if !fl.formats[w] {
			continue
		}
		for i := range fl.parts {
			pt := &fl.parts[i]
			pt.off[w] = len(fl.all[w])
			fl.all[w] = d.AppendFrame(fl.all[w], fl.all[f][pt.off[f]:pt.end[f]])
			pt.end[w] = len(fl.all[w])
			if fl.split {
				pt.voff[w] = len(fl.vall[w])
				fl.vall[w] = d.AppendFrame(fl.vall[w], fl.vall[f][pt.voff[f]:pt.vend[f]])
				pt.vend[w] = len(fl.vall[w])
			}
		}
	}
}

func (r *Room) addBatch(enc *proto.Encoder, items []item) {
	fl := r.fl
	pt := part{evn: items[len(items)-1].e.evn, msgs: int64(len(items))}
	for f := proto.Format(0); f < proto.NumFormats; f++ {
		if !fl.formats[f] {
			continue
		}
		fl.scratch = fl.scratch[:0]
		for _, it := range items {
			fl.scratch = append(fl.scratch, it.enc[f])
		}
		b := enc.Batch(f, r.name, fl.scratch)
		fl.put(&pt, f, b)
		fl.putView(&pt, f, b)
	}
	clear(fl.scratch)
	fl.parts = append(fl.parts, pt)
	fl.minMsg = min(fl.minMsg, pt.evn)
	fl.msgs += pt.msgs
	r.hub.Stats.Batches.Add(1)
	if obs := r.hub.cfg.Observer; obs != nil {
		obs.BatchBuilt(len(items))
	}
}

func (r *Room) addPresence(enc *proto.Encoder, p *presItem) {
	fl := r.fl
	pt := part{evn: p.evn, pres: true}
	ev := proto.Presence{T: proto.TPresence, Room: r.name, Count: p.count, Joins: p.joins, Leaves: p.leaves}
	for f := proto.Format(0); f < proto.NumFormats; f++ {
		if !fl.formats[f] {
			continue
		}
		b, err := enc.Frame(f, &ev)
		if err != nil {
			continue // plain strings and ints always encode
		}
		fl.put(&pt, f, b)
		if fl.split && len(ev.Joins)+len(ev.Leaves) > 0 {
			b, _ = enc.Frame(f, &proto.Presence{T: proto.TPresence, Room: r.name, Count: p.count})
		}
		fl.putView(&pt, f, b)
	}
	fl.parts = append(fl.parts, pt)
	fl.minPres = min(fl.minPres, pt.evn)
}

func (r *Room) addControl(c *ctrlItem) {
	fl := r.fl
	pt := part{evn: c.evn}
	for f := proto.Format(0); f < proto.NumFormats; f++ {
		if !fl.formats[f] {
			continue
		}
		fl.put(&pt, f, c.frame[f])
		fl.putView(&pt, f, c.frame[f])
	}
	fl.parts = append(fl.parts, pt)
	fl.minMsg = min(fl.minMsg, pt.evn)
}

// put appends a frame in format f to the flight.
func (fl *flight) put(pt *part, f proto.Format, b []byte) {
	pt.off[f] = len(fl.all[f])
	fl.all[f] = append(fl.all[f], b...)
	pt.end[f] = len(fl.all[f])
}

// putView appends the viewers' variant of a frame in format f to the
// viewers' stream, if the flight has one.
func (fl *flight) putView(pt *part, f proto.Format, b []byte) {
	if !fl.split {
		return
	}
	pt.voff[f] = len(fl.vall[f])
	fl.vall[f] = append(fl.vall[f], b...)
	pt.vend[f] = len(fl.vall[f])
}

// presenceOnly reports whether every item is a presence event.
func presenceOnly(items []item) bool {
	for i := range items {
		if items[i].p == nil {
			return false
		}
	}
	return true
}

// listsMembers reports whether a presence event among items names members.
func listsMembers(items []item) bool {
	for i := range items {
		if p := items[i].p; p != nil && len(p.joins)+len(p.leaves) > 0 {
			return true
		}
	}
	return false
}

// Run writes the flight to this loop's members. It runs on the loop.
func (lr *loopRoom) Run(context.Context) error {
	start := time.Now()
	r := lr.room
	var t tally
	for i := 0; i < len(lr.members); {
		i = lr.writeFrom(i, &t)
	}
	r.hub.Stats.Deliveries.Add(t.deliveries)
	r.hub.Stats.Writes.Add(t.writes)
	if obs := r.hub.cfg.Observer; obs != nil {
		obs.LoopBusy(int(lr.idx), time.Since(start))
	}
	r.taskDone()
	return nil
}

type tally struct{ deliveries, writes int64 }

// writeFrom writes the flight to the members from index i on, and returns
// the index to go on from: the end, or past a member whose Deliver
// panicked. The panic is counted in Stats.Panics and goes no further: the
// room's flights must go on (the Member is expected to end its connection;
// until then it may panic again). One defer per call, none per member.
func (lr *loopRoom) writeFrom(i int, t *tally) (next int) {
	var ms *Membership
	defer func() {
		if recover() == nil {
			return
		}
		lr.room.hub.Stats.Panics.Add(1)
		next = i + 1
		if i < len(lr.members) && lr.members[i] != ms {
			next = i // it left in its Deliver: the last member took its place
		}
	}()
	fl := lr.room.fl // the flight in flight: it stays until the last task is done
	// A failed write may close the member at once, and its Leave then
	// moves the last member into its place: visit that place again.
	for ; i < len(lr.members); i++ {
		ms = lr.members[i]
		d, w := ms.deliver(fl)
		t.deliveries += d
		t.writes += w
		if i < len(lr.members) && lr.members[i] != ms {
			i--
		}
	}
	return i
}

// deliver writes the frames of fl that the member has not seen yet: usually
// all of them, in one write. A member that joined while they were pending
// skips those it has seen; each run of frames it has not is one write.
func (ms *Membership) deliver(fl *flight) (deliveries, writes int64) {
	all, view := fl.all[ms.wire], ms.anon && fl.split
	if view {
		all = fl.vall[ms.wire] // presence with count only
	}
	if ms.joinDisp < fl.minMsg && ms.joinPres < fl.minPres {
		ms.m.Deliver(all)
		return fl.msgs, 1
	}
	from, to := 0, 0 // the run of unseen frames not yet written
	for i := range fl.parts {
		p := &fl.parts[i]
		seen := ms.joinDisp
		if p.pres {
			seen = ms.joinPres
		}
		off, end := p.off[ms.wire], p.end[ms.wire]
		if view {
			off, end = p.voff[ms.wire], p.vend[ms.wire]
		}
		if p.evn <= seen {
			continue
		}
		if off != to && to > from {
			ms.m.Deliver(all[from:to])
			writes++
		}
		if off != to || to == from {
			from = off
		}
		to = end
		deliveries += p.msgs
	}
	if to > from {
		ms.m.Deliver(all[from:to])
		writes++
	}
	return deliveries, writes
}

// trimEvery is how often the housekeeper looks for idle rooms to trim. A
// room is idle when no flight started since the previous pass, so a room's
// flight goes 1 to 2 passes after its last one: before the relay's
// free-heap trim (relay/memtrim.go, 2 quiet seconds after a wave of
// connections) in the usual case. A pass locks each room once, a few tens
// of nanoseconds: 100 000 rooms cost a few milliseconds a second.
const trimEvery = time.Second

// Sizes of the elements of the trimmed slices.
const (
	itemSize   = int(unsafe.Sizeof(item{}))
	partSize   = int(unsafe.Sizeof(part{}))
	targetSize = int(unsafe.Sizeof((*loopRoom)(nil)))
	sliceSize  = int(unsafe.Sizeof([]byte(nil)))
)

// trimLocked lets go of the room's flight, with all its buffers, and of
// its pending slice when the room started no flight since the last trim
// pass and has none under way nor events pending: outside a flight, r.fl
// is the room's, under r.mu. A busy room keeps its flight (its flush path
// stays free of allocations); an idle one holds a nil pointer and an empty
// slice, and pays a few allocations on its next flight (kickLocked makes
// the flight). Called by the housekeeper only.
func (r *Room) trimLocked() {
	if r.flew {
		r.flew = false
		return
	}
	if r.inFlight || len(r.pending) > 0 {
		return
	}
	r.fl, r.pending = nil, nil
}

// retainedLocked is the capacity in bytes of the buffers trimLocked looks
// at (for tests).
func (r *Room) retainedLocked() int {
	fl := r.fl
	if fl == nil {
		return cap(r.pending) * itemSize
	}
	n := cap(r.pending)*itemSize + int(unsafe.Sizeof(*fl)) + cap(fl.items)*itemSize + cap(fl.parts)*partSize +
		cap(fl.targets)*targetSize + cap(fl.scratch)*sliceSize
	for w := range fl.all {
		n += cap(fl.all[w]) + cap(fl.vall[w])
	}
	return n
}
