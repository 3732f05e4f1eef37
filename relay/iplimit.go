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
	roomRate ratelimit.Limits

	mu      sync.Mutex
	open    map[netip.Addr]int
	buckets map[netip.Addr]*ratelimit.Bucket // new connections, by address (netip.Addr keys: no ip.String per handshake)
	rooms   map[netip.Addr]*ratelimit.Bucket // rooms created, by address
}

func newIPLimits(cfg *Config) (*ipLimits, error) {
	l := &ipLimits{rate: ratelimit.Limits{Rate: cfg.IPConnRate.Rate, Burst: cfg.IPConnRate.Burst},
		max: cfg.IPMaxConns, open: map[netip.Addr]int{}, buckets: map[netip.Addr]*ratelimit.Bucket{},
		roomRate: ratelimit.Limits{Rate: cfg.IPRoomRate.Rate, Burst: cfg.IPRoomRate.Burst}, rooms: map[netip.Addr]*ratelimit.Bucket{}}
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok, _ := take(l.buckets, ip, l.rate, now); !ok {
		return refIPRate
	}
	if l.open[ip] >= l.max {
		return refIPConns
	}
	l.open[ip]++
	return refNone
}

// take takes one token of ip's bucket in m (a new bucket starts full).
// Called with l.mu held.
func take(m map[netip.Addr]*ratelimit.Bucket, ip netip.Addr, lim ratelimit.Limits, now time.Time) (bool, time.Duration) {
	b := m[ip]
	if b == nil {
		b = &ratelimit.Bucket{}
		m[ip] = b
	}
	return b.Take(lim, now)
}

// sweep drops the rate buckets of addresses that have been quiet long
// enough to be full again (a new bucket starts full, so nothing changes),
// and returns how many are left. Server.tick calls it every minute.
func (l *ipLimits) sweep(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sweepBuckets(l.buckets, l.rate, now) + sweepBuckets(l.rooms, l.roomRate, now)
}

// sweepBuckets drops the buckets of m that are full again and returns how
// many are left. Called with l.mu held.
func sweepBuckets(m map[netip.Addr]*ratelimit.Bucket, lim ratelimit.Limits, now time.Time) int {
	for ip, b := range m {
		if b.Full(lim, now) {
			delete(m, ip)
		}
	}
	return len(m)
}

// createRoom takes one room creation of ip: a *roomRateError if it created
// too many lately. Any goroutine.
func (l *ipLimits) createRoom(ip netip.Addr) error {
	if l.exempted(ip) {
		return nil
	}
	l.mu.Lock()
	ok, wait := take(l.rooms, ip, l.roomRate, time.Now())
	l.mu.Unlock()
	if !ok {
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
