package proto

import (
	"bufio"
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"
)

// This file is WebSocket framing (RFC 6455 section 5) in both directions,
// beyond the server frames the Encoder builds: headers parsed from bytes
// without blocking (the relay reads client frames from gnet's buffer, the
// bench tool and the Go client read server frames), and masked client
// frames.

// Header parse and check errors. The relay closes the connection with 1002
// on every one but ErrNeedMore.
var (
	ErrNeedMore  = errors.New("need more bytes")
	ErrLengthMSB = errors.New("frame length has its most significant bit set")
	ErrReserved  = errors.New("reserved bits set")
	ErrUnmasked  = errors.New("client frame not masked")
	ErrMasked    = errors.New("server frame masked")
	ErrOpcode    = errors.New("unknown opcode")
	ErrControl   = errors.New("control frame fragmented or over 125 bytes")
)

// MaxHeaderSize is the largest frame header: 2 bytes, a 64-bit length and
// a mask.
const MaxHeaderSize = 14

// ParseHeader reads one frame header from the start of b without blocking:
// ErrNeedMore if b holds only part of it. It returns the header and its
// size. (ws.ReadHeader needs an io.Reader that it may block on.)
func ParseHeader(b []byte) (ws.Header, int, error) {
	var h ws.Header
	if len(b) < 2 {
		return h, 0, ErrNeedMore
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, ErrNeedMore
		}
		h.Length, n = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, 0, ErrNeedMore
		}
		if b[2]&0x80 != 0 {
			return h, 0, ErrLengthMSB
		}
		h.Length, n = int64(binary.BigEndian.Uint64(b[2:])), 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, ErrNeedMore
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// CheckClientHeader applies RFC 6455's rules to a client frame header (as
// the relay receives it): masked, no reserved bits, a known opcode, control
// frames final and short.
func CheckClientHeader(h ws.Header) error {
	return checkHeader(h, true)
}

// CheckServerHeader applies the same rules to a server frame header (as a
// client receives it): unmasked instead of masked. Clients of this package
// never offer compression, so reserved bits are errors too.
func CheckServerHeader(h ws.Header) error {
	return checkHeader(h, false)
}

func checkHeader(h ws.Header, masked bool) error {
	switch {
	case h.Rsv != 0:
		return ErrReserved
	case h.Masked != masked:
		if masked {
			return ErrUnmasked
		}
		return ErrMasked
	case h.OpCode.IsControl():
		if !h.Fin || h.Length > 125 {
			return ErrControl
		}
		if h.OpCode != ws.OpClose && h.OpCode != ws.OpPing && h.OpCode != ws.OpPong {
			return ErrOpcode
		}
	case h.OpCode != ws.OpContinuation && h.OpCode != ws.OpText && h.OpCode != ws.OpBinary:
		return ErrOpcode
	}
	return nil
}

// ReadHeader reads one frame header from br, blocking until it is whole.
func ReadHeader(br *bufio.Reader) (ws.Header, error) {
	b, err := br.Peek(2)
	if err != nil {
		return ws.Header{}, err
	}
	if b, err = br.Peek(headerSize(b)); err != nil {
		return ws.Header{}, err
	}
	h, n, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	_, err = br.Discard(n)
	return h, err
}

// headerSize is the whole size of the header whose first two bytes are b.
func headerSize(b []byte) int {
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// AppendClientFrame appends one final, masked client frame carrying
// payload to dst.
func AppendClientFrame(dst []byte, op ws.OpCode, payload []byte, mask [4]byte) []byte {
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
