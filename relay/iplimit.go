package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/roomcast/roomcast/ratelimit"
)

// ipLimits caps new connections per second and open connections per client
// IP, answered with HTTP 429 at the upgrade. Addresses in exempt (loopback
// by default, where a local proxy or the bench tool connects from) are free.
type ipLimits struct {
	rate     ratelimit.Limits
	max      int
	exempt   []netip.Prefix
	buckets  *ratelimit.Limiter
	roomRate ratelimit.Limits
	rooms    *ratelimit.Limiter // rooms created, by address

	mu   sync.Mutex
	open map[netip.Addr]int
}

func newIPLimits(cfg *Config) (*ipLimits, error) {
	l := &ipLimits{rate: ratelimit.Limits{Rate: cfg.IPConnRate.Rate, Burst: cfg.IPConnRate.Burst},
		max: cfg.IPMaxConns, buckets: ratelimit.New(), open: map[netip.Addr]int{},
		roomRate: ratelimit.Limits{Rate: cfg.IPRoomRate.Rate, Burst: cfg.IPRoomRate.Burst}, rooms: ratelimit.New()}
	for _, c := range cfg.IPExempt {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("bad exempt CIDR %q: %w", c, err)
		}
		l.exempt = append(l.exempt, p)
	}
	return l, nil
}

// addrOf returns the IP of a remote address (invalid for non-TCP).
func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (l *ipLimits) exempted(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admit takes a new connection of ip: it returns why it is refused, or
// refNone having counted the connection (release it with release). Any
// goroutine.
func (l *ipLimits) admit(ip netip.Addr, now time.Time) refusal {
	if l.exempted(ip) {
		return refNone
	}
	if ok, _ := l.buckets.Allow(ip.String(), l.rate, now); !ok {
		return refIPRate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] >= l.max {
		return refIPConns
	}
	l.open[ip]++
	return refNone
}

// sweep drops the rate buckets of addresses that have been quiet long
// enough to be full again (a new bucket starts full, so nothing changes),
// and returns how many are left. Server.tick calls it every minute.
func (l *ipLimits) sweep(now time.Time) int { return l.buckets.Sweep(now) + l.rooms.Sweep(now) }

// createRoom takes one room creation of ip: a *roomRateError if it created
// too many lately. Any goroutine.
func (l *ipLimits) createRoom(ip netip.Addr) error {
	if l.exempted(ip) {
		return nil
	}
	if ok, wait := l.rooms.Allow(ip.String(), l.roomRate, time.Now()); !ok {
		return &roomRateError{retry: wait}
	}
	return nil
}

// roomCreator returns the hook a join of a client at ip gives the shard,
// called only when the join would create the room.
func (l *ipLimits) roomCreator(ip netip.Addr) func() error {
	if l.exempted(ip) {
		return nil
	}
	return func() error { return l.createRoom(ip) }
}

// release forgets a connection admit counted.
func (l *ipLimits) release(ip netip.Addr) {
	if l.exempted(ip) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}
