package relay

import (
	"net/netip"
	"testing"
	"time"
)

// TestIPAdmitNoAllocs: the per-IP admission of a known address (its
// bucket exists) allocates nothing: buckets are keyed by netip.Addr, not
// by ip.String.
func TestIPAdmitNoAllocs(t *testing.T) {
	l, err := newIPLimits(&Config{IPConnRate: RateLimit{Rate: 1e9, Burst: 1e9}, IPMaxConns: 100,
		IPRoomRate: RateLimit{Rate: 1e9, Burst: 1e9}, IPExempt: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("203.0.113.7")
	now := time.Now()
	if l.admit(ip, now) != refNone || l.createRoom(ip) != nil {
		t.Fatal("refused")
	}
	l.release(ip)
	allocs := testing.AllocsPerRun(200, func() {
		if l.admit(ip, now) != refNone || l.createRoom(ip) != nil {
			t.Fatal("refused")
		}
		l.release(ip)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per admission, want 0", allocs)
	}
}
