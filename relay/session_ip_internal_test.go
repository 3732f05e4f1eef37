package relay

import (
	"net/netip"
	"testing"
	"unique"
)

// TestSessionIPRoundTrip: the address a session keeps in 17 bytes comes
// back as the same netip.Addr (==, so the same Server.ips key), for every
// kind: none, IPv4, IPv6, IPv4-mapped IPv6, unspecified IPv6, zoned IPv6;
// and setting an address without a zone after one with forgets the zone.
func TestSessionIPRoundTrip(t *testing.T) {
	s := &session{}
	for _, in := range []string{"", "1.2.3.4", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::ffff:1.2.3.4",
		"::", "fe80::1%eth0", "fe80::1%1", "fe80::1", "::1", "::ffff:1.2.3.4%z"} {
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		s.setAddr(a)
		if got := s.addr(); got != a || got.String() != a.String() {
			t.Errorf("%q: got back %v (zone %q), want %v", in, got, got.Zone(), a)
		}
		if (a.Zone() != "") != (s.ip.kind == ipV6Zone) {
			t.Errorf("%q: kind %d", in, s.ip.kind)
		}
	}
	s.setAddr(netip.MustParseAddr("fe80::1%eth0"))
	s.setAddr(netip.MustParseAddr("fe80::1"))
	if s.cold.ipZone != (unique.Handle[string]{}) || s.addr().Zone() != "" {
		t.Errorf("zone kept: %q", s.addr().Zone())
	}
}
