package relay

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// Frame parse errors; each closes the connection with 1002.
var (
	errNeedMore    = errors.New("need more bytes")
	errLengthMSB   = errors.New("frame length has its most significant bit set")
	errReserved    = errors.New("reserved bits set")
	errUnmasked    = errors.New("client frame not masked")
	errOpcode      = errors.New("unknown opcode")
	errControl     = errors.New("control frame fragmented or over 125 bytes")
	errFragment    = errors.New("continuation without a fragmented message")
	errInterleaved = errors.New("new message inside a fragmented one")
	errCloseBody   = errors.New("close frame with a one-byte body")
)

// parseHeader reads one client frame header from the start of b without
// blocking: errNeedMore if b holds only part of it. It returns the header
// and its size. (ws.ReadHeader needs an io.Reader that it may block on.)
func parseHeader(b []byte) (ws.Header, int, error) {
	var h ws.Header
	if len(b) < 2 {
		return h, 0, errNeedMore
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, errNeedMore
		}
		h.Length, n = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, 0, errNeedMore
		}
		if b[2]&0x80 != 0 {
			return h, 0, errLengthMSB
		}
		h.Length, n = int64(binary.BigEndian.Uint64(b[2:])), 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, errNeedMore
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// checkHeader applies RFC 6455's rules to a client frame header.
func checkHeader(h ws.Header) error {
	switch {
	case h.Rsv != 0:
		return errReserved
	case !h.Masked:
		return errUnmasked
	case h.OpCode.IsControl():
		if !h.Fin || h.Length > 125 {
			return errControl
		}
		if h.OpCode != ws.OpClose && h.OpCode != ws.OpPing && h.OpCode != ws.OpPong {
			return errOpcode
		}
	case h.OpCode != ws.OpContinuation && h.OpCode != ws.OpText && h.OpCode != ws.OpBinary:
		return errOpcode
	}
	return nil
}

// frames handles every whole frame at the head of buf and returns how many
// bytes it used. Payloads are unmasked in place, inside gnet's buffer.
func (s *session) frames(buf []byte) int {
	used := 0
	maxFrame := int64(s.srv.cfg.MaxFrame)
	for s.state == stateOpen {
		h, hn, err := parseHeader(buf[used:])
		if err == errNeedMore {
			break
		}
		if err == nil {
			err = checkHeader(h)
		}
		if err != nil {
			s.close(proto.CloseProtocol, err.Error())
			break
		}
		if h.Length > maxFrame {
			s.close(proto.CloseTooBig, "frame larger than max_frame")
			break
		}
		end := used + hn + int(h.Length)
		if end > len(buf) {
			break
		}
		payload := buf[used+hn : end]
		ws.Cipher(payload, h.Mask, 0)
		used = end
		s.frame(h, payload)
	}
	return used
}

// frame handles one whole, unmasked frame.
func (s *session) frame(h ws.Header, payload []byte) {
	switch h.OpCode {
	case ws.OpPing:
		s.write(proto.AppendFrame(s.loop.scratch[:0], ws.OpPong, payload))
	case ws.OpPong:
	case ws.OpClose:
		s.peerClosed(payload)
	case ws.OpContinuation:
		if s.fragOp == 0 {
			s.close(proto.CloseProtocol, errFragment.Error())
			return
		}
		if len(s.frag)+len(payload) > s.srv.cfg.MaxFrame {
			s.close(proto.CloseTooBig, "message larger than max_frame")
			return
		}
		s.frag = append(s.frag, payload...)
		if h.Fin {
			op := s.fragOp
			s.fragOp = 0
			s.message(op, s.frag)
			s.frag = s.frag[:0]
			if cap(s.frag) > 4<<10 {
				s.frag = nil // idle connections keep no large buffer
			}
		}
	default: // text or binary
		switch {
		case s.fragOp != 0:
			s.close(proto.CloseProtocol, errInterleaved.Error())
		case !h.Fin:
			s.fragOp = byte(h.OpCode)
			s.frag = append(s.frag[:0], payload...)
		default:
			s.message(byte(h.OpCode), payload)
		}
	}
}

// peerClosed answers the peer's close frame and ends the session.
func (s *session) peerClosed(body []byte) {
	switch {
	case len(body) == 1:
		s.close(proto.CloseProtocol, errCloseBody.Error())
	case len(body) >= 2 && !wireCloseCode(binary.BigEndian.Uint16(body)):
		s.close(proto.CloseProtocol, "close code not allowed on the wire")
	case len(body) > 2 && !utf8.Valid(body[2:]):
		s.close(proto.CloseInvalidData, "close reason is not valid UTF-8")
	default:
		s.close(proto.CloseNormal, "")
	}
}

// message decodes one whole message (a frame, or fragments reassembled) and
// runs it.
func (s *session) message(op byte, data []byte) {
	s.srv.metrics.framesIn.Inc()
	if ws.OpCode(op) == ws.OpText && !utf8.Valid(data) {
		s.close(proto.CloseInvalidData, "text frame is not valid UTF-8")
		return
	}
	cmd := &s.loop.cmd
	err := s.loop.dec.Decode(s.format, data, cmd)
	var fe *proto.FieldError
	switch {
	case errors.As(err, &fe):
		s.fail(cmd.Ref, proto.CodeBadRequest, fe.Error(), cmd.Room)
	case err != nil:
		s.close(proto.CloseInvalidData, "frame does not decode: "+err.Error())
	default:
		s.command(cmd)
	}
}

// wireCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4 and the IANA registry): 1000-1003, 1007-1014 and
// 3000-4999. 1004-1006 and 1015 are reserved, the rest unassigned.
func wireCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
