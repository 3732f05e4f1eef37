package relay

import (
	"net/netip"
	"unique"
)

// sessionIP is a session's client address in 17 bytes where a netip.Addr
// takes 24: the 16 bytes of the address and what they hold. Every session
// keeps one (the limit key of its connection and room creations, released
// in OnClose), so it sits in the session's byte area. An IPv6 zone (a
// link-local peer, or an X-Forwarded-For address naming one) is rare and
// kept in the cold part (interned: a pointer, as netip keeps it), so the
// address comes back as the same netip.Addr, zone included: the same key
// in Server.ips (iplimit.go). An IPv4-mapped IPv6 address stays IPv6, as
// netip keeps it.
type sessionIP struct {
	a    [16]byte // As16 of an IPv6 address; As4 in the first 4 of an IPv4 one
	kind ipKind
}

type ipKind uint8

const (
	ipNone   ipKind = iota // no address yet (netip.Addr{})
	ipV4                   // an IPv4 address
	ipV6                   // an IPv6 address without zone
	ipV6Zone               // an IPv6 address with the zone in cold.ipZone
)

// addr returns the session's client address (invalid before the handshake
// learnt it). Called on the loop.
func (s *session) addr() netip.Addr {
	switch s.ip.kind {
	case ipV4:
		return netip.AddrFrom4([4]byte(s.ip.a[:4]))
	case ipV6:
		return netip.AddrFrom16(s.ip.a)
	case ipV6Zone:
		return netip.AddrFrom16(s.ip.a).WithZone(s.cold.ipZone.Value())
	}
	return netip.Addr{}
}

// setAddr sets the session's client address. Called on the loop.
func (s *session) setAddr(ip netip.Addr) {
	if s.cold != nil {
		s.cold.ipZone = unique.Handle[string]{}
	}
	switch {
	case !ip.IsValid():
		s.ip = sessionIP{}
	case ip.Is4():
		s.ip = sessionIP{kind: ipV4}
		a4 := ip.As4()
		copy(s.ip.a[:], a4[:])
	case ip.Zone() != "":
		s.ip = sessionIP{a: ip.As16(), kind: ipV6Zone}
		s.coldPart().ipZone = unique.Make(ip.Zone())
	default:
		s.ip = sessionIP{a: ip.As16(), kind: ipV6}
	}
}
