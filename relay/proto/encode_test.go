package proto_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

var formats = []proto.Format{proto.Msgpack, proto.JSON}

// readFrame parses one whole server frame that must fill b exactly: final,
// no RSV bits, unmasked, with the minimal header for its length, and returns
// its header and payload.
func readFrame(t testing.TB, b []byte) (ws.Header, []byte) {
	t.Helper()
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil {
		t.Fatalf("frame header % x: %v", b[:min(len(b), 14)], err)
	}
	hn := len(b) - r.Len()
	switch {
	case !h.Fin:
		t.Errorf("FIN not set")
	case h.Rsv != 0:
		t.Errorf("RSV bits %03b set", h.Rsv)
	case h.Masked:
		t.Errorf("server frame is masked")
	}
	if int64(r.Len()) != h.Length {
		t.Fatalf("header says %d payload bytes, %d follow", h.Length, r.Len())
	}
	if want := proto.HeaderSize(int(h.Length)); hn != want {
		t.Errorf("header of %d bytes for a payload of %d, want %d", hn, h.Length, want)
	}
	return h, b[hn:]
}

// readDataFrame is readFrame plus the opcode of format f.
func readDataFrame(t testing.TB, f proto.Format, b []byte) []byte {
	t.Helper()
	h, p := readFrame(t, b)
	want := ws.OpBinary
	if f == proto.JSON {
		want = ws.OpText
	}
	if h.OpCode != want {
		t.Errorf("%v frame has opcode %v, want %v", f, h.OpCode, want)
	}
	return p
}

// num is a number decoded from either format, as its decimal text, so that
// msgpack's int8..uint64 and float64 compare with JSON's numbers.
type num string

// decodeAny decodes exactly one value of format f filling p, with numbers
// as num.
func decodeAny(t testing.TB, f proto.Format, p []byte) any {
	t.Helper()
	var v any
	if f == proto.JSON {
		if p[len(p)-1] == '\n' {
			t.Errorf("JSON payload ends with a newline")
		}
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("JSON payload %q: %v", p, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("JSON payload %q: more than one value", p)
		}
	} else {
		r := bytes.NewReader(p)
		if err := msgpack.NewDecoder(r).Decode(&v); err != nil {
			t.Fatalf("msgpack payload % x: %v", p, err)
		}
		if r.Len() != 0 {
			t.Fatalf("msgpack payload % x: %d bytes after the value", p, r.Len())
		}
	}
	return norm(v)
}

func norm(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = norm(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = norm(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = e
		}
		return out
	case json.Number:
		return num(v)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return num(fmt.Sprint(v))
	}
	return v
}

// encodeMsg is a message pre-encoded in format f, as kept in history.
func encodeMsg(t testing.TB, e *proto.Encoder, f proto.Format, msg proto.Message) []byte {
	t.Helper()
	p, err := e.Payload(f, &msg)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(p) // valid until e's next call only
}

func TestFrame(t *testing.T) {
	e := proto.NewEncoder()
	f := func(v any, want m) {
		t.Helper()
		for _, format := range formats {
			b, err := e.Frame(format, v)
			if err != nil {
				t.Errorf("%v Frame(%T): %v", format, v, err)
				continue
			}
			got := decodeAny(t, format, readDataFrame(t, format, b))
			if want := norm(want); !reflect.DeepEqual(got, want) {
				t.Errorf("%v Frame(%+v):\n got %v\nwant %v", format, v, got, want)
			}
		}
	}
	f(&proto.Hello{T: proto.THello, V: 1, User: "u1", Name: "Ann", Role: "user",
		Limits: proto.Limits{Rate: 2.5, Burst: 10, MaxBody: 500, MaxRooms: 20, MaxFrame: 65536}, Node: "n1"},
		m{"t": "hello", "v": 1, "user": "u1", "name": "Ann", "anon": false, "role": "user",
			"limits": m{"rate": 2.5, "burst": 10, "max_body": 500, "max_rooms": 20, "max_frame": 65536}, "node": "n1"})
	f(&proto.Hello{T: proto.THello, V: 1, User: "anon-1f3a", Anon: true, Role: "viewer"},
		m{"t": "hello", "v": 1, "user": "anon-1f3a", "name": "", "anon": true, "role": "viewer",
			"limits": m{"rate": 0, "burst": 0, "max_body": 0, "max_rooms": 0, "max_frame": 0}, "node": ""})
	f(&proto.Left{T: proto.TLeft, Ref: 3, Room: "r"}, m{"t": "left", "ref": 3, "room": "r"})
	f(&proto.Left{T: proto.TLeft, Room: "r"}, m{"t": "left", "room": "r"})
	f(&proto.Ack{T: proto.TAck, Ref: 4, Room: "r", Seq: 1 << 40}, m{"t": "ack", "ref": 4, "room": "r", "seq": 1 << 40})
	f(&proto.Ack{T: proto.TAck, Ref: 4, Room: "r"}, m{"t": "ack", "ref": 4, "room": "r"})
	f(&proto.Pong{T: proto.TPong, Ref: 18446744073709551615}, m{"t": "pong", "ref": uint64(18446744073709551615)})
	f(&proto.Pong{T: proto.TPong}, m{"t": "pong"})
	f(&proto.Presence{T: proto.TPresence, Room: "r", Count: 3,
		Joins: []proto.Member{{ID: "u1", Name: "Ann"}, {ID: "u2", Name: "Bob"}}, Leaves: []string{"u3"}},
		m{"t": "presence", "room": "r", "count": 3,
			"joins": []any{m{"id": "u1", "name": "Ann"}, m{"id": "u2", "name": "Bob"}}, "leaves": []any{"u3"}})
	f(&proto.Presence{T: proto.TPresence, Room: "big", Count: 5000}, m{"t": "presence", "room": "big", "count": 5000})
	f(&proto.Kicked{T: proto.TKicked, Room: "r", Reason: "banned"}, m{"t": "kicked", "room": "r", "reason": "banned"})
	f(&proto.Error{T: proto.TError, Ref: 9, Code: proto.CodeRateLimited, Message: "slow down", RetryMS: 250, Room: "r"},
		m{"t": "error", "ref": 9, "code": "rate_limited", "message": "slow down", "retry_ms": 250, "room": "r"})
	f(&proto.Error{T: proto.TError, Code: proto.CodeUnknownType, Message: `unknown frame type "x"`},
		m{"t": "error", "code": "unknown_type", "message": `unknown frame type "x"`})
	// No HTML escaping in JSON, nothing lost in either format.
	f(&proto.Kicked{T: proto.TKicked, Room: "r", Reason: "<b>&\"\\\n\x00é👋"},
		m{"t": "kicked", "room": "r", "reason": "<b>&\"\\\n\x00é👋"})

	// joined, with history as the relay builds it: pre-encoded messages of
	// the connection's format.
	msgs := []proto.Message{
		{Seq: 7, TS: 1700000000000, From: "u1", Name: "Ann", Body: "hi"},
		{Seq: 8, TS: 1700000000001, From: "u2", Name: "Bob", Body: "yo", Badges: []string{"mod"}, Meta: map[string]string{"k": "v"}},
	}
	for _, format := range formats {
		var hist any
		if format == proto.JSON {
			h := make([]json.RawMessage, len(msgs))
			for i := range msgs {
				h[i] = encodeMsg(t, e, format, msgs[i])
			}
			hist = h
		} else {
			h := make([]msgpack.RawMessage, len(msgs))
			for i := range msgs {
				h[i] = encodeMsg(t, e, format, msgs[i])
			}
			hist = h
		}
		for _, c := range []struct {
			j    proto.Joined
			want m
		}{
			{proto.Joined{T: proto.TJoined, Ref: 1, Room: "r", Seq: 8, History: hist, Gap: true, Count: 2,
				Members: []proto.Member{{ID: "u1", Name: "Ann"}}},
				m{"t": "joined", "ref": 1, "room": "r", "seq": 8, "gap": true, "count": 2,
					"members": []any{m{"id": "u1", "name": "Ann"}},
					"history": []any{
						m{"seq": 7, "ts": 1700000000000, "from": "u1", "name": "Ann", "body": "hi"},
						m{"seq": 8, "ts": 1700000000001, "from": "u2", "name": "Bob", "body": "yo",
							"badges": []any{"mod"}, "meta": m{"k": "v"}},
					}}},
			{proto.Joined{T: proto.TJoined, Room: "r", History: reflect.MakeSlice(reflect.TypeOf(hist), 0, 0).Interface(), Count: 1},
				m{"t": "joined", "room": "r", "seq": 0, "gap": false, "count": 1, "history": []any{}}},
		} {
			b, err := e.Frame(format, &c.j)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeAny(t, format, readDataFrame(t, format, b))
			if want := norm(c.want); !reflect.DeepEqual(got, want) {
				t.Errorf("%v joined:\n got %v\nwant %v", format, got, want)
			}
		}
	}
}

// TestFrameLengths makes frames whose payloads are exactly at the edges of
// the three header sizes (7-bit, 16-bit and 64-bit lengths).
func TestFrameLengths(t *testing.T) {
	e := proto.NewEncoder()
	for _, format := range formats {
		for _, size := range []int{40, 125, 126, 127, 1000, 65535, 65536, 65537, 300000} {
			// Find the reason length that makes the payload exactly size.
			var b []byte
			var reason string
			for n := max(size-40, 0); n <= size; n++ {
				reason = strings.Repeat("x", n)
				var err error
				b, err = e.Frame(format, &proto.Kicked{T: proto.TKicked, Room: "r", Reason: reason})
				if err != nil {
					t.Fatal(err)
				}
				if len(b)-proto.HeaderSize(size) == size {
					break
				}
				b = nil
			}
			if b == nil {
				t.Fatalf("%v: no kicked frame with a payload of %d bytes", format, size)
			}
			h, p := readFrame(t, b)
			if h.Length != int64(size) || len(p) != size {
				t.Errorf("%v: payload of %d bytes, header says %d, want %d", format, len(p), h.Length, size)
			}
			got := decodeAny(t, format, readDataFrame(t, format, b))
			if want := norm(m{"t": "kicked", "room": "r", "reason": reason}); !reflect.DeepEqual(got, want) {
				t.Errorf("%v size %d: payload decodes to a different frame", format, size)
			}
		}
	}
}

// TestEncoderBufferReuse: each call's bytes are right whatever the previous
// call left in the buffer (long then short, Payload then Frame, an error).
func TestEncoderBufferReuse(t *testing.T) {
	e := proto.NewEncoder()
	long := strings.Repeat("y", 70000)
	for _, format := range formats {
		check := func(b []byte, want m) {
			t.Helper()
			if got := decodeAny(t, format, readDataFrame(t, format, b)); !reflect.DeepEqual(got, norm(want)) {
				t.Errorf("%v: got %v, want %v", format, got, want)
			}
		}
		b, err := e.Frame(format, &proto.Kicked{T: proto.TKicked, Room: "r", Reason: long})
		if err != nil {
			t.Fatal(err)
		}
		check(b, m{"t": "kicked", "room": "r", "reason": long})
		b, _ = e.Frame(format, &proto.Pong{T: proto.TPong, Ref: 1})
		check(b, m{"t": "pong", "ref": 1})
		p, err := e.Payload(format, &proto.Message{Seq: 1, From: "u", Body: long})
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeAny(t, format, p); !reflect.DeepEqual(got, norm(m{"seq": 1, "ts": 0, "from": "u", "name": "", "body": long})) {
			t.Errorf("%v: Payload decodes to %v", format, got)
		}
		b = e.Batch(format, "r", nil)
		check(b, m{"t": "batch", "room": "r", "msgs": []any{}})

		// Something neither format can encode: an error, and the
		// encoder still works.
		if _, err := e.Frame(format, map[string]any{"t": "x", "c": make(chan int)}); err == nil {
			t.Errorf("%v: Frame of a channel did not fail", format)
		}
		if _, err := e.Payload(format, func() {}); err == nil {
			t.Errorf("%v: Payload of a func did not fail", format)
		}
		b, _ = e.Frame(format, &proto.Pong{T: proto.TPong, Ref: 2})
		check(b, m{"t": "pong", "ref": 2})
	}
}

type batchFrame struct {
	T    string          `msgpack:"t" json:"t"`
	Room string          `msgpack:"room" json:"room"`
	Msgs []proto.Message `msgpack:"msgs" json:"msgs"`
}

func TestBatch(t *testing.T) {
	e := proto.NewEncoder()
	manyMsgs := func(n int) []proto.Message {
		out := make([]proto.Message, n)
		for i := range out {
			out[i] = proto.Message{Seq: uint64(1000 + i), TS: 1700000000000 + int64(i), From: fmt.Sprint("u", i%7),
				Name: "name", Body: strings.Repeat("b", i%50)}
		}
		return out
	}
	cases := []struct {
		name string
		room string
		msgs []proto.Message
	}{
		{"none", "r", nil},
		{"one", "lobby:eu-1", []proto.Message{{Seq: 1, TS: 1700000000000, From: "u1", Name: "Ann", Body: "hello"}}},
		{"mixed", "A.b_c-d:9", []proto.Message{
			{Seq: 41, TS: 1, From: "u1", Name: "Ann", Body: "héllo 👋 <&>", Badges: []string{"mod", "sub"}},
			{Seq: 42, TS: 2, From: "system", Body: "", Meta: map[string]string{"kind": "notice", "x": "\"q\""}},
			{Seq: 1 << 62, TS: -1, From: "u3", Name: "C", Body: strings.Repeat("z", 300)},
		}},
		{"medium", "r", manyMsgs(300)},                     // 16-bit length
		{"large", strings.Repeat("r", 64), manyMsgs(3000)}, // 64-bit length
	}
	for _, c := range cases {
		for _, format := range formats {
			enc := make([][]byte, len(c.msgs))
			for i := range c.msgs {
				enc[i] = encodeMsg(t, e, format, c.msgs[i])
			}
			b := e.Batch(format, c.room, enc)
			p := readDataFrame(t, format, b)

			// The frame has exactly the fields t, room and msgs.
			top, ok := decodeAny(t, format, p).(map[string]any)
			if !ok || len(top) != 3 || top["t"] != "batch" || top["room"] != c.room {
				t.Errorf("%s %v: top level is %.200v", c.name, format, top)
			}
			if l, ok := top["msgs"].([]any); !ok || len(l) != len(c.msgs) {
				t.Errorf("%s %v: msgs is not a list of %d", c.name, format, len(c.msgs))
			}

			var got batchFrame
			var err error
			if format == proto.JSON {
				err = json.Unmarshal(p, &got)
			} else {
				err = msgpack.Unmarshal(p, &got)
			}
			if err != nil {
				t.Fatalf("%s %v: %v", c.name, format, err)
			}
			if len(got.Msgs) == 0 && len(c.msgs) == 0 {
				got.Msgs = c.msgs
			}
			want := batchFrame{T: "batch", Room: c.room, Msgs: c.msgs}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %v:\n got %.500v\nwant %.500v", c.name, format, got, want)
			}
		}
	}
}

func TestBatchNoAlloc(t *testing.T) {
	e := proto.NewEncoder()
	for _, format := range formats {
		msgs := make([][]byte, 100)
		for i := range msgs {
			msgs[i] = encodeMsg(t, e, format, proto.Message{Seq: uint64(i), TS: 1700000000000, From: "u1", Name: "Ann",
				Body: strings.Repeat("x", 100)})
		}
		e.Batch(format, "lobby:eu-1", msgs) // grow the buffer
		allocs := testing.AllocsPerRun(100, func() {
			e.Batch(format, "lobby:eu-1", msgs)
		})
		if allocs != 0 {
			t.Errorf("%v: Batch of %d messages allocates %v times per call, want 0", format, len(msgs), allocs)
		}
	}
}

func TestHeaderSize(t *testing.T) {
	f := func(n, want int) {
		t.Helper()
		if got := proto.HeaderSize(n); got != want {
			t.Errorf("HeaderSize(%d) = %d, want %d", n, got, want)
		}
	}
	f(0, 2)
	f(1, 2)
	f(125, 2)
	f(126, 4)
	f(127, 4)
	f(65535, 4)
	f(65536, 10)
	f(1<<31, 10)
	f(1<<40, 10)
}

func TestPutHeader(t *testing.T) {
	f := func(op ws.OpCode, n int, want []byte) {
		t.Helper()
		h := make([]byte, proto.HeaderSize(n))
		proto.PutHeader(h, op, n)
		if !bytes.Equal(h, want) {
			t.Errorf("PutHeader(%v, %d) = % x, want % x", op, n, h, want)
		}
		got, err := ws.ReadHeader(bytes.NewReader(h))
		if err != nil {
			t.Fatalf("ReadHeader(% x): %v", h, err)
		}
		if w := (ws.Header{Fin: true, OpCode: op, Length: int64(n)}); got != w {
			t.Errorf("PutHeader(%v, %d) reads back as %+v", op, n, got)
		}
	}
	f(ws.OpText, 0, []byte{0x81, 0})
	f(ws.OpText, 5, []byte{0x81, 5})
	f(ws.OpBinary, 125, []byte{0x82, 125})
	f(ws.OpBinary, 126, []byte{0x82, 126, 0, 126})
	f(ws.OpBinary, 300, []byte{0x82, 126, 0x01, 0x2c})
	f(ws.OpText, 65535, []byte{0x81, 126, 0xff, 0xff})
	f(ws.OpBinary, 65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0})
	f(ws.OpBinary, 1<<40+1, []byte{0x82, 127, 0, 0, 1, 0, 0, 0, 0, 1})
	f(ws.OpClose, 2, []byte{0x88, 2})
	f(ws.OpPing, 125, []byte{0x89, 125})
	f(ws.OpPong, 0, []byte{0x8a, 0})
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpPong} {
			dst := []byte("prefix")
			b := proto.AppendFrame(dst, op, payload)
			if string(b[:6]) != "prefix" {
				t.Errorf("AppendFrame clobbered dst: %q", b[:6])
			}
			h, p := readFrame(t, b[6:])
			if h.OpCode != op || !bytes.Equal(p, payload) {
				t.Errorf("AppendFrame(%v, %d bytes): opcode %v, payload of %d bytes", op, n, h.OpCode, len(p))
			}
		}
	}
	// Appending after a previous frame keeps both.
	b := proto.AppendFrame(nil, ws.OpText, []byte("one"))
	b = proto.AppendFrame(b, ws.OpBinary, []byte("two"))
	if want := []byte{0x81, 3, 'o', 'n', 'e', 0x82, 3, 't', 'w', 'o'}; !bytes.Equal(b, want) {
		t.Errorf("two frames: % x, want % x", b, want)
	}
}

func TestCloseFrame(t *testing.T) {
	f := func(code proto.CloseCode, reason, wantReason string) {
		t.Helper()
		b := proto.CloseFrame(code, reason)
		h, p := readFrame(t, b)
		if h.OpCode != ws.OpClose {
			t.Errorf("CloseFrame opcode %v", h.OpCode)
		}
		if h.Length > 125 {
			t.Errorf("CloseFrame(%d, %d-byte reason): control frame payload of %d bytes", code, len(reason), h.Length)
		}
		if len(p) < 2 {
			t.Fatalf("CloseFrame(%d, %q): payload % x", code, reason, p)
		}
		if got := binary.BigEndian.Uint16(p); got != uint16(code) {
			t.Errorf("CloseFrame(%d, %q): code %d", code, reason, got)
		}
		if got := string(p[2:]); got != wantReason {
			t.Errorf("CloseFrame(%d, %q): reason %q, want %q", code, reason, got, wantReason)
		}
	}
	for _, c := range proto.AllCloseCodes {
		f(c, "", "")
		f(c, "bye", "bye")
	}
	f(proto.CloseInvalidData, "frame does not decode: "+proto.ErrMalformed.Error(), "frame does not decode: "+proto.ErrMalformed.Error())
	f(proto.CloseProtocol, "client frame not masked", "client frame not masked")
	f(proto.CloseProtocol, "é", "é")
	// A long reason is cut so the control frame stays within 125 bytes.
	f(proto.CloseNormal, strings.Repeat("x", 200), strings.Repeat("x", 123))
	f(proto.CloseNormal, strings.Repeat("x", 123), strings.Repeat("x", 123))
}
