package bench

import (
	"github.com/roomcast/roomcast/relay/proto"
)

// The client frames are built with proto's appenders (proto.AppendString,
// ...) and server frames read in place with proto.Scanner, the project's
// one msgpack walker; this file holds what the bench reads of them.

// scanner is proto.Scanner with the bench's readers of server frames. One
// goroutine.
type scanner struct{ proto.Scanner }

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
	s.Reset(b)
	n := s.MapLen()
	for k := 0; k < n && !s.Bad(); k++ {
		s.field(fi, k == n-1)
	}
	return !s.Bad() && len(fi.t) > 0
}

// field reads one key and its value. A message array that is the last
// value (as the relay writes batches) is left for seqs to walk, once.
func (s *scanner) field(fi *frameInfo, last bool) {
	key := s.Str()
	switch string(key) { // the compiler does not allocate for this switch
	case "t":
		fi.t = s.Str()
	case "room":
		fi.room = s.Str()
	case "code":
		fi.code = s.Str()
	case "ref":
		fi.ref = s.Uint()
	case "seq":
		fi.seq = s.Uint()
	case "gap":
		fi.gap = s.Bool()
	case "msgs", "history":
		fi.msgs = s.Pos()
		if !last {
			s.Skip()
		}
	default:
		s.Skip()
	}
}

// seqs appends the seq of every message of the array at b[off:] to dst.
// The relay writes seq first in each message; after it, the rest of the
// message is skipped in one go.
func (s *scanner) seqs(b []byte, off int, dst []uint64) ([]uint64, bool) {
	s.Reset(b)
	s.SetPos(off)
	n := s.ArrayLen()
	for k := 0; k < n && !s.Bad(); k++ {
		fields := s.MapLen()
		for f := 0; f < fields && !s.Bad(); f++ {
			if string(s.Str()) != "seq" {
				s.Skip()
				continue
			}
			dst = append(dst, s.Uint())
			s.SkipN(2 * (fields - f - 1))
			break
		}
	}
	return dst, !s.Bad()
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
	n := s.MapLen()
	for f := 0; f < n && !s.Bad(); f++ {
		switch string(s.Str()) {
		case "seq":
			m.seq = s.Uint()
		case "ts":
			m.ts = s.Uint()
		case "from":
			m.from = s.Text()
		case "name":
			m.name = s.Text()
		case "body":
			m.body = s.Text()
		case "badges":
			m.badges = s.ArrayLen()
			for i := 0; i < m.badges && !s.Bad(); i++ {
				s.Text()
			}
		case "meta":
			s.meta(m)
		default:
			s.Skip()
		}
	}
	return !s.Bad()
}

func (s *scanner) meta(m *message) {
	if s.Nil() {
		return
	}
	n := s.MapLen()
	for i := 0; i < n && !s.Bad(); i++ {
		k, v := s.Text(), s.Text()
		if string(k) == metaTS {
			m.sent = v
		}
	}
}
