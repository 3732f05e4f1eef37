package relay_test

import (
	"net/netip"
	"testing"

	"github.com/roomcast/roomcast/relay"
)

// TestIPSlotReleasedForEveryAddressKind: the per-IP slot a connection
// takes at admission is given back when it closes, for every kind of
// client address the session keeps in its 17 bytes (IPv4, IPv6, a zoned
// IPv6 from X-Forwarded-For or X-Real-IP, an IPv4-mapped IPv6 in a PROXY
// header, which the relay unmaps), WebSocket and /sse alike: with a cap of 1, the same client gets
// in again once its connection is gone. A release under another key than
// the admission's would leave the slot taken (429 for good).
func TestIPSlotReleasedForEveryAddressKind(t *testing.T) {
	xff := perIPRelay(t, 1, func(c *relay.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} })
	proxied := perIPRelay(t, 1, func(c *relay.Config) {
		c.TrustedProxies, c.ProxyProtocol = []string{"127.0.0.0/8"}, true
	})
	for _, tc := range []struct {
		name string
		srv  *relay.Server
		req  func() []string
		ok   int
	}{
		{"ws ipv4", xff, func() []string { return []string{wsUpgrade("X-Forwarded-For: 203.0.113.7")} }, 101},
		{"ws ipv6", xff, func() []string { return []string{wsUpgrade("X-Forwarded-For: 2001:db8::7")} }, 101},
		{"ws zoned xff", xff, func() []string { return []string{wsUpgrade("X-Forwarded-For: fe80::7%eth0")} }, 101},
		{"ws zoned x-real-ip", xff, func() []string { return []string{wsUpgrade("X-Real-IP: fe80::8%lo")} }, 101},
		{"sse zoned xff", xff, func() []string { return []string{sseRequest("ipkind", "X-Forwarded-For: fe80::9%eth1")} }, 200},
		{"ws proxy v2 mapped", proxied, func() []string {
			return []string{proxyV2(netip.MustParseAddr("::ffff:198.51.100.9")) + wsUpgrade()}
		}, 101},
		{"sse proxy v1 ipv6", proxied, func() []string {
			return []string{"PROXY TCP6 2001:db8::9 ::1 1 2\r\n" + sseRequest("ipkind")}
		}, 200},
	} {
		st, first := rawGet(t, tc.srv, tc.req()...)
		if st != tc.ok {
			t.Fatalf("%s: status %d, want %d", tc.name, st, tc.ok)
		}
		if st, _ := rawGet(t, tc.srv, tc.req()...); st != 429 {
			t.Fatalf("%s: a second connection of the client: status %d, want 429", tc.name, st)
		}
		first.Close()
		eventually(t, tc.name+": the slot given back on close", func() bool {
			st, conn := rawGet(t, tc.srv, tc.req()...)
			conn.Close()
			return st == tc.ok
		})
	}
}
