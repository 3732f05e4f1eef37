package natsbus

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomcast/roomcast/shard"
)

// Presence across nodes: each node tells the others how many connections
// it has in each room it follows, on core NATS (not stored), subject
// "roomcast.presence.<room as in Subject>", payload "<node> <count>": when
// its count changed (checked every presenceTick) and every presenceBeat
// while it is not zero. A node sums the others' latest counts; a count not
// repeated within presenceTTL (its node died) is dropped.

const (
	presencePrefix = "roomcast.presence."
	presenceTick   = time.Second
	presenceBeat   = 5 * time.Second
	presenceTTL    = 3 * presenceBeat
)

// presence is one followed room's share of presence.
type presence struct {
	f    shard.Feed
	subj string
	sub  *nats.Subscription

	// Owned by the presence goroutine.
	sent     int // the count last told
	told     bool
	beat     time.Time
	lastSum  int
	gotFirst bool

	mu     sync.Mutex
	others map[string]nodeCount // by node
}

type nodeCount struct {
	n    int
	seen time.Time
}

func presenceSubject(room string) string {
	return presencePrefix + strings.TrimPrefix(Subject(room), subjectPrefix)
}

// followPresence starts telling and hearing the room's counts; the returned
// func stops it.
func (b *Bus) followPresence(room string, f shard.Feed) func() {
	p := &presence{f: f, subj: presenceSubject(room), others: map[string]nodeCount{}}
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
		if p.told && p.sent > 0 {
			_ = b.nc.Publish(p.subj, []byte(b.node+" 0")) // gone from this node
		}
	}
}

// heard records another node's count (NATS subscription goroutine).
func (p *presence) heard(self string) nats.MsgHandler {
	return func(m *nats.Msg) {
		node, num, ok := strings.Cut(string(m.Data), " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 0 || node == self {
			return
		}
		p.mu.Lock()
		p.others[node] = nodeCount{n: n, seen: time.Now()}
		p.mu.Unlock()
	}
}

// presenceLoop tells and sums the counts of every followed room.
func (b *Bus) presenceLoop() {
	t := time.NewTicker(presenceTick)
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
				p.tick(b, now)
			}
		}
	}
}

func (p *presence) tick(b *Bus, now time.Time) {
	if n := p.f.Local(); n != p.sent || !p.told || n > 0 && now.Sub(p.beat) >= presenceBeat {
		if b.Connected() && b.nc.Publish(p.subj, []byte(b.node+" "+strconv.Itoa(n))) == nil {
			p.sent, p.told, p.beat = n, true, now
		}
	}
	sum := 0
	p.mu.Lock()
	for node, c := range p.others {
		if now.Sub(c.seen) > presenceTTL || c.n == 0 {
			delete(p.others, node)
			continue
		}
		sum += c.n
	}
	p.mu.Unlock()
	if sum != p.lastSum || !p.gotFirst {
		p.lastSum, p.gotFirst = sum, true
		p.f.Remote(sum)
	}
}
