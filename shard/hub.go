// Package shard holds rooms: the per-room sequencer, the history ring,
// presence, membership split per event loop, and the batched fan-out engine.
//
// A room's members are kept per event loop. Each loop's list is owned by
// that loop's goroutine: members join and leave on their own loop, and each
// flush of the room hands every loop that holds members one task that writes
// the same pre-encoded frame bytes to its members. The room's mutex guards
// only the sequencer, history, presence and the pending queue; it is never
// held while writing to members.
package shard

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// Member is one connection joined to a room. Deliver is called only on the
// member's own event loop, with bytes that stay valid only for the call.
type Member interface {
	Deliver(frame []byte)
}

// Runnable is a task run on an event loop (gnet.Runnable has the same shape).
type Runnable interface {
	Run(ctx context.Context) error
}

// Loop is one event loop. Execute may be called from any goroutine; it runs
// r later on the loop's goroutine, in the order of calls.
type Loop interface {
	Execute(r Runnable) error
}

// Policy is what a room's namespace allows. The zero value of each field is
// replaced by the default noted.
type Policy struct {
	History       int           // messages kept; zero means 100, negative means none
	NoAnonRead    bool          // anonymous viewers may not join
	MemberListMax int           // list members while count <= this; zero means 100, negative never
	MaxMembers    int           // room_full past this many connections; zero means no limit
	SlowMode      time.Duration // least time between two messages of a user; zero means off
	NoViewerList  bool          // anonymous viewers get no member lists (joined without members, presence with count only); zero means they do
	FlushInterval time.Duration // an idle room waits up to this for more events before it flushes; zero means it flushes at once
	// FlushPerMember makes the window grow with the room: it is this much
	// per connection joined, at most FlushInterval (the latency budget);
	// zero means the window is FlushInterval whatever the room's size.
	FlushPerMember time.Duration
}

func (p Policy) history() int {
	switch {
	case p.History == 0:
		return 100
	case p.History < 0:
		return 0
	}
	return p.History
}

func (p Policy) memberListMax() int {
	if p.MemberListMax == 0 {
		return 100
	}
	return p.MemberListMax
}

// Observer receives measurements of the fan-out. Its methods are called on
// event loops and on publishing goroutines: they must be cheap, must not
// block and must not allocate (Prometheus histograms qualify).
type Observer interface {
	BatchBuilt(msgs int)                           // a batch frame was built
	FlushWritten(sequencedToWritten time.Duration) // the last loop of a flush wrote it; measured from its oldest message
	LoopBusy(loop int, d time.Duration)            // a loop spent d writing a flush
}

// Config configures a Hub. Zero values are replaced by the defaults noted.
type Config struct {
	Loops            int                    // number of event loops; zero means 1
	Policy           func(ns string) Policy // policy of a namespace; nil means the zero Policy everywhere
	MaxBatchMsgs     int                    // messages per batch frame; zero means 256
	MaxBatchBytes    int                    // encoded bytes per flush; zero means 64 KiB
	PresenceInterval time.Duration          // count-only presence of big rooms at most this often; zero means 1s
	PresenceWindow   time.Duration          // with only presence pending, a room waits this for more (a join storm in one write; a message ends the wait); zero means 50ms, negative none
	EmptyRoomTTL     time.Duration          // an empty room (and its history) is dropped after this; zero means 10m
	Bus              Bus                    // shared log of several nodes (see Bus); nil means single node, in memory
	Now              func() time.Time       // clock; nil means time.Now
	Observer         Observer               // fan-out measurements; nil means none
	MaxRooms         int                    // rooms at most; creating one more fails with ErrRoomLimit; zero means no limit
	Epoch            func() string          // names a new room's history; nil means 8 random base32 characters
}

// Defaults of the batch and housekeeping settings of Config, for the
// relay's settings table.
const (
	DefaultMaxBatchMsgs     = 256
	DefaultMaxBatchBytes    = 64 << 10
	DefaultPresenceInterval = time.Second
	DefaultPresenceWindow   = 50 * time.Millisecond
	DefaultEmptyRoomTTL     = 10 * time.Minute
)

// ErrRoomLimit refuses to create a room past Config.MaxRooms.
var ErrRoomLimit = errors.New("shard: too many rooms")

// Stats are cumulative counters, safe to read from any goroutine.
type Stats struct {
	Rooms      atomic.Int64 // rooms existing now
	Members    atomic.Int64 // memberships now
	Messages   atomic.Int64 // messages sequenced
	Batches    atomic.Int64 // batch frames built
	Flushes    atomic.Int64 // flushes dispatched
	Deliveries atomic.Int64 // message deliveries written to members (a batch of n to m members counts n*m)
	Writes     atomic.Int64 // writes to members
	Panics     atomic.Int64 // panics recovered in a loop's flush task (a Member's Deliver)
}

const numShards = 64

// Hub owns every room of this node.
type Hub struct {
	cfg    Config
	seed   maphash.Seed
	shards [numShards]roomShard
	Stats  Stats
	encs   sync.Pool // *proto.Encoder
	defls  sync.Pool // *proto.Deflater, for compressed flights

	presMu    sync.Mutex
	presDirty map[*Room]struct{}

	stop chan struct{}
	done sync.WaitGroup
}

type roomShard struct {
	mu    sync.Mutex
	rooms map[string]*Room
}

// NewHub returns a Hub and starts its housekeeping goroutine (stop it with
// Close).
func NewHub(cfg Config) *Hub {
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if cfg.Policy == nil {
		cfg.Policy = func(string) Policy { return Policy{} }
	}
	if cfg.MaxBatchMsgs <= 0 {
		cfg.MaxBatchMsgs = DefaultMaxBatchMsgs
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.PresenceInterval <= 0 {
		cfg.PresenceInterval = DefaultPresenceInterval
	}
	if cfg.PresenceWindow == 0 {
		cfg.PresenceWindow = DefaultPresenceWindow
	}
	if cfg.EmptyRoomTTL <= 0 {
		cfg.EmptyRoomTTL = DefaultEmptyRoomTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Epoch == nil {
		cfg.Epoch = randomEpoch
	}
	h := &Hub{cfg: cfg, seed: maphash.MakeSeed(), presDirty: map[*Room]struct{}{}, stop: make(chan struct{})}
	h.encs.New = func() any { return proto.NewEncoder() }
	h.defls.New = func() any { return proto.NewDeflater() }
	for i := range h.shards {
		h.shards[i].rooms = map[string]*Room{}
	}
	h.done.Add(1)
	go h.housekeep()
	return h
}

// Close stops the housekeeping goroutine.
func (h *Hub) Close() {
	close(h.stop)
	h.done.Wait()
}

func (h *Hub) shard(name string) *roomShard {
	return &h.shards[maphash.String(h.seed, name)%numShards]
}

// Room returns the room called name, creating it if needed, even past
// MaxRooms: it is for moderation, which must be able to ban a user from a
// room before the user comes (use Open where a refusal can be answered).
// A room looked up here is kept at least EmptyRoomTTL. Any goroutine.
func (h *Hub) Room(name string) *Room {
	r, _ := h.room(name, nil, false, true)
	return r
}

// Open returns the room called name, creating it if needed; past MaxRooms
// it fails with ErrRoomLimit. A room looked up here is kept at least
// EmptyRoomTTL. Any goroutine.
func (h *Hub) Open(name string) (*Room, error) {
	return h.room(name, nil, true, true)
}

// room returns the room called name. A new room is created if limit is
// false or the hub holds fewer than MaxRooms, and create (if any) allows
// it. keep marks the room as looked up (the reaper spares it).
func (h *Hub) room(name string, create func() error, limit, keep bool) (*Room, error) {
	s := h.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		if err := h.admitRoom(create, limit); err != nil {
			return nil, err
		}
		r = newRoom(h, name)
		s.rooms[name] = r
	}
	if keep {
		r.lastUse.Store(h.cfg.Now().UnixNano()) // under s.mu, which the reaper holds too
	}
	return r, nil
}

// admitRoom counts a room about to be created, or refuses it.
func (h *Hub) admitRoom(create func() error, limit bool) error {
	if n := h.Stats.Rooms.Add(1); limit && h.cfg.MaxRooms > 0 && n > int64(h.cfg.MaxRooms) {
		h.Stats.Rooms.Add(-1)
		return ErrRoomLimit
	}
	if create != nil {
		if err := create(); err != nil {
			h.Stats.Rooms.Add(-1)
			return err
		}
	}
	return nil
}

// dropIdle drops r at once if it is idle: no members, never a message, no
// moderation state, not looked up by Room or Open lately. Any goroutine
// holding no lock of the hub.
func (h *Hub) dropIdle(r *Room) {
	s := h.shard(r.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || !r.idleLocked() || s.rooms[r.name] != r {
		return
	}
	r.dead = true
	r.unwatchLocked()
	delete(s.rooms, r.name)
	h.Stats.Rooms.Add(-1)
}

// randomEpoch returns 8 random characters of base32 (40 bits).
func randomEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return epochEncoding.EncodeToString(b[:])
}

var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Lookup returns the room called name, or nil. Any goroutine.
func (h *Hub) Lookup(name string) *Room {
	s := h.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[name]
}

// Rooms calls fn for every room whose name starts with prefix. Any goroutine.
func (h *Hub) Rooms(prefix string, fn func(*Room)) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		list := make([]*Room, 0, len(s.rooms))
		for name, r := range s.rooms {
			if len(name) >= len(prefix) && name[:len(prefix)] == prefix {
				list = append(list, r)
			}
		}
		s.mu.Unlock()
		for _, r := range list {
			fn(r)
		}
	}
}

func (h *Hub) getEncoder() *proto.Encoder  { return h.encs.Get().(*proto.Encoder) }
func (h *Hub) putEncoder(e *proto.Encoder) { h.encs.Put(e) }

func (h *Hub) getDeflater() *proto.Deflater  { return h.defls.Get().(*proto.Deflater) }
func (h *Hub) putDeflater(d *proto.Deflater) { h.defls.Put(d) }

func (h *Hub) markPresence(r *Room) {
	h.presMu.Lock()
	h.presDirty[r] = struct{}{}
	h.presMu.Unlock()
}

// housekeep sends the count-only presence of big rooms, drops rooms that
// stayed empty for EmptyRoomTTL and trims idle rooms' flight buffers.
func (h *Hub) housekeep() {
	defer h.done.Done()
	pres := time.NewTicker(h.cfg.PresenceInterval)
	defer pres.Stop()
	reap := time.NewTicker(max(min(h.cfg.EmptyRoomTTL/4, time.Minute), time.Millisecond))
	defer reap.Stop()
	trim := time.NewTicker(trimEvery)
	defer trim.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-pres.C:
			h.flushPresence()
		case <-reap.C:
			h.reap()
		case <-trim.C:
			h.trim()
		}
	}
}

// trim lets idle rooms go of the flight buffers a burst grew
// (Room.trimLocked). Like reap, it locks each room under its shard's lock;
// it allocates nothing (alloc tests count every allocation of the process).
func (h *Hub) trim() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for _, r := range s.rooms {
			r.mu.Lock()
			r.trimLocked()
			r.mu.Unlock()
		}
		s.mu.Unlock()
	}
}

func (h *Hub) flushPresence() {
	h.presMu.Lock()
	dirty := h.presDirty
	h.presDirty = map[*Room]struct{}{}
	h.presMu.Unlock()
	for r := range dirty {
		r.countPresence()
	}
}

func (h *Hub) reap() {
	cutoff := h.cfg.Now().Add(-h.cfg.EmptyRoomTTL)
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for name, r := range s.rooms {
			if r.reapable(cutoff) {
				delete(s.rooms, name)
				h.Stats.Rooms.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}
