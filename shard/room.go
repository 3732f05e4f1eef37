package shard

import (
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// Join errors.
var (
	ErrRoomFull = errors.New("shard: room is full")
	ErrNoAnon   = errors.New("shard: room does not allow anonymous viewers")
	errRoomGone = errors.New("shard: room was dropped")
	ErrTooLarge = errors.New("shard: message does not fit a batch") // its msgpack encoding is over Config.MaxBatchBytes
	maxEvn      = uint64(math.MaxUint64)
)

// Room is one chat room: its sequencer, history and members.
//
// Every event of a room (a message, a presence change) gets the next event
// number (evn). A flush hands the loops the pending events in order; the room
// remembers the evn of the last message handed out as dispEvn. A joiner's
// history ends there, so it records dispEvn and skips batches at or below it;
// its member list is the present one, so it records the current evn and skips
// presence events at or below that. What it must not see twice is already in
// its joined reply, and everything after reaches it.
type Room struct {
	hub    *Hub
	name   string
	epoch  string // names this room's history; a room created anew gets a new one
	policy Policy // fixed at creation; histCap and listMax derive from it

	mu         sync.Mutex
	seq        uint64                  // last seq given out
	evn        uint64                  // last event number given out
	dispSeq    uint64                  // last seq handed to the loops
	dispEvn    uint64                  // evn of the last message handed to the loops
	ring       []*entry                // history, oldest at ring[head]
	head       int                     //
	pending    []item                  // events not yet handed to the loops
	open       *presItem               // the pending presence event that may still take leaves
	count      int                     // connections joined
	remote     int                     // connections on other nodes (Bus; else 0)
	anon       int                     // of which anonymous viewers
	fmtCount   [proto.NumFormats]int32 // of which use each format
	zCount     [proto.NumFormats]int32 // of which negotiated compression, by format (never SSE)
	users      roomUsers               // local users by id (not anonymous viewers); an entry while conns > 0; nothing while none
	emptySince int64                   // unix nanos (Config.Now) when the room was made or its last member left; the reaper's cutoff is measured from it
	mod        moderation
	slow       time.Duration        // slow mode; zero is off
	stopWatch  func()               // ends the room's Bus watch; nil while none
	waiters    []func(error)        // joins waiting for synced (JoinRequest.Wait)
	behind     []*seqWaiter         // resumes from a seq the Bus has not fed yet
	lastSent   map[string]time.Time // by user, while in slow mode
	windowEnd  stamp                // when the open flush window ends; zero while none is open (Policy.FlushInterval)
	window     *time.Timer          // made on the first window; calls windowFired

	// The presence window (Config.PresenceWindow) on top of the flush window.
	chatEnd     stamp // when the open window ends once a message or control is pending (Policy.FlushInterval)
	presScanned int   // leading pending items known to be presence (presenceOnlyLocked)
	windowAt    stamp // when window fires, while windowSet

	lastUse   atomic.Int64 // unix nanos of the last Hub.Room or Hub.Open lookup; the reaper spares recent ones
	fl        *flight      // the flush in flight: written by the flusher, read by the loop tasks; made by the first flight (kickLocked), dropped by an idle room's trim (trimLocked), never changed while inFlight
	loops     []*loopRoom  // indexed by event loop; each made on the first join from its loop (loopLocked); guarded by mu
	remaining atomic.Int32 // loop tasks of the flush in flight not yet done

	// The flags, together after remaining so that four of them fill the
	// rest of its word and two take the next (TestRoomSize), guarded by mu.
	dead       bool // dropped from the hub; callers fetch a new room
	inFlight   bool // a flush is being written by the loops
	countDirty bool // a count change awaits the periodic presence
	synced     bool // the room holds what the Bus held when its watch began (always, without a Bus)
	windowSet  bool // window is armed
	flew       bool // a flight started (kickLocked) since the housekeeper's last trim pass (flush.go trimLocked)

	remoteUsers map[string]string // users other nodes list, by id: their names; guarded by mu (Bus; remote_members.go)

	userOf map[*Membership]string // the user of a local member that does not name it (UserMember); guarded by mu, made on first use
}

// histCap is the number of messages the room keeps.
func (r *Room) histCap() int { return r.policy.history() }

// listMax is the most connections the room lists members for (negative:
// never).
func (r *Room) listMax() int { return r.policy.memberListMax() }

// hasUserLocked reports whether the user has connections in the room on
// this node.
func (r *Room) hasUserLocked(id string) bool {
	return r.users.has(id)
}

// entry is one sequenced message, kept as its msgpack payload only: the
// other formats live on its pending item until it is flushed, and history
// in those formats is transcoded for each joiner.
type entry struct {
	mp      []byte // msgpack payload; nil once deleted
	seq     uint64
	evn     uint64
	at      time.Time // when it was sequenced
	deleted bool      // by moderation: never replayed; its payload is dropped
}

// presItem is one presence event not yet written.
type presItem struct {
	evn    uint64
	count  int
	joins  []proto.Member
	leaves []string
}

// item is a pending event: a message, a presence event, or a control event
// (delete, clear) ordered with the messages.
type item struct {
	e   *entry
	p   *presItem
	c   *ctrlItem
	enc [proto.NumFormats][]byte // e's encodings: the formats in use but msgpack while pending; msgpack is added when it is handed out
}

// ctrlItem is a control event, encoded when it is queued.
type ctrlItem struct {
	evn   uint64
	frame [proto.NumFormats][]byte
}

// loopRoom is the part of a room held by one event loop.
type loopRoom struct {
	room    *Room
	loop    Loop          // the first joiner's, set when made (loopLocked) and never changed: the flusher reads it outside room.mu
	idx     int32         // the loop's index
	count   int32         // members on this loop; guarded by room.mu
	floor   uint64        // every member here skips presence up to this evn (joinPres); guarded by room.mu (flush.go kickLocked)
	members []*Membership // owned by the loop's goroutine
}

// loopLocked returns the room's part on the joiner's loop, made on the
// first join from that loop: a room of one member holds one. It is kept
// until the room goes (its members and the flights point at it).
func (r *Room) loopLocked(req *JoinRequest) *loopRoom {
	lr := r.loops[req.LoopIndex]
	if lr == nil {
		lr = &loopRoom{room: r, idx: int32(req.LoopIndex), loop: req.Loop}
		r.loops[req.LoopIndex] = lr
	}
	return lr
}

// Membership is one connection's place in a room. It is created and ended on
// the member's event loop.
//
// It takes 48 bytes (TestMembershipSize): one is kept per member, idle or
// not (see BENCHMARKS.md, memory per connection). Its room is lr.room. It
// does not hold the user id it joined under: a UserMember names it (named),
// the room keeps the others' in Room.userOf.
type Membership struct {
	lr       *loopRoom
	m        Member
	joinDisp uint64 // skip messages with evn <= this; owned by the loop
	joinPres uint64 // skip presence with evn <= this; owned by the loop
	idx      int32  // position in lr.members; owned by the loop
	format   proto.Format
	wire     uint8 // the flight's frames it reads: its format, compressed or not
	anon     bool
	named    bool // m is a UserMember naming the user it joined as (user)
}

// UserMember is a Member that names the user it is connected as. A member
// that names, at its join, the JoinRequest's User must name that user for
// as long as it is in the room: the room then keeps no copy of the id (16
// bytes per member). Called on the member's loop, with the room's lock
// held: it must only read a field.
type UserMember interface {
	Member
	MemberUser() string
}

// Room returns the room of the membership.
func (ms *Membership) Room() *Room { return ms.lr.room }

// setUserLocked records the user ms joined as: a UserMember naming it keeps
// it, else the room does. Called with r.mu held.
func (r *Room) setUserLocked(ms *Membership, user string) {
	if um, ok := ms.m.(UserMember); ok && um.MemberUser() == user {
		ms.named = true
		return
	}
	if r.userOf == nil {
		r.userOf = map[*Membership]string{}
	}
	r.userOf[ms] = user
}

// userLocked returns the user ms joined as and forgets the room's copy.
// Called with r.mu held, once, when ms leaves.
func (r *Room) userLocked(ms *Membership) string {
	if ms.named {
		return ms.m.(UserMember).MemberUser()
	}
	u := r.userOf[ms]
	delete(r.userOf, ms)
	if len(r.userOf) == 0 {
		r.userOf = nil // a map keeps its buckets after deletes
	}
	return u
}

func newRoom(h *Hub, name string) *Room {
	p := h.cfg.Policy(proto.Namespace(name))
	r := &Room{hub: h, name: name, epoch: h.cfg.Epoch(), policy: p,
		emptySince: h.cfg.Now().UnixNano(), loops: make([]*loopRoom, h.cfg.Loops), slow: p.SlowMode,
		synced: h.cfg.Bus == nil}
	return r
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Info is a snapshot of a room for the admin API.
type Info struct {
	Room    string
	Epoch   string
	Count   int
	Seq     uint64
	Members []proto.Member // nil unless the room lists members
}

// Info returns a snapshot of the room. Any goroutine.
func (r *Room) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Info{Room: r.name, Epoch: r.epoch, Count: r.totalLocked(), Seq: r.seq, Members: r.membersLocked(false)}
}

// JoinRequest describes a connection joining a room.
type JoinRequest struct {
	LoopIndex int          // index of the member's event loop, below Config.Loops
	Loop      Loop         // that loop
	Member    Member       // receives the room's frames on that loop
	Format    proto.Format // the member's wire format
	User      string       // user id
	Name      string       // display name
	Anon      bool         // an anonymous viewer: counted, never listed
	Since     uint64       // resume after this seq, if HasSince
	HasSince  bool
	Epoch     string // the epoch Since belongs to; "" means the room's. Another epoch makes Since a gap
	History   int    // recent messages wanted without Since (or with a gap); negative means all kept

	// Compressed: the member negotiated permessage-deflate and gets the
	// flight's frames compressed (once per flight, for all such members).
	// Ignored for SSE.
	Compressed bool

	// Create, if set, is called when the join would create the room, before
	// it is created; its error fails the join (a per-client limit on room
	// creation). It is called with a lock of the Hub held: it must be quick
	// and must not call into the Hub.
	Create func() error

	// Wait, if set, makes a join of a room that is still catching up with
	// the Bus (or a resume from a seq of the room's epoch this node has not
	// received yet, for at most AheadWait) fail with ErrSyncing instead of
	// answering with what the room holds so far; Wait is then called once, on any goroutine and with no
	// lock held, when the room caught up (nil) or could not (an error), and
	// the join should be made again. Without Wait such a join is answered
	// at once. Unused without a Bus.
	Wait func(err error)
}

// JoinResult is what the joined reply carries.
type JoinResult struct {
	Epoch   string // names the room's history
	Seq     uint64
	History [][]byte // messages in the member's format, oldest first (SSE ids carry Epoch)
	Gap     bool
	Count   int
	Members []proto.Member // nil unless the room lists members
}

// Join adds a member to the room called name, creating the room if need
// be (ErrRoomLimit past MaxRooms, or the error of req.Create). Call it on
// the member's loop.
func (h *Hub) Join(name string, req *JoinRequest) (*Membership, JoinResult, error) {
	for {
		r, err := h.room(name, req.Create, true, false)
		if err != nil {
			return nil, JoinResult{}, err
		}
		ms, res, err := r.join(req)
		switch {
		case err == errRoomGone:
			continue
		case err == ErrSyncing:
			return nil, JoinResult{}, err
		case err != nil:
			h.dropIdle(r) // a refused join must not leave an empty room behind
			return nil, JoinResult{}, err
		}
		res.transcode(h, req.Format)
		return ms, res, nil
	}
}

func (r *Room) join(req *JoinRequest) (*Membership, JoinResult, error) {
	r.mu.Lock()
	if err := r.admitLocked(req); err != nil {
		r.mu.Unlock()
		return nil, JoinResult{}, err
	}
	if !r.synced {
		r.watchLocked()
		if req.Wait != nil {
			r.waiters = append(r.waiters, req.Wait)
			r.mu.Unlock()
			return nil, JoinResult{}, ErrSyncing
		}
	} else if req.Wait != nil && r.aheadLocked(req) {
		r.waitSeqLocked(req)
		r.mu.Unlock()
		return nil, JoinResult{}, ErrSyncing
	}
	lr := r.loopLocked(req)
	ms := &Membership{lr: lr, m: req.Member, format: req.Format, wire: wireOf(req.Format, req.Compressed),
		anon: req.Anon, idx: int32(len(lr.members))}
	if ms.wire != uint8(ms.format) {
		r.zCount[ms.format]++
	}
	lr.members = append(lr.members, ms)
	lr.count++
	r.count++
	if req.Anon {
		r.anon++
	}
	r.hub.Stats.Members.Add(1)
	if r.fmtCount[req.Format]++; r.fmtCount[req.Format] == 1 && req.Format != proto.Msgpack {
		r.encodeFormatLocked(req.Format)
	}
	if !req.Anon {
		r.setUserLocked(ms, req.User)
	}
	newUser := !req.Anon && r.users.add(req.User, req.Name)
	switch {
	case r.count == 1:
		r.unheardPresenceLocked() // flush.go: the joiner is alone here
	case newUser && !r.elsewhereLocked(req.User):
		r.presenceLocked(&proto.Member{ID: req.User, Name: req.Name}, "")
	default:
		r.presenceLocked(nil, "")
	}
	r.open = nil // the joiner skips every presence event up to its own join
	ms.joinDisp, ms.joinPres = r.dispEvn, r.evn
	if lr.count == 1 {
		lr.floor = r.evn // the loop's only member: nothing pending is news to it but messages
	}
	res := r.resultLocked(req)
	r.unlockKick()
	return ms, res, nil
}

func (r *Room) admitLocked(req *JoinRequest) error {
	switch {
	case r.dead:
		return errRoomGone
	case req.Anon && r.policy.NoAnonRead:
		return ErrNoAnon
	case !req.Anon && r.isBannedLocked(req.User):
		return ErrBanned
	case r.policy.MaxMembers > 0 && r.count >= r.policy.MaxMembers:
		return ErrRoomFull
	}
	return nil
}

// Rejoin answers a repeated join of a member with the history it asks for,
// and changes neither presence nor delivery: batches go on as before, so a
// message may come both in this history and in a batch, and none is lost.
// Call it on the member's loop.
func (ms *Membership) Rejoin(req *JoinRequest) JoinResult {
	r := ms.lr.room
	r.mu.Lock()
	res := r.resultLocked(req)
	r.mu.Unlock()
	res.transcode(r.hub, ms.format)
	return res
}

// resultLocked answers a join; its history is in msgpack (see transcode).
func (r *Room) resultLocked(req *JoinRequest) JoinResult {
	hist, gap := r.historyLocked(req)
	return JoinResult{Epoch: r.epoch, Seq: r.dispSeq, History: hist, Gap: gap, Count: r.totalLocked(),
		Members: r.membersLocked(req.Anon)}
}

// transcode turns the msgpack history of res into format f, outside the
// room's lock: kept payloads are never changed, only dropped.
func (res *JoinResult) transcode(h *Hub, f proto.Format) {
	if f == proto.Msgpack || len(res.History) == 0 {
		return
	}
	enc := h.getEncoder()
	defer h.putEncoder(enc)
	out := res.History[:0]
	for _, mp := range res.History {
		if b, err := enc.Transcode(f, res.Epoch, mp); err == nil { // payloads this room encoded always decode
			out = append(out, append([]byte(nil), b...))
		}
	}
	res.History = out
}

// membersLocked lists the room's members, for a viewer if anon; nil if the
// room does not list them (to viewers).
func (r *Room) membersLocked(anon bool) []proto.Member {
	if r.listMax() < 0 || r.totalLocked() > r.listMax() || anon && r.policy.NoViewerList {
		return nil
	}
	out := make([]proto.Member, 0, r.users.len()+len(r.remoteUsers))
	for id, name := range r.users.all() {
		out = append(out, proto.Member{ID: id, Name: name})
	}
	return r.appendRemoteLocked(out)
}

// historyLocked returns the msgpack payloads of the kept messages the
// joiner asked for, up to the last dispatched seq (later ones reach it
// through the flush).
func (r *Room) historyLocked(req *JoinRequest) ([][]byte, bool) {
	n := r.historyLenLocked()
	from, gap := r.latestLocked(n, req.History), false
	if req.HasSince {
		oldest := r.dispSeq + 1 // with nothing kept, everything after since aged out
		if n > 0 {
			oldest = r.at(0).seq
		}
		if req.Epoch != "" && req.Epoch != r.epoch || req.Since > r.seq || req.Since+1 < oldest {
			gap = true // another history, the room restarted, or messages aged out: the latest ones
		} else {
			from = r.keptAfterLocked(req.Since, n)
		}
	}
	out := make([][]byte, 0, n-from)
	for i := from; i < n; i++ {
		if e := r.at(i); !e.deleted {
			out = append(out, e.mp)
		}
	}
	return out, gap
}

// latestLocked returns the index from which the n oldest kept messages hold
// the latest want that are not deleted (all if want is negative).
func (r *Room) latestLocked(n, want int) int {
	if want < 0 {
		return 0
	}
	i := n
	for ; i > 0 && want > 0; i-- {
		if !r.at(i - 1).deleted {
			want--
		}
	}
	return i
}

// keptAfterLocked returns the index of the first of the n oldest kept
// messages whose seq is above since (kept seqs ascend, not always by one).
func (r *Room) keptAfterLocked(since uint64, n int) int {
	return sort.Search(n, func(i int) bool { return r.at(i).seq > since })
}

// historyLenLocked is the number of kept messages already dispatched.
func (r *Room) historyLenLocked() int {
	n := len(r.ring)
	for n > 0 && r.at(n-1).seq > r.dispSeq {
		n--
	}
	return n
}

func (r *Room) at(i int) *entry {
	return r.ring[(r.head+i)%len(r.ring)]
}

// Leave removes the member from its room. Call it on the member's loop.
func (ms *Membership) Leave() {
	r, lr := ms.lr.room, ms.lr
	last := lr.members[len(lr.members)-1]
	lr.members[ms.idx] = last
	last.idx = ms.idx
	lr.members[len(lr.members)-1] = nil
	lr.members = lr.members[:len(lr.members)-1]

	r.mu.Lock()
	lr.count--
	r.count--
	if ms.anon {
		r.anon--
	}
	r.hub.Stats.Members.Add(-1)
	r.fmtCount[ms.format]--
	if ms.wire != uint8(ms.format) {
		r.zCount[ms.format]--
	}
	gone := ""
	if !ms.anon {
		if user := r.userLocked(ms); r.users.remove(user) && !r.elsewhereLocked(user) {
			gone = user
		}
	}
	if r.count == 0 {
		r.emptySince = r.hub.cfg.Now().UnixNano()
		r.unheardPresenceLocked() // flush.go: nobody is left here
	} else {
		r.presenceLocked(nil, gone)
	}
	kick := r.kickLocked()
	idle := r.idleLocked()
	r.mu.Unlock()
	if kick {
		r.flush()
	}
	if idle {
		r.hub.dropIdle(r) // never held a message: nothing to keep it for
	}
}

// idleLocked reports whether the room may go at once: no members, never a
// message (nothing to resume), no moderation state, and not looked up by
// Hub.Room or Hub.Open within EmptyRoomTTL (a moderator may be about to use
// it).
func (r *Room) idleLocked() bool {
	if r.count > 0 || r.seq > 0 || len(r.waiters) > 0 || len(r.behind) > 0 || r.moderatedLocked() {
		return false
	}
	lu := r.lastUse.Load()
	return lu == 0 || r.hub.cfg.Now().Sub(time.Unix(0, lu)) >= r.hub.cfg.EmptyRoomTTL
}

// moderatedLocked reports whether the room holds moderation state: bans,
// timeouts, a slow mode a moderator set.
func (r *Room) moderatedLocked() bool {
	return len(r.mod.bans) > 0 || len(r.mod.mutes) > 0 || r.slow != r.policy.SlowMode
}

// presenceLocked records a presence change. Rooms that list members get an
// event per change (leaves coalesce into the open event); bigger rooms get a
// count from the housekeeper at most once per PresenceInterval.
func (r *Room) presenceLocked(joined *proto.Member, left string) {
	r.evn++
	if r.listMax() < 0 || r.totalLocked() > r.listMax() {
		if !r.countDirty {
			r.countDirty = true
			r.hub.markPresence(r)
		}
		return
	}
	p := r.open
	if p == nil || joined != nil {
		p = &presItem{}
		r.pending = append(r.pending, item{p: p})
		r.open = p
	}
	p.evn, p.count = r.evn, r.totalLocked()
	if joined != nil {
		p.joins = append(p.joins, *joined)
	}
	if left != "" {
		p.leaves = append(p.leaves, left)
	}
}

// countPresence sends a big room's current count (housekeeper).
func (r *Room) countPresence() {
	r.mu.Lock()
	r.countDirty = false
	r.evn++
	r.pending = append(r.pending, item{p: &presItem{evn: r.evn, count: r.totalLocked()}})
	r.open = nil
	r.unlockKick()
}

func (r *Room) reapable(cutoff time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.hub.cfg.Now()
	r.mod.pruneLocked(now)
	for u, t := range r.lastSent {
		if now.Sub(t) >= r.slow {
			delete(r.lastSent, u) // slow mode has nothing left to say about u
		}
	}
	// A room keeps its moderation: bans, running timeouts, a slow mode a
	// moderator set. And one looked up lately may be about to be used.
	if r.count > 0 || r.inFlight || len(r.pending) > 0 || len(r.waiters) > 0 || len(r.behind) > 0 || r.emptySince > cutoff.UnixNano() || r.moderatedLocked() ||
		time.Unix(0, r.lastUse.Load()).After(cutoff) {
		return false
	}
	r.dead = true
	r.unwatchLocked()
	return true
}

// Message is a message to publish.
type Message struct {
	From       string
	Name       string
	Body       string
	Badges     []string
	Meta       map[string]string
	SlowExempt bool // slow mode does not apply (mods, bots, the API)
}

// SlowModeError refuses a message sent too soon after the user's last one.
type SlowModeError struct {
	Retry time.Duration // until the user may send again
}

func (e *SlowModeError) Error() string {
	return "shard: slow mode: retry in " + e.Retry.String()
}

// SetSlowMode changes the room's slow mode (zero turns it off). Any goroutine.
func (r *Room) SetSlowMode(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slow = d
	if d == 0 {
		r.lastSent = nil
	}
}

// slowLocked applies slow mode to a message of user from at time now.
func (r *Room) slowLocked(m *Message, now time.Time) error {
	if r.slow <= 0 || m.SlowExempt {
		return nil
	}
	if last, ok := r.lastSent[m.From]; ok && now.Sub(last) < r.slow {
		return &SlowModeError{Retry: r.slow - now.Sub(last)}
	}
	if r.lastSent == nil {
		r.lastSent = map[string]time.Time{}
	}
	r.lastSent[m.From] = now
	return nil
}

// Publish sequences a message in the room called name and queues it for
// every member, creating the room if need be (ErrRoomLimit past MaxRooms).
// It returns the message's seq. With a Bus it waits for the Bus to store the
// message (see Send): not for event loops. Any goroutine.
func (h *Hub) Publish(name string, m *Message) (uint64, error) {
	if h.cfg.Bus != nil {
		return h.publishBus(name, m)
	}
	for {
		r, err := h.room(name, nil, true, true) // kept a while: it may be an empty room's first message
		if err != nil {
			return 0, err
		}
		seq, err := r.publish(m)
		if err != errRoomGone {
			return seq, err
		}
	}
}

func (r *Room) publish(m *Message) (uint64, error) {
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return 0, errRoomGone
	}
	now := r.hub.cfg.Now()
	err := r.checkSenderLocked(m.From, now)
	if err == nil {
		err = r.slowLocked(m, now)
	}
	if err != nil {
		r.mu.Unlock()
		return 0, err
	}
	msg := proto.Message{Seq: r.seq + 1, TS: now.UnixMilli(), From: m.From, Name: m.Name,
		Body: m.Body, Badges: m.Badges, Meta: m.Meta}
	err = r.sequenceLocked(&msg)
	kick := err == nil && r.kickLocked()
	r.mu.Unlock()
	if kick {
		r.flush()
	}
	return msg.Seq, err
}

// Ingest adds a message sequenced by another node (through the Bus). Older
// or repeated seqs are ignored. The room is created even past MaxRooms: the
// node that sequenced the message admitted it. Any goroutine.
func (h *Hub) Ingest(name string, m proto.Message) {
	for {
		if r, _ := h.room(name, nil, false, true); r.ingest(&m) {
			return
		}
	}
}

// ingest reports false if the room was dropped (the caller retries).
func (r *Room) ingest(m *proto.Message) bool {
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return false
	}
	kick := m.Seq > r.seq && r.sequenceLocked(m) == nil && r.kickLocked()
	r.mu.Unlock()
	if kick {
		r.flush()
	}
	return true
}

// sequenceLocked appends msg, whose Seq is set, to history and the pending
// queue.
func (r *Room) sequenceLocked(msg *proto.Message) error {
	enc := r.hub.getEncoder()
	defer r.hub.putEncoder(enc)
	b, err := enc.MessagePayload(proto.Msgpack, r.epoch, msg)
	if err != nil {
		return err
	}
	if len(b) > r.hub.cfg.MaxBatchBytes {
		return ErrTooLarge
	}
	e := &entry{mp: append([]byte(nil), b...), seq: msg.Seq, at: time.Now()}
	it := item{e: e}
	for f := proto.JSON; f < proto.NumFormats; f++ {
		if r.fmtCount[f] > 0 {
			if b, err = enc.MessagePayload(f, r.epoch, msg); err != nil {
				return err
			}
			it.enc[f] = append([]byte(nil), b...)
		}
	}
	r.seq = msg.Seq
	r.evn++
	e.evn = r.evn
	r.hub.Stats.Messages.Add(1)
	r.keepLocked(e)
	r.pending = append(r.pending, it)
	return nil
}

// keepLocked appends e to the history ring.
func (r *Room) keepLocked(e *entry) {
	switch {
	case r.histCap() == 0:
	case len(r.ring) < r.histCap():
		r.ring = append(r.ring, e)
	default:
		r.ring[r.head] = e
		r.head = (r.head + 1) % len(r.ring)
	}
}

// encodeFormatLocked encodes in format f every pending message, when the
// room's first member of that format joins (kept messages are transcoded
// for each joiner instead).
func (r *Room) encodeFormatLocked(f proto.Format) {
	enc := r.hub.getEncoder()
	defer r.hub.putEncoder(enc)
	for i := range r.pending {
		it := &r.pending[i]
		if it.e != nil && it.enc[f] == nil && !it.e.deleted {
			if b, err := enc.Transcode(f, r.epoch, it.e.mp); err == nil { // it was encoded, so it decodes
				it.enc[f] = append([]byte(nil), b...)
			}
		}
	}
}
