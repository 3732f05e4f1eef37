package proto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"
)

// maxHeader is the largest header of an unmasked server frame.
const maxHeader = 10

// Encoder builds complete server WebSocket frames (header and payload). The
// returned bytes live in the Encoder's buffer and are valid until its next
// call; callers copy or write them at once. One goroutine at a time.
type Encoder struct {
	buf []byte
	mp  *msgpack.Encoder
	js  *json.Encoder
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	e := &Encoder{buf: make([]byte, 0, 4096)}
	w := (*appender)(e)
	e.mp = msgpack.NewEncoder(w)
	e.mp.UseCompactInts(true)
	e.js = json.NewEncoder(w)
	e.js.SetEscapeHTML(false)
	return e
}

// appender lets the library encoders append to Encoder.buf.
type appender Encoder

func (a *appender) Write(p []byte) (int, error) {
	a.buf = append(a.buf, p...)
	return len(p), nil
}

func (a *appender) WriteByte(c byte) error {
	a.buf = append(a.buf, c)
	return nil
}

func (a *appender) WriteString(s string) (int, error) {
	a.buf = append(a.buf, s...)
	return len(s), nil
}

// Frame encodes v (one of this package's frame structs) in format f and
// returns the whole WebSocket frame.
func (e *Encoder) Frame(f Format, v any) ([]byte, error) {
	if f == SSE {
		return e.event(eventName(v), v)
	}
	e.buf = e.buf[:maxHeader]
	if err := e.value(f, v); err != nil {
		return nil, err
	}
	return e.finish(f), nil
}

// Payload encodes v in format f without a frame header (messages kept in
// history, then spliced into batch and joined frames).
func (e *Encoder) Payload(f Format, v any) ([]byte, error) {
	if m, ok := v.(*Message); ok && f == SSE {
		return e.message("", m)
	}
	e.buf = e.buf[:0]
	if err := e.value(f, v); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// MessagePayload encodes a message of a room whose history is named epoch
// in format f, without a frame header. Only SSE carries the epoch: the
// event id is "<epoch>:<seq>" (the bare seq when epoch is "").
func (e *Encoder) MessagePayload(f Format, epoch string, m *Message) ([]byte, error) {
	if f == SSE {
		return e.message(epoch, m)
	}
	return e.Payload(f, m)
}

// Transcode re-encodes a message kept as its msgpack payload (as
// MessagePayload made it) in format f. The msgpack payload itself is
// returned as is. Transcoding decodes the message, so it allocates: it is
// for join history, not for fan-out.
func (e *Encoder) Transcode(f Format, epoch string, payload []byte) ([]byte, error) {
	if f == Msgpack {
		return payload, nil
	}
	var m Message
	if err := msgpack.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("cannot decode kept message: %w", err)
	}
	return e.MessagePayload(f, epoch, &m)
}

func (e *Encoder) value(f Format, v any) error {
	if f != Msgpack {
		if err := e.js.Encode(v); err != nil {
			return fmt.Errorf("cannot encode %T as JSON: %w", v, err)
		}
		e.buf = e.buf[:len(e.buf)-1] // json.Encoder ends every value with '\n'
		return nil
	}
	if err := e.mp.Encode(v); err != nil {
		return fmt.Errorf("cannot encode %T as msgpack: %w", v, err)
	}
	return nil
}

// Batch returns the whole frame of {t:"batch", room, msgs}, where msgs are
// messages already encoded in format f. The bytes are valid until the next
// call.
func (e *Encoder) Batch(f Format, room string, msgs [][]byte) []byte {
	if f == SSE { // one event per message, already encoded as such
		e.buf = e.buf[:0]
		for _, m := range msgs {
			e.buf = append(e.buf, m...)
		}
		return e.buf
	}
	e.buf = e.buf[:maxHeader]
	if f == JSON {
		e.buf = append(e.buf, `{"t":"batch","room":`...)
		e.buf = appendJSONRoom(e.buf, room)
		e.buf = append(e.buf, `,"msgs":[`...)
		for i, m := range msgs {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = append(e.buf, m...)
		}
		e.buf = append(e.buf, "]}"...)
		return e.finish(f)
	}
	// Writes to appender cannot fail.
	_ = e.mp.EncodeMapLen(3)
	_ = e.mp.EncodeString("t")
	_ = e.mp.EncodeString(TBatch)
	_ = e.mp.EncodeString("room")
	_ = e.mp.EncodeString(room)
	_ = e.mp.EncodeString("msgs")
	_ = e.mp.EncodeArrayLen(len(msgs))
	for _, m := range msgs {
		e.buf = append(e.buf, m...)
	}
	return e.finish(f)
}

// appendJSONRoom appends a room name as a JSON string. Room names are
// validated to [A-Za-z0-9:._-], which never needs escaping.
func appendJSONRoom(b []byte, room string) []byte {
	b = append(b, '"')
	b = append(b, room...)
	return append(b, '"')
}

// finish writes the frame header in front of the payload at buf[maxHeader:].
func (e *Encoder) finish(f Format) []byte {
	n := len(e.buf) - maxHeader
	op := ws.OpBinary
	if f == JSON {
		op = ws.OpText
	}
	start := maxHeader - HeaderSize(n)
	PutHeader(e.buf[start:maxHeader], op, n)
	return e.buf[start:]
}

// HeaderSize is the size of an unmasked, final frame header for a payload of
// n bytes (RFC 6455 section 5.2).
func HeaderSize(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

// PutHeader writes an unmasked, final frame header for a payload of n bytes
// into h, which must be HeaderSize(n) long.
func PutHeader(h []byte, op ws.OpCode, n int) {
	h[0] = 0x80 | byte(op)
	switch len(h) {
	case 2:
		h[1] = byte(n)
	case 4:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
}

// AppendFrame appends a whole unmasked final frame carrying payload to dst.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	n := len(dst)
	hs := HeaderSize(len(payload))
	dst = append(dst, make([]byte, hs)...)
	PutHeader(dst[n:n+hs], op, len(payload))
	return append(dst, payload...)
}

// CloseFrame returns a close frame with code and a short reason.
func CloseFrame(code CloseCode, reason string) []byte {
	return AppendFrame(nil, ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason))
}

// event encodes v as one Server-Sent Event named name, with the JSON of v
// as its data (JSON has no raw newline, so one data line suffices).
func (e *Encoder) event(name string, v any) ([]byte, error) {
	e.buf = append(e.buf[:0], "event: "...)
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, "\ndata: "...)
	if err := e.value(JSON, v); err != nil {
		return nil, err
	}
	e.buf = append(e.buf, "\n\n"...)
	return e.buf, nil
}

// message encodes a message as a Server-Sent Event: id ("<epoch>:<seq>",
// or the bare seq without an epoch), event msg, data.
func (e *Encoder) message(epoch string, m *Message) ([]byte, error) {
	e.buf = append(e.buf[:0], "id: "...)
	if epoch != "" {
		e.buf = append(e.buf, epoch...)
		e.buf = append(e.buf, ':')
	}
	e.buf = strconv.AppendUint(e.buf, m.Seq, 10)
	e.buf = append(e.buf, "\nevent: msg\ndata: "...)
	if err := e.value(JSON, m); err != nil {
		return nil, err
	}
	e.buf = append(e.buf, "\n\n"...)
	return e.buf, nil
}

// eventName is the SSE event name of a frame struct.
func eventName(v any) string {
	switch v.(type) {
	case *Presence:
		return TPresence
	case *Delete:
		return TDelete
	case *Clear:
		return TClear
	case *Kicked:
		return TKicked
	case *Error:
		return TError
	}
	return "message"
}
