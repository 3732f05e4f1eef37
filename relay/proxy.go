package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// trustedProxies are the peers whose word on the client address is taken:
// X-Forwarded-For / X-Real-IP, and (with Config.ProxyProtocol) a PROXY
// protocol header. Static after New.
type trustedProxies struct {
	nets     []netip.Prefix
	protocol bool // trusted peers start each connection with a PROXY header
}

func newTrustedProxies(cfg *Config) (*trustedProxies, error) {
	p := &trustedProxies{protocol: cfg.ProxyProtocol}
	for _, c := range cfg.TrustedProxies {
		n, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("bad trusted proxy CIDR %q: %w", c, err)
		}
		p.nets = append(p.nets, n.Masked())
	}
	if p.protocol && len(p.nets) == 0 {
		return nil, errors.New("PROXY protocol needs trusted proxies: set the CIDRs of the proxies")
	}
	return p, nil
}

func (p *trustedProxies) trusted(ip netip.Addr) bool {
	for _, n := range p.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// clientAddr returns the client address of a request that came from peer.
// Only a trusted peer is believed: the right-most X-Forwarded-For address
// that is not itself a trusted proxy (the left-most if all are), else
// X-Real-IP. A header that does not parse is ignored (the peer it is).
// headers is called only for a trusted peer. Any goroutine.
func (p *trustedProxies) clientAddr(peer netip.Addr, headers func() (xff []string, realIP string)) netip.Addr {
	if !p.trusted(peer) {
		return peer
	}
	xff, real := headers()
	if len(xff) > 0 {
		if ip, ok := p.fromXFF(xff); ok {
			return ip
		}
		return peer
	}
	if ip, err := netip.ParseAddr(strings.TrimSpace(real)); err == nil && real != "" {
		return ip.Unmap()
	}
	return peer
}

func (p *trustedProxies) fromXFF(xff []string) (netip.Addr, bool) {
	hops := strings.Split(strings.Join(xff, ","), ",")
	var ip netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		if ip = a.Unmap(); !p.trusted(ip) {
			return ip, true
		}
	}
	return ip, ip.IsValid()
}

// forwardHeaders returns the X-Forwarded-For and X-Real-IP values of a raw
// request head (ending in the blank line).
func forwardHeaders(req []byte) (xff []string, realIP string) {
	_, rest, _ := bytes.Cut(req, []byte("\r\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("X-Forwarded-For")):
			xff = append(xff, string(bytes.TrimSpace(v)))
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("X-Real-IP")):
			realIP = string(bytes.TrimSpace(v))
		}
	}
	return xff, realIP
}

// peerAddr sets the session's address (setAddr) to the transport address
// of the connection: the peer, or the source of the PROXY header a trusted
// peer must send first when Config.ProxyProtocol is set. It returns the
// bytes of the header; s.addr() still invalid means the header is
// incomplete.
func (s *session) peerAddr(buf []byte) (int, refusal) {
	peer := addrOf(s.conn.RemoteAddr())
	if !peer.IsValid() {
		peer = netip.IPv6Unspecified() // not TCP: never with gnet's tcp listener
	}
	p := s.srv().proxies
	if !p.protocol {
		s.setAddr(peer)
		return 0, refNone
	}
	if !p.trusted(peer) {
		switch proxyPrefix(buf) {
		case proxyWhole:
			return 0, refProxy // never from an untrusted peer
		case proxyMaybe:
			return 0, refNone // too short to tell
		}
		s.setAddr(peer)
		return 0, refNone
	}
	n, src, err := parseProxyHeader(buf)
	switch {
	case err != nil:
		return 0, refProxy
	case n == 0:
		return 0, refNone
	case !src.IsValid(): // LOCAL or UNKNOWN: the proxy itself (health checks)
		src = peer
	}
	s.setAddr(src)
	return n, refNone
}

// PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

	errProxyHeader = errors.New("bad PROXY protocol header")
)

const (
	proxyV1Max = 107  // bytes of a v1 line, CRLF included
	proxyV2Max = 1024 // bytes of a v2 header we accept, TLVs included
)

// Whether bytes start with a PROXY signature.
const (
	proxyNot   = iota
	proxyMaybe // too short to tell
	proxyWhole // a whole signature
)

func proxyPrefix(buf []byte) int {
	for _, sig := range [][]byte{proxyV1Sig, proxyV2Sig} {
		if startsLike(buf, sig) {
			if len(buf) >= len(sig) {
				return proxyWhole
			}
			return proxyMaybe
		}
	}
	return proxyNot
}

// startsLike reports whether buf and sig agree on their common length.
func startsLike(buf, sig []byte) bool {
	n := min(len(buf), len(sig))
	return n > 0 && bytes.Equal(buf[:n], sig[:n])
}

// parseProxyHeader parses a PROXY protocol v1 or v2 header at the head of
// buf without waiting: n == 0 with a nil error means need more bytes. src
// is the client address, invalid for LOCAL or UNKNOWN.
func parseProxyHeader(buf []byte) (n int, src netip.Addr, err error) {
	switch {
	case len(buf) == 0:
		return 0, netip.Addr{}, nil
	case startsLike(buf, proxyV1Sig):
		return parseProxyV1(buf)
	case startsLike(buf, proxyV2Sig):
		return parseProxyV2(buf)
	}
	return 0, netip.Addr{}, errProxyHeader
}

// parseProxyV1 parses "PROXY TCP4 src dst sport dport\r\n" (or TCP6, or
// "PROXY UNKNOWN ...\r\n").
func parseProxyV1(buf []byte) (int, netip.Addr, error) {
	end := bytes.Index(buf[:min(len(buf), proxyV1Max)], []byte("\r\n"))
	if end < 0 {
		if len(buf) >= proxyV1Max {
			return 0, netip.Addr{}, errProxyHeader
		}
		return 0, netip.Addr{}, nil
	}
	f := strings.Split(string(buf[:end]), " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return end + 2, netip.Addr{}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return 0, netip.Addr{}, errProxyHeader
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	if err1 != nil || err2 != nil || src.Is4() != (f[1] == "TCP4") || dst.Is4() != src.Is4() || src.Zone() != "" || !port(f[4]) || !port(f[5]) {
		return 0, netip.Addr{}, errProxyHeader
	}
	return end + 2, src.Unmap(), nil
}

// port reports whether s is a decimal port, 0 to 65535, without a leading zero.
func port(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 16)
	return err == nil
}

// parseProxyV2 parses the binary header: signature, version and command,
// family and transport, length, addresses, TLVs (skipped).
func parseProxyV2(buf []byte) (int, netip.Addr, error) {
	if len(buf) < 16 {
		return 0, netip.Addr{}, nil
	}
	verCmd, fam := buf[12], buf[13]
	n := 16 + int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 || verCmd&0xf > 1 || n > proxyV2Max {
		return 0, netip.Addr{}, errProxyHeader
	}
	if len(buf) < n {
		return 0, netip.Addr{}, nil
	}
	body := buf[16:n]
	var src netip.Addr
	switch fam >> 4 {
	case 0x1: // AF_INET: src, dst, ports
		if len(body) < 12 {
			return 0, netip.Addr{}, errProxyHeader
		}
		src = netip.AddrFrom4([4]byte(body[:4]))
	case 0x2: // AF_INET6
		if len(body) < 36 {
			return 0, netip.Addr{}, errProxyHeader
		}
		src = netip.AddrFrom16([16]byte(body[:16])).Unmap()
	case 0x0, 0x3: // AF_UNSPEC, AF_UNIX: no client IP
	default:
		return 0, netip.Addr{}, errProxyHeader
	}
	if fam&0xf > 2 {
		return 0, netip.Addr{}, errProxyHeader
	}
	if verCmd&0xf == 0 { // LOCAL: the proxy's own connection
		src = netip.Addr{}
	}
	return n, src, nil
}
