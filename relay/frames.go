package relay

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// Session-level frame errors; each closes the connection with 1002. Header
// errors are proto's (proto.ParseHeader, proto.CheckClientHeader).
var (
	errFragment    = errors.New("continuation without a fragmented message")
	errInterleaved = errors.New("new message inside a fragmented one")
	errCloseBody   = errors.New("close frame with a one-byte body")
)

// frames handles every whole frame at the head of buf and returns how many
// bytes it used. Payloads are unmasked in place, inside gnet's buffer.
func (s *session) frames(buf []byte) int {
	used := 0
	maxFrame := int64(s.srv().cfg.MaxFrame)
	for s.state == stateOpen {
		h, hn, err := proto.ParseHeader(buf[used:])
		if err == proto.ErrNeedMore {
			break
		}
		z := false
		if err == nil {
			z, err = s.checkHeader(h)
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
		s.frame(h, payload, z)
	}
	return used
}

// checkHeader applies RFC 6455's rules to a client frame header, and RFC
// 7692's if the session negotiated permessage-deflate: RSV1 marks the first
// frame of a compressed message (z). RSV1 anywhere else, or without the
// extension, is a protocol error (1002).
func (s *session) checkHeader(h ws.Header) (z bool, err error) {
	if s.compressed {
		return proto.CheckClientHeaderDeflate(h)
	}
	return false, proto.CheckClientHeader(h)
}

// frame handles one whole, unmasked frame; z: its message is compressed.
func (s *session) frame(h ws.Header, payload []byte, z bool) {
	switch h.OpCode {
	case ws.OpPing:
		s.write(proto.AppendFrame(s.loop.scratch[:0], ws.OpPong, payload))
	case ws.OpPong:
	case ws.OpClose:
		s.peerClosed(payload)
	case ws.OpContinuation:
		c := s.cold
		if c == nil || c.fragOp == 0 {
			s.close(proto.CloseProtocol, errFragment.Error())
			return
		}
		if len(c.frag)+len(payload) > s.srv().cfg.MaxFrame {
			s.close(proto.CloseTooBig, "message larger than max_frame")
			return
		}
		c.frag = append(c.frag, payload...)
		if h.Fin {
			op := c.fragOp
			c.fragOp = 0
			s.data(op, c.frag, c.fragZ)
			c.frag = c.frag[:0]
			if cap(c.frag) > 4<<10 {
				c.frag = nil // idle connections keep no large buffer
			}
		}
	default: // text or binary
		switch {
		case s.cold != nil && s.cold.fragOp != 0:
			s.close(proto.CloseProtocol, errInterleaved.Error())
		case !h.Fin:
			c := s.coldPart()
			c.fragOp, c.fragZ = byte(h.OpCode), z
			c.frag = append(c.frag[:0], payload...)
		default:
			s.data(byte(h.OpCode), payload, z)
		}
	}
}

// data handles one whole message, inflating it first if it is compressed:
// to at most max_frame bytes (past that 1009, the inflating stops there);
// a message that does not inflate is 1007.
func (s *session) data(op byte, data []byte, z bool) {
	if !z {
		s.message(op, data)
		return
	}
	l := s.loop
	if l.infl == nil {
		l.infl = proto.NewInflater()
	}
	b, err := l.infl.Inflate(data, s.srv().cfg.MaxFrame)
	switch {
	case err == proto.ErrInflateTooLarge:
		s.close(proto.CloseTooBig, "inflated message larger than max_frame")
	case err != nil:
		s.close(proto.CloseInvalidData, err.Error())
	default:
		s.message(op, b)
	}
	l.infl.Shrink(inflateKeep)
}

// inflateKeep is the inflate buffer a loop keeps between messages.
const inflateKeep = 16 << 10

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
	s.srv().metrics.framesIn.Inc()
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
