package relay

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// TestClassify checks every row of the error table.
func TestClassify(t *testing.T) {
	f := func(err error, code proto.Code, status int, msg string, retry time.Duration) {
		t.Helper()
		c, st, m, r := classify(err)
		if c != code || st != status || m != msg || r != retry {
			t.Fatalf("classify(%v) = %q %d %q %v; want %q %d %q %v", err, c, st, m, r, code, status, msg, retry)
		}
	}
	f(nil, "", http.StatusOK, "", 0)
	f(shard.ErrRoomFull, proto.CodeRoomFull, 503, "room is full", 0)
	f(fmt.Errorf("join: %w", shard.ErrRoomFull), proto.CodeRoomFull, 503, "room is full", 0) // wrapped
	f(shard.ErrNoAnon, proto.CodeForbidden, 403, "this room is not open to anonymous viewers", 0)
	f(shard.ErrBanned, proto.CodeBanned, 403, "you are banned from this room", 0)
	f(&shard.SlowModeError{Retry: 1500 * time.Millisecond}, proto.CodeSlowMode, 429, "this room is in slow mode", 1500*time.Millisecond)
	f(&shard.MutedError{Retry: time.Minute}, proto.CodeMuted, 403, "you are timed out in this room", time.Minute)
	f(errTooLarge, proto.CodeTooLarge, 413, "message does not fit a frame", 0)
	f(shard.ErrTooLarge, proto.CodeTooLarge, 413, "message does not fit a frame", 0)
	f(fmt.Errorf("publish: %w", shard.ErrRoomLimit), proto.CodeUnavailable, 503, "this relay cannot hold more rooms", 0)
	f(&roomRateError{retry: 1500 * time.Millisecond}, proto.CodeRateLimited, 429, "creating rooms too fast from this address", 1500*time.Millisecond)
	f(newCodeError(proto.CodeBadRoom, "bad room name"), proto.CodeBadRoom, 400, "bad room name", 0)
	f(badMod("delete needs seq"), proto.CodeBadRequest, 400, "delete needs seq", 0)
	f(errors.New("some disk said no"), proto.CodeInternal, 500, "internal error", 0) // the text stays inside
	// Every protocol code has a status.
	for _, c := range proto.AllCodes {
		if _, ok := codeStatus[c]; !ok {
			t.Errorf("code %q has no HTTP status", c)
		}
	}
}

// TestRefusalTable: every refusal has a reason label, a status and a
// message, and every reason is a label of the failure metric.
func TestRefusalTable(t *testing.T) {
	labels := map[string]bool{}
	for _, r := range handshakeReasons {
		labels[r] = true
	}
	for r := refBadRequest; int(r) < len(refusals); r++ {
		if r.reason() == "" || r.status() < 400 || r.msg() == "" || !labels[r.reason()] {
			t.Errorf("refusal %d: %+v", r, refusals[r])
		}
	}
	if !labels["timeout"] {
		t.Error("the timeout reason (loop.go) is missing")
	}
}

// TestIPBucketsSwept: the rate buckets of quiet addresses are dropped by
// the sweep; those still refilling are kept.
func TestIPBucketsSwept(t *testing.T) {
	l, err := newIPLimits(&Config{IPConnRate: RateLimit{Rate: 1, Burst: 2}, IPMaxConns: 100, IPExempt: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if r := l.admit(ip, now); r != refNone {
			t.Fatalf("admit %v: %v", ip, r)
		}
		l.release(ip)
	}
	if left := l.sweep(now); left != 1000 {
		t.Fatalf("right away: %d buckets left, want 1000 (none full yet)", left)
	}
	if left := l.sweep(now.Add(500 * time.Millisecond)); left != 1000 {
		t.Fatalf("after 0.5s: %d left, want 1000", left)
	}
	if left := l.sweep(now.Add(time.Second)); left != 0 {
		t.Fatalf("after 1s (full again): %d left, want 0", left)
	}
	if len(l.open) != 0 {
		t.Fatalf("open counts left: %d", len(l.open))
	}
}

// TestParseProxyHeader checks the PROXY parser on whole, partial and bad
// headers.
func TestParseProxyHeader(t *testing.T) {
	f := func(in string, wantN int, wantSrc string, wantErr bool) {
		t.Helper()
		n, src, err := parseProxyHeader([]byte(in))
		var s string
		if src.IsValid() {
			s = src.String()
		}
		if n != wantN || s != wantSrc || (err != nil) != wantErr {
			t.Fatalf("parse(%q) = %d %q %v; want %d %q err=%v", in, n, s, err, wantN, wantSrc, wantErr)
		}
	}
	v1 := "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"
	f(v1+"GET", len(v1), "192.0.2.1", false)
	for i := 0; i < len(v1); i++ {
		f(v1[:i], 0, "", false) // need more
	}
	f("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", 36, "2001:db8::1", false)
	f("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 1\r\n", 37, "192.0.2.1", false)
	f("PROXY UNKNOWN whatever\r\n", 24, "", false)
	f("PROXY TCP4 2001:db8::1 ::1 1 1\r\n", 0, "", true)      // family mismatch
	f("PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", 0, "", true) // leading zero
	f("PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n", 0, "", true)
	f("PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", 0, "", true)
	f("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n", 0, "", true)
	f("PROXY "+string(make([]byte, 200)), 0, "", true) // no CRLF within 107 bytes
	f("GET / HTTP/1.1\r\n", 0, "", true)
	v2 := proxyV2Header(0x21, 0x11, []byte{192, 0, 2, 9, 10, 0, 0, 1, 0, 1, 0, 2})
	f(v2+"GET", len(v2), "192.0.2.9", false)
	for i := 0; i < len(v2); i++ {
		f(v2[:i], 0, "", false)
	}
	f(proxyV2Header(0x20, 0x11, []byte{192, 0, 2, 9, 10, 0, 0, 1, 0, 1, 0, 2}), 28, "", false) // LOCAL
	f(proxyV2Header(0x20, 0x00, nil), 16, "", false)
	f(proxyV2Header(0x31, 0x11, make([]byte, 12)), 0, "", true)   // version 3
	f(proxyV2Header(0x22, 0x11, make([]byte, 12)), 0, "", true)   // command 2
	f(proxyV2Header(0x21, 0x11, make([]byte, 8)), 0, "", true)    // short addresses
	f(proxyV2Header(0x21, 0x21, make([]byte, 12)), 0, "", true)   // short IPv6
	f(proxyV2Header(0x21, 0x41, make([]byte, 12)), 0, "", true)   // family 4
	f(proxyV2Header(0x21, 0x13, make([]byte, 12)), 0, "", true)   // transport 3
	f(proxyV2Header(0x21, 0x11, make([]byte, 2000)), 0, "", true) // too long
}

func proxyV2Header(verCmd, fam byte, body []byte) string {
	h := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), verCmd, fam, byte(len(body)>>8), byte(len(body)))
	return string(append(h, body...))
}

// FuzzProxyHeader: the parser never panics, never uses more bytes than it
// has, and gives the same answer however the bytes arrive.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET"), 5)
	f.Add([]byte(proxyV2Header(0x21, 0x11, []byte{192, 0, 2, 9, 10, 0, 0, 1, 0, 1, 0, 2})), 13)
	f.Add([]byte(proxyV2Header(0x21, 0x21, make([]byte, 40))), 20)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		n, src, err := parseProxyHeader(b)
		if n < 0 || n > len(b) || (err != nil && n != 0) {
			t.Fatalf("n=%d len=%d err=%v", n, len(b), err)
		}
		if cut < 0 || cut > len(b) {
			return
		}
		pn, _, perr := parseProxyHeader(b[:cut])
		switch {
		case perr != nil && err == nil:
			t.Fatalf("prefix %d refused (%v) but the whole passes", cut, perr)
		case pn != 0 && (pn != n || err != nil):
			t.Fatalf("prefix %d used %d, whole %d (%v)", cut, pn, n, err)
		}
		_ = src
	})
}
