package bench

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// This file holds the few msgpack pieces the clients need without
// allocating: appenders for the client frames (join, send) and a scanner
// that walks a server frame in place.

func appendMap(b []byte, n int) []byte {
	if n < 16 {
		return append(b, 0x80|byte(n))
	}
	return append(b, 0xde, byte(n>>8), byte(n))
}

func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n < 65536:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v < 256:
		return append(b, 0xcc, byte(v))
	case v < 65536:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	b = append(b, 0xcf)
	return binary.BigEndian.AppendUint64(b, v)
}

// appendClientFrame appends one final, masked client frame carrying payload.
func appendClientFrame(dst []byte, op ws.OpCode, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x80|byte(op))
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 65536:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// scanner walks msgpack bytes in place. A malformed or truncated value sets
// bad; every later call then returns zero values. One goroutine.
type scanner struct {
	b   []byte
	i   int
	bad bool
}

func (s *scanner) reset(b []byte) { s.b, s.i, s.bad = b, 0, false }

func (s *scanner) byte() byte {
	if s.bad || s.i >= len(s.b) {
		s.bad = true
		return 0
	}
	c := s.b[s.i]
	s.i++
	return c
}

// be reads an n-byte big-endian unsigned integer.
func (s *scanner) be(n int) uint64 {
	if s.bad || n > len(s.b)-s.i {
		s.bad = true
		return 0
	}
	var v uint64
	for _, x := range s.b[s.i : s.i+n] {
		v = v<<8 | uint64(x)
	}
	s.i += n
	return v
}

// mapLen reads a map header; arrayLen an array header.
func (s *scanner) mapLen() int {
	c := s.byte()
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f)
	case c == 0xde:
		return int(s.be(2))
	case c == 0xdf:
		return int(s.be(4))
	}
	s.bad = true
	return 0
}

func (s *scanner) arrayLen() int {
	c := s.byte()
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(s.be(2))
	case c == 0xdd:
		return int(s.be(4))
	}
	s.bad = true
	return 0
}

// str reads a string and returns it as a slice of the scanned bytes.
func (s *scanner) str() []byte {
	c := s.byte()
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xd9:
		n = int(s.be(1))
	case c == 0xda:
		n = int(s.be(2))
	case c == 0xdb:
		n = int(s.be(4))
	default:
		s.bad = true
		return nil
	}
	if s.bad || n > len(s.b)-s.i {
		s.bad = true
		return nil
	}
	v := s.b[s.i : s.i+n]
	s.i += n
	return v
}

// uint reads a non-negative integer of any msgpack integer encoding.
func (s *scanner) uint() uint64 {
	c := s.byte()
	switch {
	case c <= 0x7f:
		return uint64(c)
	case c >= 0xcc && c <= 0xcf:
		return s.be(1 << (c - 0xcc))
	case c >= 0xd0 && c <= 0xd3:
		v := s.be(1 << (c - 0xd0))
		if v>>(8<<(c-0xd0)-1)&1 == 1 { // negative
			s.bad = true
			return 0
		}
		return v
	}
	s.bad = true
	return 0
}

// boolean reads true or false.
func (s *scanner) boolean() bool {
	switch s.byte() {
	case 0xc3:
		return true
	case 0xc2:
		return false
	}
	s.bad = true
	return false
}

// skip steps over one value of any type.
func (s *scanner) skip() { s.skipN(1) }

// skipN steps over n values.
func (s *scanner) skipN(n int) {
	if s.bad {
		return
	}
	if s.i = skipValues(s.b, s.i, n); s.i < 0 {
		s.bad = true
	}
}

// skipValues returns the offset after n msgpack values starting at b[i],
// or -1 if they are malformed or run past the end. Containers add their
// items to the count, so there is no recursion: the hot path of counting
// batches.
func skipValues(b []byte, i, n int) int {
	for ; n > 0; n-- {
		if i >= len(b) {
			return -1
		}
		c := b[i]
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			i++
		case c >= 0xa0 && c <= 0xbf:
			i += 1 + int(c&0x1f)
		case c >= 0x80 && c <= 0x8f:
			i, n = i+1, n+2*int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			i, n = i+1, n+int(c&0x0f)
		default:
			var items int
			if i, items = skipCoded(b, i); i < 0 {
				return -1
			}
			n += items
		}
	}
	if i > len(b) {
		return -1
	}
	return i
}

// skipCoded steps over the head of a value whose type byte is not a fixed
// type: it returns the offset after the head (and the data, for scalars),
// and how many items a container head announces.
func skipCoded(b []byte, i int) (next, items int) {
	c := b[i]
	switch c {
	case 0xcc, 0xd0:
		return i + 2, 0
	case 0xcd, 0xd1:
		return i + 3, 0
	case 0xca, 0xce, 0xd2:
		return i + 5, 0
	case 0xcb, 0xcf, 0xd3:
		return i + 9, 0
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext: type, data
		return i + 2 + 1<<(c-0xd4), 0
	}
	var w int
	switch c {
	case 0xc4, 0xd9, 0xc7:
		w = 1
	case 0xc5, 0xda, 0xc8, 0xdc, 0xde:
		w = 2
	case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf:
		w = 4
	default:
		return -1, 0 // 0xc1 is never used
	}
	if i+1+w > len(b) {
		return -1, 0
	}
	n := 0
	for _, x := range b[i+1 : i+1+w] {
		n = n<<8 | int(x)
	}
	i += 1 + w
	switch c {
	case 0xdc, 0xdd:
		return i, n
	case 0xde, 0xdf:
		return i, 2 * n
	case 0xc7, 0xc8, 0xc9: // ext: type, data
		return i + 1 + n, 0
	}
	return i + n, 0
}

// frameInfo is what a client needs of one server frame. Byte slices alias
// the frame's payload.
type frameInfo struct {
	t, room, code []byte
	ref, seq      uint64
	gap           bool
	msgs          int // offset of the msgs (batch) or history (joined) array; -1 if absent
}

// parseFrame fills fi from a server frame's payload without decoding messages.
func (s *scanner) parseFrame(b []byte, fi *frameInfo) bool {
	*fi = frameInfo{msgs: -1}
	s.reset(b)
	n := s.mapLen()
	for k := 0; k < n && !s.bad; k++ {
		s.field(fi, k == n-1)
	}
	return !s.bad && len(fi.t) > 0
}

// field reads one key and its value. A message array that is the last
// value (as the relay writes batches) is left for seqs to walk, once.
func (s *scanner) field(fi *frameInfo, last bool) {
	key := s.str()
	switch string(key) { // the compiler does not allocate for this switch
	case "t":
		fi.t = s.str()
	case "room":
		fi.room = s.str()
	case "code":
		fi.code = s.str()
	case "ref":
		fi.ref = s.uint()
	case "seq":
		fi.seq = s.uint()
	case "gap":
		fi.gap = s.boolean()
	case "msgs", "history":
		fi.msgs = s.i
		if !last {
			s.skip()
		}
	default:
		s.skip()
	}
}

// seqs appends the seq of every message of the array at b[off:] to dst.
// The relay writes seq first in each message; after it, the rest of the
// message is skipped in one go.
func (s *scanner) seqs(b []byte, off int, dst []uint64) ([]uint64, bool) {
	s.reset(b)
	s.i = off
	n := s.arrayLen()
	for k := 0; k < n && !s.bad; k++ {
		fields := s.mapLen()
		for f := 0; f < fields && !s.bad; f++ {
			if string(s.str()) != "seq" {
				s.skip()
				continue
			}
			dst = append(dst, s.uint())
			s.skipN(2 * (fields - f - 1))
			break
		}
	}
	return dst, !s.bad
}

// message is one decoded message of a batch. Byte slices alias the frame.
type message struct {
	seq        uint64
	ts         uint64
	from, name []byte
	body       []byte
	badges     int    // how many
	sent       []byte // meta[bench_ts]
}

// message decodes one message in full: every field is read and checked
// for its type, strings for UTF-8; unknown fields are skipped.
func (s *scanner) message(m *message) bool {
	*m = message{}
	n := s.mapLen()
	for f := 0; f < n && !s.bad; f++ {
		switch string(s.str()) {
		case "seq":
			m.seq = s.uint()
		case "ts":
			m.ts = s.uint()
		case "from":
			m.from = s.text()
		case "name":
			m.name = s.text()
		case "body":
			m.body = s.text()
		case "badges":
			m.badges = s.arrayLen()
			for i := 0; i < m.badges && !s.bad; i++ {
				s.text()
			}
		case "meta":
			s.meta(m)
		default:
			s.skip()
		}
	}
	return !s.bad
}

// text reads a string that must be valid UTF-8.
func (s *scanner) text() []byte {
	b := s.str()
	if !s.bad && !utf8.Valid(b) {
		s.bad = true
	}
	return b
}

func (s *scanner) meta(m *message) {
	if !s.bad && s.i < len(s.b) && s.b[s.i] == 0xc0 { // nil
		s.i++
		return
	}
	n := s.mapLen()
	for i := 0; i < n && !s.bad; i++ {
		k, v := s.text(), s.text()
		if string(k) == metaTS {
			m.sent = v
		}
	}
}
