package shard

import (
	"errors"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// ErrBanned refuses a join or a message of a user banned from the room.
var ErrBanned = errors.New("shard: banned from this room")

// MutedError refuses a message of a user timed out in the room.
type MutedError struct {
	Retry time.Duration // until the timeout ends
}

func (e *MutedError) Error() string { return "shard: muted for " + e.Retry.String() }

// Moderation state of a room, guarded by Room.mu: bans last until Unban
// (a room with bans is never dropped); timeouts end on time and are pruned
// by the housekeeper.
type moderation struct {
	bans  map[string]struct{}
	mutes map[string]time.Time // until
}

func (r *Room) isBannedLocked(user string) bool {
	_, ok := r.mod.bans[user]
	return ok
}

// checkSenderLocked refuses a message of a banned or muted user.
func (r *Room) checkSenderLocked(user string, now time.Time) error {
	if r.isBannedLocked(user) {
		return ErrBanned
	}
	if until, ok := r.mod.mutes[user]; ok && now.Before(until) {
		return &MutedError{Retry: until.Sub(now)}
	}
	return nil
}

// Ban bans user from the room until Unban. Any goroutine. The caller
// removes the user's memberships (with a kicked event).
func (r *Room) Ban(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mod.bans == nil {
		r.mod.bans = map[string]struct{}{}
	}
	r.mod.bans[user] = struct{}{}
}

// Unban lifts a ban; it reports whether there was one. Any goroutine.
func (r *Room) Unban(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.mod.bans[user]
	delete(r.mod.bans, user)
	return ok
}

// Banned reports whether user is banned. Any goroutine.
func (r *Room) Banned(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isBannedLocked(user)
}

// Timeout mutes user in the room for d (zero lifts it). Any goroutine.
func (r *Room) Timeout(user string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d <= 0 {
		delete(r.mod.mutes, user)
		return
	}
	if r.mod.mutes == nil {
		r.mod.mutes = map[string]time.Time{}
	}
	r.mod.mutes[user] = r.hub.cfg.Now().Add(d)
}

// Delete removes the message seq from history, for good, and queues a
// delete event in order with the room's traffic, also for a message no
// longer kept (members may still show it). It reports false for a seq the
// room never gave out or already deleted. With a Bus the event goes through
// the log, to every node, and it reports false only for a seq this node
// knows was never given out or already deleted. Any goroutine.
func (r *Room) Delete(seq uint64) bool {
	if r.hub.cfg.Bus != nil {
		r.mu.Lock()
		known := seq > 0 && (!r.synced || seq <= r.seq)
		for _, e := range r.ring {
			known = known && (e.seq != seq || !e.deleted)
		}
		r.mu.Unlock()
		if known {
			r.moderateBus(Control{Delete: seq})
		}
		return known
	}
	return r.deleteLocal(seq)
}

// deleteLocal is Delete in this node's memory.
func (r *Room) deleteLocal(seq uint64) bool {
	r.mu.Lock()
	known := seq > 0 && seq <= r.seq
	for _, e := range r.ring {
		if e.seq == seq {
			known = known && !e.deleted // deleting twice is refused
			e.forget()
		}
	}
	if known {
		r.controlLocked(&proto.Delete{T: proto.TDelete, Room: r.name, Seq: seq})
	}
	kick := known && r.kickLocked()
	r.mu.Unlock()
	if kick {
		r.flush()
	}
	return known
}

// Clear removes every kept message and queues a clear event; with a Bus,
// through the log, on every node. Any goroutine.
func (r *Room) Clear() {
	if r.hub.cfg.Bus != nil {
		r.moderateBus(Control{Clear: true})
		return
	}
	r.clearLocal()
}

// clearLocal is Clear in this node's memory.
func (r *Room) clearLocal() {
	r.mu.Lock()
	for _, e := range r.ring {
		e.forget()
	}
	r.controlLocked(&proto.Clear{T: proto.TClear, Room: r.name})
	r.unlockKick()
}

// forget drops a message's content. A flush already under way still holds
// its bytes in the batch frame being written, and a pending item its other
// encodings until it is handed out (and skipped); nothing else does.
func (e *entry) forget() {
	e.deleted = true
	e.mp = nil
}

// controlLocked queues a control frame, encoded in both formats.
func (r *Room) controlLocked(v any) {
	enc := r.hub.getEncoder()
	defer r.hub.putEncoder(enc)
	c := &ctrlItem{}
	for f := proto.Format(0); f < proto.NumFormats; f++ {
		b, err := enc.Frame(f, v)
		if err != nil {
			return // plain strings and ints always encode
		}
		c.frame[f] = append([]byte(nil), b...)
	}
	r.evn++
	c.evn = r.evn
	r.pending = append(r.pending, item{c: c})
}

// pruneLocked drops ended timeouts.
func (m *moderation) pruneLocked(now time.Time) {
	for u, until := range m.mutes {
		if !now.Before(until) {
			delete(m.mutes, u)
		}
	}
}
