package proto

import (
	"compress/flate"
	"errors"
	"io"

	"github.com/gobwas/ws"
)

// This file is permessage-deflate (RFC 7692) with no context takeover in
// either direction: every message is compressed on its own, so one
// compressed frame can go to any number of connections, and inflating a
// client's message needs no state kept between messages.

// DeflateLevel is the compress/flate level of server frames. Level 1 is the
// fastest; chat text gains little from higher levels (see BENCHMARKS.md).
const DeflateLevel = flate.BestSpeed

// MinDeflate is the smallest payload worth compressing: below it a frame
// goes as it is (RSV1 clear), as RFC 7692 allows for any message.
const MinDeflate = 64

// deflateTail is what a sync flush ends with; RFC 7692 section 7.2.1 drops
// it from the frame, and the receiver appends it again.
const deflateTail = "\x00\x00\xff\xff"

// ErrInflateTooLarge reports a compressed message that inflates past the
// cap (close 1009, like a frame over max_frame).
var ErrInflateTooLarge = errors.New("inflated message larger than max_frame")

// ErrInflate reports a compressed message that does not inflate.
var ErrInflate = errors.New("compressed message does not inflate")

// Deflater compresses whole server frames. It keeps its buffers: steady
// use allocates nothing. One goroutine at a time.
type Deflater struct {
	fw  *flate.Writer
	out sink
}

type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// NewDeflater returns a Deflater (about 1 MB of compress/flate state: pool
// it).
func NewDeflater() *Deflater {
	d := &Deflater{}
	d.fw, _ = flate.NewWriter(&d.out, DeflateLevel) // the level is valid
	return d
}

// AppendFrame appends to dst the compressed form of frame, a whole
// unmasked, final server data frame as the Encoder builds it: the same
// opcode, RSV1 set, the payload deflated without context. A frame that
// would not shrink, a control frame, a frame shorter than MinDeflate or
// bytes that are not one whole frame are appended as they are.
func (d *Deflater) AppendFrame(dst, frame []byte) []byte {
	h, hn, err := ParseHeader(frame)
	if err != nil || h.Masked || h.Rsv != 0 || !h.Fin || h.OpCode.IsControl() || h.OpCode == ws.OpContinuation ||
		int64(len(frame)-hn) != h.Length || h.Length < MinDeflate {
		return append(dst, frame...)
	}
	z := d.Deflate(frame[hn:])
	if len(z) >= len(frame)-hn {
		return append(dst, frame...)
	}
	n := len(dst)
	hs := HeaderSize(len(z))
	dst = append(dst, frame[:hs]...) // room for the header; overwritten
	PutHeader(dst[n:n+hs], h.OpCode, len(z))
	dst[n] |= 0x40 // RSV1: compressed
	return append(dst, z...)
}

// Deflate compresses payload as one message without context and returns
// the bytes a frame carries (valid until the next call).
func (d *Deflater) Deflate(payload []byte) []byte {
	d.out.b = d.out.b[:0]
	d.fw.Reset(&d.out)
	_, _ = d.fw.Write(payload) // writes to a slice never fail
	_ = d.fw.Flush()
	b := d.out.b
	if len(b) >= len(deflateTail) && string(b[len(b)-len(deflateTail):]) == deflateTail {
		b = b[:len(b)-len(deflateTail)]
	}
	return b
}

// CheckClientHeaderDeflate is CheckClientHeader for a connection that
// negotiated permessage-deflate: RSV1 may mark the first frame of a text or
// binary message, which is then compressed (z). RSV1 on a control frame or
// a continuation, RSV2 or RSV3 are ErrReserved.
func CheckClientHeaderDeflate(h ws.Header) (z bool, err error) {
	if h.Rsv == rsv1 && (h.OpCode == ws.OpText || h.OpCode == ws.OpBinary) {
		h.Rsv = 0
		return true, checkHeader(h, true)
	}
	return false, checkHeader(h, true)
}

// rsv1 is ws.Header.Rsv with RSV1 alone set.
const rsv1 = 0x4

// Inflater inflates compressed client messages with a size cap. It keeps
// its buffers. One goroutine at a time.
type Inflater struct {
	fr  io.ReadCloser
	src source
	out []byte
}

// NewInflater returns an Inflater.
func NewInflater() *Inflater {
	i := &Inflater{}
	i.fr = flate.NewReader(&i.src)
	return i
}

// inflateEnd follows a message: the tail the sender dropped, then an empty
// final block, so the stream ends cleanly whether or not the sender ended
// it (flate ignores what follows a final block).
const inflateEnd = deflateTail + "\x01\x00\x00\xff\xff"

// Inflate returns the message that payload (one message's data, RSV1 set
// on its first frame) inflates to, valid until the next call: at most max
// bytes, else ErrInflateTooLarge after inflating max+1 bytes at most;
// ErrInflate if it is not a deflate stream.
func (i *Inflater) Inflate(payload []byte, max int) ([]byte, error) {
	i.src = source{a: payload, b: inflateEnd}
	if err := i.fr.(flate.Resetter).Reset(&i.src, nil); err != nil {
		return nil, ErrInflate
	}
	out := i.out[:0]
	for {
		if len(out) == cap(out) {
			if len(out) > max {
				i.out = out[:0]
				return nil, ErrInflateTooLarge
			}
			out = append(out, 0)[:len(out)] // grow
		}
		room := out[len(out):min(cap(out), max+1)]
		n, err := i.fr.Read(room)
		out = out[:len(out)+n]
		if len(out) > max {
			i.out = out[:0]
			return nil, ErrInflateTooLarge
		}
		if err == io.EOF {
			i.out = out[:0]
			return out, nil
		}
		if err != nil {
			i.out = out[:0]
			return nil, ErrInflate
		}
	}
}

// Shrink lets go of a large output buffer (an idle loop keeps no big one).
func (i *Inflater) Shrink(keep int) {
	if cap(i.out) > keep {
		i.out = nil
	}
}

// source reads a, then b: one message and the end inflateEnd adds, without
// copying either. It is an io.ByteReader, so flate reads it unbuffered.
type source struct {
	a []byte
	b string
}

func (s *source) Read(p []byte) (int, error) {
	if len(s.a) > 0 {
		n := copy(p, s.a)
		s.a = s.a[n:]
		return n, nil
	}
	if len(s.b) > 0 {
		n := copy(p, s.b)
		s.b = s.b[n:]
		return n, nil
	}
	return 0, io.EOF
}

func (s *source) ReadByte() (byte, error) {
	if len(s.a) > 0 {
		c := s.a[0]
		s.a = s.a[1:]
		return c, nil
	}
	if len(s.b) > 0 {
		c := s.b[0]
		s.b = s.b[1:]
		return c, nil
	}
	return 0, io.EOF
}
