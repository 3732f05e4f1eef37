package proto

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// This file is the one msgpack walker of the project: SkipValues checks
// and steps over values (the relay's Decoder checks every client frame
// with it before the msgpack library sees it), and Scanner reads server
// frames in place for the bench tool and the Go client. Neither allocates.
// The appenders build client frames without allocating.

// MaxDepth bounds the nesting SkipValues accepts: a value inside MaxDepth
// containers is fine, one more level is malformed.
const MaxDepth = 16

// SkipValues returns the offset after n msgpack values starting at b[i],
// or -1 if they are malformed (an unknown code), run past the end of b, or
// nest deeper than MaxDepth. It does not recurse: containers push their item
// counts on a fixed stack.
func SkipValues(b []byte, i, n int) int {
	var left [MaxDepth + 1]int // values still to walk at each depth
	d := 0
	left[0] = n
	for {
		for d > 0 && left[d] == 0 {
			d--
		}
		if left[d] == 0 {
			return i
		}
		left[d]--
		if i >= len(b) || i < 0 {
			return -1
		}
		next, items := valueHead(b, i)
		if next < 0 || next > len(b) {
			return -1
		}
		i = next
		if items == 0 {
			continue
		}
		if d == MaxDepth || items > len(b)-i { // every value takes at least one byte
			return -1
		}
		d++
		left[d] = items
	}
}

// valueHead steps over the head of the value at b[i]: it returns the offset
// after the head (and after the data, for scalars and strings), and how many
// values a container announces; next is -1 for an unknown code or a head
// cut short. next may lie past len(b) for a truncated scalar.
func valueHead(b []byte, i int) (next, items int) {
	c := b[i]
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return i + 1, 0
	case c >= 0xa0 && c <= 0xbf:
		return i + 1 + int(c&0x1f), 0
	case c >= 0x80 && c <= 0x8f:
		return i + 1, 2 * int(c&0x0f)
	case c >= 0x90 && c <= 0x9f:
		return i + 1, int(c & 0x0f)
	}
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
	if w > len(b)-i-1 {
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

// Scanner walks msgpack bytes in place. A malformed or truncated value
// makes it bad; every later call then returns zero values. Byte slices it
// returns alias the scanned bytes. One goroutine at a time; the zero value
// is ready for Reset.
type Scanner struct {
	b   []byte
	i   int
	bad bool
}

// Reset starts scanning b from its first byte.
func (s *Scanner) Reset(b []byte) { s.b, s.i, s.bad = b, 0, false }

// Pos is the offset of the next value; SetPos moves there.
func (s *Scanner) Pos() int { return s.i }

// SetPos moves to offset i of the scanned bytes.
func (s *Scanner) SetPos(i int) {
	if i < 0 || i > len(s.b) {
		s.bad = true
		return
	}
	s.i = i
}

// Bad reports whether a value was malformed or truncated.
func (s *Scanner) Bad() bool { return s.bad }

// Fail marks the scan bad (a value of the wrong kind for the caller).
func (s *Scanner) Fail() { s.bad = true }

func (s *Scanner) byte() byte {
	if s.bad || s.i >= len(s.b) {
		s.bad = true
		return 0
	}
	c := s.b[s.i]
	s.i++
	return c
}

// be reads an n-byte big-endian unsigned integer.
func (s *Scanner) be(n int) uint64 {
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

// Nil steps over a nil and reports whether the next value was one.
func (s *Scanner) Nil() bool {
	if !s.bad && s.i < len(s.b) && s.b[s.i] == 0xc0 {
		s.i++
		return true
	}
	return false
}

// MapLen reads a map header and returns its number of pairs.
func (s *Scanner) MapLen() int {
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

// ArrayLen reads an array header.
func (s *Scanner) ArrayLen() int {
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

// Str reads a string and returns it as a slice of the scanned bytes.
func (s *Scanner) Str() []byte {
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

// Text reads a string that must be valid UTF-8.
func (s *Scanner) Text() []byte {
	b := s.Str()
	if !s.bad && !utf8.Valid(b) {
		s.bad = true
	}
	return b
}

// Uint reads a non-negative integer of any msgpack integer encoding.
func (s *Scanner) Uint() uint64 {
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

// Bool reads true or false.
func (s *Scanner) Bool() bool {
	switch s.byte() {
	case 0xc3:
		return true
	case 0xc2:
		return false
	}
	s.bad = true
	return false
}

// Skip steps over one value of any type.
func (s *Scanner) Skip() { s.SkipN(1) }

// SkipN steps over n values.
func (s *Scanner) SkipN(n int) {
	if s.bad {
		return
	}
	if s.i = SkipValues(s.b, s.i, n); s.i < 0 {
		s.bad = true
	}
}

// AppendMapHeader appends the header of a map of n pairs.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n < 65536:
		return append(b, 0xde, byte(n>>8), byte(n))
	}
	return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendString appends s as a msgpack string.
func AppendString(b []byte, s string) []byte {
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

// AppendUint appends v in the shortest msgpack integer encoding.
func AppendUint(b []byte, v uint64) []byte {
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
