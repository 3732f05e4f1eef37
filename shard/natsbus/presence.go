package natsbus

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// Presence across nodes: each node tells the others its connections in each
// room it follows and, while the room lists members, its users there, on
// core NATS (not stored): subject "roomcast.presence.<room as in Subject>",
// payload a msgpack presenceMsg. It tells when its count or list changed
// (checked every presenceTick) and every beat (TTL/3, 5 s by default) while
// its count is not zero. A node sums the others' latest counts and merges
// their lists (each user once); what a node does not repeat within the TTL
// (Config.PresenceTTL, 15 s by default: its node died) is dropped, and its
// users leave. A node that starts following a room tells at its next tick;
// the others, hearing a node new to them, tell theirs at their next tick, so
// it learns the room's lists within about two ticks, not a beat.

const (
	presencePrefix  = "roomcast.presence."
	presenceTick    = time.Second
	presenceVersion = 1

	// A node lists at most maxPresenceMembers users of a room, in a payload
	// of at most maxPresenceBytes (well under NATS's default 1 MiB); past
	// either it tells its count only, as for rooms that do not list members.
	// Received messages past them are ignored.
	maxPresenceMembers = 1000
	maxPresenceBytes   = 256 << 10
)

// presenceMsg is one node's presence in one room.
type presenceMsg struct {
	V      int            `msgpack:"v"`           // presenceVersion; other versions are ignored
	Node   string         `msgpack:"node"`        // the sender (Bus.node)
	N      int            `msgpack:"n"`           // its connections in the room
	Listed bool           `msgpack:"l,omitempty"` // the room lists members: M is the sender's whole list
	M      []proto.Member `msgpack:"m,omitempty"` // the sender's users, each once
}

// presence is one followed room's share of presence.
type presence struct {
	f    shard.Feed
	subj string
	sub  *nats.Subscription

	// Owned by the presence goroutine.
	beat     time.Time
	lastSum  int
	lastList []proto.Member // last merged list handed to Remote, sorted by ID
	gotFirst bool

	// mu guards the rest: the NATS subscription goroutine writes others,
	// the stop (whatever goroutine drops the room) reads sent and told and
	// sets stopped, the presence goroutine does all of these. Never held
	// while calling the feed (Local and Remote take the room's lock, and
	// the stop runs under it).
	mu      sync.Mutex
	others  map[string]nodePresence // by node
	newPeer bool                    // a node not heard before spoke: tell ours at the next tick
	sent    shard.LocalPresence     // last told; Members sorted by ID
	told    bool
	stopped bool // the stop told "gone": nothing more is told or merged
}

type nodePresence struct {
	n       int
	members []proto.Member // nil unless the node lists
	seen    time.Time
}

func presenceSubject(room string) string {
	return presencePrefix + strings.TrimPrefix(Subject(room), subjectPrefix)
}

// presenceTimes returns the TTL, the beat and the tick of presence.
func (b *Bus) presenceTimes() (ttl, beat, tick time.Duration) {
	ttl = b.cfg.PresenceTTL
	beat = ttl / 3
	return ttl, beat, min(presenceTick, beat)
}

// followPresence starts telling and hearing the room's presence; the
// returned func stops it.
func (b *Bus) followPresence(room string, f shard.Feed) func() {
	p := &presence{f: f, subj: presenceSubject(room), others: map[string]nodePresence{}}
	sub, err := b.nc.Subscribe(p.subj, p.heard(b.node))
	if err != nil {
		b.log.Warn("cannot follow presence", "room", room, "err", err)
	}
	p.sub = sub
	b.presMu.Lock()
	b.pres[p] = struct{}{}
	b.presMu.Unlock()
	return func() {
		b.presMu.Lock()
		delete(b.pres, p)
		b.presMu.Unlock()
		if p.sub != nil {
			_ = p.sub.Unsubscribe()
		}
		p.mu.Lock() // a tell running now publishes before the "gone", or not at all
		defer p.mu.Unlock()
		p.stopped = true
		if p.told && p.sent.Count > 0 {
			if data, err := msgpack.Marshal(&presenceMsg{V: presenceVersion, Node: b.node}); err == nil {
				_ = b.nc.Publish(p.subj, data) // gone from this node
			}
		}
	}
}

// heard records another node's presence (NATS subscription goroutine).
// Malformed, foreign-version or oversized messages are ignored.
func (p *presence) heard(self string) nats.MsgHandler {
	return func(m *nats.Msg) {
		if len(m.Data) > maxPresenceBytes {
			return
		}
		var pm presenceMsg
		if err := msgpack.Unmarshal(m.Data, &pm); err != nil || pm.V != presenceVersion || pm.Node == "" ||
			pm.Node == self || pm.N < 0 || len(pm.M) > maxPresenceMembers {
			return
		}
		if !pm.Listed {
			pm.M = nil
		}
		pm.M = slices.DeleteFunc(pm.M, func(m proto.Member) bool { return m.ID == "" })
		p.mu.Lock()
		if _, ok := p.others[pm.Node]; !ok && pm.N > 0 {
			p.newPeer = true
		}
		p.others[pm.Node] = nodePresence{n: pm.N, members: pm.M, seen: time.Now()}
		p.mu.Unlock()
	}
}

// presenceLoop tells and merges the presence of every followed room.
func (b *Bus) presenceLoop() {
	_, _, tick := b.presenceTimes()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.presMu.Lock()
			list := make([]*presence, 0, len(b.pres))
			for p := range b.pres {
				list = append(list, p)
			}
			b.presMu.Unlock()
			for _, p := range list {
				p.tell(b, now)
				p.merge(b, now)
			}
		}
	}
}

func byID(a, b proto.Member) int { return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Name, b.Name)) }

// tell publishes this node's presence in the room when it changed, or when
// the beat is due (presence goroutine). It publishes under p.mu, so that a
// stop running meanwhile tells "gone" after it.
func (p *presence) tell(b *Bus, now time.Time) {
	_, beat, _ := b.presenceTimes()
	lp := p.f.Local()
	if len(lp.Members) > maxPresenceMembers {
		lp.Listed, lp.Members = false, nil
	}
	slices.SortFunc(lp.Members, byID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	newPeer := p.newPeer
	p.newPeer = false
	changed := newPeer || !p.told || lp.Count != p.sent.Count || lp.Listed != p.sent.Listed || !slices.Equal(lp.Members, p.sent.Members)
	if !changed && (lp.Count == 0 || now.Sub(p.beat) < beat) {
		return
	}
	data, err := msgpack.Marshal(&presenceMsg{V: presenceVersion, Node: b.node, N: lp.Count, Listed: lp.Listed, M: lp.Members})
	if err == nil && len(data) > maxPresenceBytes {
		data, err = msgpack.Marshal(&presenceMsg{V: presenceVersion, Node: b.node, N: lp.Count})
	}
	if err == nil && b.Connected() && b.nc.Publish(p.subj, data) == nil {
		p.sent, p.told, p.beat = lp, true, now
	}
}

// merge sums the other nodes' counts and merges their lists, dropping what
// a node did not repeat within the TTL, and hands a change to the room.
func (p *presence) merge(b *Bus, now time.Time) {
	ttl, _, _ := b.presenceTimes()
	sum := 0
	var list []proto.Member
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	for node, c := range p.others {
		if now.Sub(c.seen) > ttl || c.n == 0 {
			delete(p.others, node)
			continue
		}
		sum += c.n
		list = append(list, c.members...)
	}
	p.mu.Unlock()
	slices.SortFunc(list, byID)
	list = slices.CompactFunc(list, func(a, b proto.Member) bool { return a.ID == b.ID }) // a user on two nodes: once
	if sum != p.lastSum || !p.gotFirst || !slices.Equal(list, p.lastList) {
		p.lastSum, p.lastList, p.gotFirst = sum, list, true
		p.f.Remote(sum, list)
	}
}
