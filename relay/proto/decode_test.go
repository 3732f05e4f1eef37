package proto_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

// mp is msgpack.Marshal with sorted map keys, so failures reproduce.
func mp(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("msgpack.Marshal(%v): %v", v, err)
	}
	return buf.Bytes()
}

type m = map[string]any

func TestDecodeFields(t *testing.T) {
	d := proto.NewDecoder()
	// f decodes the same frame written as JSON (js) and as msgpack (mpv),
	// and expects want from both.
	f := func(js string, mpv m, want proto.Command) {
		t.Helper()
		for _, c := range []struct {
			f proto.Format
			b []byte
		}{{proto.JSON, []byte(js)}, {proto.Msgpack, mp(t, mpv)}} {
			var got proto.Command
			if err := d.Decode(c.f, c.b, &got); err != nil {
				t.Errorf("%v %q: unexpected error %v", c.f, c.b, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%v %q:\n got %+v\nwant %+v", c.f, c.b, got, want)
			}
		}
	}

	// Each frame type of PROTOCOL.md 3.2 with all its fields.
	f(`{"t":"join","ref":1,"room":"lobby:eu-1"}`,
		m{"t": "join", "ref": 1, "room": "lobby:eu-1"},
		proto.Command{T: "join", Ref: 1, Room: "lobby:eu-1"})
	f(`{"t":"join","ref":2,"room":"r","since":41,"history":50}`,
		m{"t": "join", "ref": 2, "room": "r", "since": 41, "history": 50},
		proto.Command{T: "join", Ref: 2, Room: "r", Since: 41, HasSince: true, History: 50, HasHistory: true})
	f(`{"t":"join","room":"r","since":0,"history":0}`,
		m{"t": "join", "room": "r", "since": 0, "history": 0},
		proto.Command{T: "join", Room: "r", HasSince: true, HasHistory: true})
	f(`{"t":"join","ref":2,"room":"r","since":41,"epoch":"k3x9q2"}`,
		m{"t": "join", "ref": 2, "room": "r", "since": 41, "epoch": "k3x9q2"},
		proto.Command{T: "join", Ref: 2, Room: "r", Since: 41, HasSince: true, Epoch: "k3x9q2"})
	f(`{"t":"refresh","ref":7,"token":"a.b.c"}`,
		m{"t": "refresh", "ref": 7, "token": "a.b.c"},
		proto.Command{T: "refresh", Ref: 7, Token: "a.b.c"})
	// Integers written as floats by some JSON encoders: taken when integral.
	f(`{"t":"join","ref":1.0,"room":"r","since":1e2,"history":20.0}`,
		m{"t": "join", "ref": 1, "room": "r", "since": 100, "history": 20},
		proto.Command{T: "join", Ref: 1, Room: "r", Since: 100, HasSince: true, History: 20, HasHistory: true})
	f(`{"t":"leave","ref":3,"room":"r"}`,
		m{"t": "leave", "ref": 3, "room": "r"},
		proto.Command{T: "leave", Ref: 3, Room: "r"})
	f(`{"t":"send","ref":4,"room":"r","body":"héllo 👋","meta":{"color":"#f00","reply-to":"17"}}`,
		m{"t": "send", "ref": 4, "room": "r", "body": "héllo 👋", "meta": m{"color": "#f00", "reply-to": "17"}},
		proto.Command{T: "send", Ref: 4, Room: "r", Body: "héllo 👋", Meta: map[string]string{"color": "#f00", "reply-to": "17"}})
	f(`{"t":"send","room":"r","body":""}`,
		m{"t": "send", "room": "r", "body": ""},
		proto.Command{T: "send", Room: "r"})
	f(`{"t":"ping"}`, m{"t": "ping"}, proto.Command{T: "ping"})
	f(`{"t":"ping","ref":18446744073709551615}`,
		m{"t": "ping", "ref": uint64(math.MaxUint64)},
		proto.Command{T: "ping", Ref: math.MaxUint64})
	f(`{"t":"mod","ref":5,"room":"r","action":"delete","seq":99}`,
		m{"t": "mod", "ref": 5, "room": "r", "action": "delete", "seq": 99},
		proto.Command{T: "mod", Ref: 5, Room: "r", Action: "delete", Seq: 99})
	f(`{"t":"mod","room":"r","action":"timeout","user":"u-1","secs":600}`,
		m{"t": "mod", "room": "r", "action": "timeout", "user": "u-1", "secs": 600},
		proto.Command{T: "mod", Room: "r", Action: "timeout", User: "u-1", Secs: 600})
	f(`{"t":"mod","room":"r","action":"slow","secs":0}`,
		m{"t": "mod", "room": "r", "action": "slow", "secs": 0},
		proto.Command{T: "mod", Room: "r", Action: "slow"})
	// A type the relay does not know still decodes: the relay answers
	// unknown_type, not the decoder.
	f(`{"t":"teleport"}`, m{"t": "teleport"}, proto.Command{T: "teleport"})

	// Huge history and secs are clamped (1<<30 and 1<<40), in both formats.
	f(`{"t":"join","room":"r","history":1099511627776,"since":18446744073709551615}`,
		m{"t": "join", "room": "r", "history": uint64(1) << 40, "since": uint64(math.MaxUint64)},
		proto.Command{T: "join", Room: "r", History: 1 << 30, HasHistory: true, Since: math.MaxUint64, HasSince: true})
	f(`{"t":"mod","room":"r","action":"timeout","secs":18446744073709551615}`,
		m{"t": "mod", "room": "r", "action": "timeout", "secs": uint64(math.MaxUint64)},
		proto.Command{T: "mod", Room: "r", Action: "timeout", Secs: 1 << 40})

	// Null means absent, for every field.
	f(`{"t":"join","ref":null,"room":null,"body":null,"meta":null,"since":null,"history":null,"action":null,"user":null,"secs":null,"seq":null}`,
		m{"t": "join", "ref": nil, "room": nil, "body": nil, "meta": nil, "since": nil, "history": nil,
			"action": nil, "user": nil, "secs": nil, "seq": nil},
		proto.Command{T: "join"})

	// Unknown fields are ignored, whatever their value (forward compatibility).
	f(`{"t":"ping","ref":7,"x":1,"future":{"a":[1,{"b":null}],"c":"d"},"list":[true,false,null,1.5,"s"],"room2":"q"}`,
		m{"t": "ping", "ref": 7, "x": 1, "future": m{"a": []any{1, m{"b": nil}}, "c": "d"},
			"list": []any{true, false, nil, 1.5, "s"}, "room2": "q"},
		proto.Command{T: "ping", Ref: 7})
	// ... even with the value type a known field would reject.
	f(`{"t":"ping","reff":"x","metas":7,"bodies":[1]}`,
		m{"t": "ping", "reff": "x", "metas": 7, "bodies": []any{1}},
		proto.Command{T: "ping"})
}

// TestDecodeMsgpackEncodings covers msgpack encodings that msgpack.Marshal of
// a map[string]any does not pick by default: every integer width, str8/16/32,
// non-string keys, map16.
func TestDecodeMsgpackEncodings(t *testing.T) {
	d := proto.NewDecoder()
	f := func(b []byte, want proto.Command) {
		t.Helper()
		var got proto.Command
		if err := d.Decode(proto.Msgpack, b, &got); err != nil {
			t.Errorf("%x: unexpected error %v", b, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%x:\n got %+v\nwant %+v", b, got, want)
		}
	}
	for _, ref := range []any{uint8(200), uint16(300), uint32(70000), uint64(1 << 40), int8(5), int16(300), int32(70000), int64(1 << 40), 7} {
		want := reflect.ValueOf(ref).Convert(reflect.TypeFor[uint64]()).Uint()
		f(mp(t, m{"t": "ping", "ref": ref}), proto.Command{T: "ping", Ref: want})
		f(mp(t, m{"t": "join", "room": "r", "since": ref}), proto.Command{T: "join", Room: "r", Since: want, HasSince: true})
	}

	// str8, str16, str32 for t and body.
	str := func(s string, code byte) []byte {
		switch code {
		case 0xd9:
			return append([]byte{0xd9, byte(len(s))}, s...)
		case 0xda:
			return append([]byte{0xda, byte(len(s) >> 8), byte(len(s))}, s...)
		}
		return append([]byte{0xdb, 0, byte(len(s) >> 16), byte(len(s) >> 8), byte(len(s))}, s...)
	}
	for _, code := range []byte{0xd9, 0xda, 0xdb} {
		b := []byte{0x82}
		b = append(b, str("t", code)...)
		b = append(b, str("send", code)...)
		b = append(b, str("body", code)...)
		b = append(b, str("hi", code)...)
		f(b, proto.Command{T: "send", Body: "hi"})
	}
	long := strings.Repeat("x", 70000) // str32 from msgpack itself
	f(mp(t, m{"t": "send", "body": long}), proto.Command{T: "send", Body: long})

	// map16 at the top level and for meta.
	b := []byte{0xde, 0, 2, 0xa1, 't', 0xa4, 's', 'e', 'n', 'd', 0xa4, 'm', 'e', 't', 'a', 0xde, 0, 1, 0xa1, 'k', 0xa1, 'v'}
	f(b, proto.Command{T: "send", Meta: map[string]string{"k": "v"}})

	// Keys that are not strings are ignored, with their values.
	f(mp(t, map[any]any{"t": "ping", 1: "x", true: m{"a": 1}, nil: []any{1}}), proto.Command{T: "ping"})
	// An empty meta map decodes as no meta.
	f(mp(t, m{"t": "send", "meta": m{}}), proto.Command{T: "send"})
	// Duplicate keys: the last wins.
	f([]byte{0x82, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g', 0xa1, 't', 0xa4, 'j', 'o', 'i', 'n'}, proto.Command{T: "join"})
}

func TestDecodeFieldErrors(t *testing.T) {
	d := proto.NewDecoder()
	check := func(f proto.Format, b []byte, field string) {
		t.Helper()
		var cmd proto.Command
		err := d.Decode(f, b, &cmd)
		var fe *proto.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%v %q: got error %v, want a *FieldError for %q", f, b, err, field)
			return
		}
		if fe.Field != field {
			t.Errorf("%v %q: FieldError names %q, want %q (%v)", f, b, fe.Field, field, err)
		}
		if !strings.Contains(err.Error(), field) {
			t.Errorf("%v %q: message %q does not name %q", f, b, err, field)
		}
	}
	js := func(s, field string) { t.Helper(); check(proto.JSON, []byte(s), field) }
	mpk := func(v any, field string) { t.Helper(); check(proto.Msgpack, mp(t, v), field) }

	// Missing or empty t.
	js(`{}`, "t")
	js(`{"ref":1,"room":"r"}`, "t")
	js(`{"t":""}`, "t")
	js(`{"t":null}`, "t")
	mpk(m{}, "t")
	mpk(m{"ref": 1, "room": "r"}, "t")
	mpk(m{"t": ""}, "t")
	mpk(m{"t": nil}, "t")

	// Negative integers.
	for _, k := range []string{"ref", "since", "history", "secs", "seq"} {
		js(`{"t":"x","`+k+`":-1}`, k)
		mpk(m{"t": "x", k: -1}, k)
		mpk(m{"t": "x", k: int64(math.MinInt64)}, k)
		mpk(m{"t": "x", k: int8(-128)}, k)
	}

	// Wrong types for every field.
	for _, k := range []string{"t", "room", "body", "action", "user"} {
		for _, v := range []string{`1`, `-1`, `1.5`, `true`, `[]`, `{}`, `["a"]`} {
			js(`{"t":"x","`+k+`":`+v+`}`, k)
		}
		for _, v := range []any{1, -1, 1.5, true, []any{}, m{}, []any{"a"}, []byte("a")} {
			mpk(m{"t": "x", k: v}, k)
		}
	}
	for _, k := range []string{"ref", "since", "history", "secs", "seq"} {
		for _, v := range []string{`"1"`, `1.5`, `1e-3`, `-1.0`, `1e20`, `true`, `[]`, `{}`, `18446744073709551616`} {
			js(`{"t":"x","`+k+`":`+v+`}`, k)
		}
		for _, v := range []any{"1", 1.5, float32(2), true, []any{}, m{}, []byte{1}} {
			mpk(m{"t": "x", k: v}, k)
		}
	}
	for _, v := range []string{`"a"`, `1`, `true`, `[]`, `["a","b"]`, `{"a":1}`, `{"a":true}`, `{"a":{}}`, `{"a":[]}`} {
		js(`{"t":"send","meta":`+v+`}`, "meta")
	}
	for _, v := range []any{"a", 1, true, []any{}, []any{"a", "b"}, m{"a": 1}, m{"a": true}, m{"a": m{}}, m{"a": []any{}}, map[any]any{1: "a"}} {
		mpk(m{"t": "send", "meta": v}, "meta")
	}

	// A field error in a frame that also lacks t is still a field error.
	js(`{"ref":"x"}`, "ref")
	mpk(m{"ref": "x"}, "ref")
}

func TestDecodeMalformed(t *testing.T) {
	d := proto.NewDecoder()
	f := func(format proto.Format, b []byte) {
		t.Helper()
		var cmd proto.Command
		if err := d.Decode(format, b, &cmd); !errors.Is(err, proto.ErrMalformed) {
			t.Errorf("%v %q: got %v, want ErrMalformed", format, b, err)
		}
	}
	js := func(s string) { t.Helper(); f(proto.JSON, []byte(s)) }
	for _, s := range []string{
		``, ` `, "\t\r\n", `null`, `[]`, `["t","ping"]`, `[{"t":"ping"}]`, `"ping"`, `1`, `true`,
		`{`, `{"t"`, `{"t":`, `{"t":"ping"`, `{"t":"ping",}`, `{t:"ping"}`, `{'t':'ping'}`,
		`{"t":"ping"}x`, `{"t":"ping"}{}`, `{"t":"ping"} {"t":"ping"}`, `{"t":"ping"}]`,
		"\x00\x01\x02", "\xef\xbb\xbf{\"t\":\"ping\"}", `{"t":"send","body":"\x"}`,
		`{"t":"ping","ref":01}`, `{"t":"ping","ref":NaN}`, strings.Repeat("[", 20000),
		`{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `,"t":"ping"}`,
	} {
		js(s)
	}

	mpk := func(b ...byte) { t.Helper(); f(proto.Msgpack, b) }
	mpk()                                                // empty
	mpk(0xc0)                                            // nil
	mpk(0xc1)                                            // never used
	mpk(0x01)                                            // an int
	mpk(0xa4, 'p', 'i', 'n', 'g')                        // a string
	mpk(0x91, 0x80)                                      // an array holding a map
	mpk(0x90)                                            // empty array
	mpk(0x81)                                            // map with no entries present
	mpk(0x82, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g')       // map of 2 with one entry
	mpk(0xde, 0)                                         // truncated map16 length
	mpk(0xdf, 0xff, 0xff, 0xff, 0xff)                    // map32 of 4G entries, none present
	mpk(0x81, 0xa1, 't', 0xc1)                           // bad value code
	mpk(0x81, 0xc1, 0x00)                                // bad key code
	mpk(0x81, 0xa1, 'x', 0xd4)                           // truncated fixext1 in an unknown field
	mpk(0x81, 0xa1, 'x', 0x92, 0x01)                     // truncated array in an unknown field
	mpk(0x81, 0xa4, 'm', 'e', 't', 'a', 0x81, 0xa1, 'k') // truncated meta
	mpk(0x81, 0xa3, 'r', 'e', 'f', 0xcd, 0x01)           // truncated uint16
	mpk(0x81, 0xa3, 'r', 'e', 'f', 0xcf, 0, 0, 0)        // truncated uint64

	full := mp(t, m{"t": "send", "ref": 9, "room": "lobby", "body": "hello", "meta": m{"k": "v"}, "since": 300})
	for i := range len(full) { // every truncation
		f(proto.Msgpack, full[:i])
	}
	f(proto.Msgpack, append(bytes.Clone(full), 0x00))         // trailing byte
	f(proto.Msgpack, append(bytes.Clone(full), full...))      // two maps
	f(proto.Msgpack, append(bytes.Clone(full), 0xc0))         // trailing nil
	f(proto.JSON, append([]byte(`{"t":"ping"}`), full...))    // trailing garbage
	f(proto.JSON, full)                                       // msgpack bytes on a JSON connection
	f(proto.Msgpack, []byte(`{"t":"ping"}`))                  // JSON bytes on a msgpack connection
	f(proto.Msgpack, append(mp(t, m{"t": "ping"}), ' ', ' ')) // msgpack has no whitespace

	// Whitespace around a JSON object is fine.
	var cmd proto.Command
	if err := d.Decode(proto.JSON, []byte(" \r\n\t{\"t\" : \"ping\" }\n "), &cmd); err != nil || cmd.T != "ping" {
		t.Errorf("JSON with whitespace: %v %+v", err, cmd)
	}
}

func TestDecodeInvalidUTF8(t *testing.T) {
	d := proto.NewDecoder()
	f := func(v m) {
		t.Helper()
		var cmd proto.Command
		b := mp(t, v)
		if err := d.Decode(proto.Msgpack, b, &cmd); !errors.Is(err, proto.ErrInvalidUTF8) {
			t.Errorf("%q: got %v, want ErrInvalidUTF8", b, err)
		}
	}
	for _, bad := range []string{
		"\xff", "ok\xfe", "\xc3", "\xe2\x82", "\xf0\x9f\x91", // stray bytes, truncated sequences
		"\xc0\x80", "\xe0\x80\xaf", // overlong
		"\xed\xa0\x80",     // a UTF-16 surrogate
		"\xf4\x90\x80\x80", // above U+10FFFF
	} {
		f(m{"t": "send", "room": "r", "body": bad})
		f(m{"t": "send", "room": "r", "body": "ok", "meta": m{"k": bad}})
		f(m{"t": "send", "room": "r", "body": "ok", "meta": m{bad: "v"}})
		f(m{"room": "r", "body": bad}) // invalid UTF-8 wins over a missing t
	}

	// Valid multi-byte text, including U+0000 and U+10FFFF, passes.
	var cmd proto.Command
	body := "\x00 é € 👋 \U0010ffff"
	if err := d.Decode(proto.Msgpack, mp(t, m{"t": "send", "body": body, "meta": m{"ключ": "值"}}), &cmd); err != nil {
		t.Fatalf("valid UTF-8: %v", err)
	}
	if cmd.Body != body || cmd.Meta["ключ"] != "值" {
		t.Errorf("valid UTF-8 decoded as %+v", cmd)
	}
	if err := d.Decode(proto.JSON, []byte(`{"t":"send","body":"\u0000 \u00e9 € \ud83d\udc4b","meta":{"ключ":"值"}}`), &cmd); err != nil {
		t.Fatalf("valid UTF-8 in JSON: %v", err)
	}
	if cmd.Body != "\x00 é € 👋" || cmd.Meta["ключ"] != "值" {
		t.Errorf("valid UTF-8 in JSON decoded as %+v", cmd)
	}
}

// TestDecodeJSONInvalidUTF8 expects the JSON format to refuse raw invalid
// UTF-8 in body or meta like msgpack does.
//
// BUG (decode.go decodeJSON, the json.Unmarshal call): encoding/json replaces
// each invalid byte with U+FFFD and Decode returns nil, so
// {"t":"send","body":"a<0xff>b"} decodes as body "a\uFFFDb". The relay checks
// UTF-8 itself only for text frames (frames.go message), so a client on a
// roomcast.v1.json connection that sends a *binary* frame gets its invalid body
// silently rewritten and relayed, where PROTOCOL.md 3.5 wants close 1007.
func TestDecodeJSONInvalidUTF8(t *testing.T) {
	d := proto.NewDecoder()
	for _, s := range []string{
		"{\"t\":\"send\",\"room\":\"r\",\"body\":\"a\xffb\"}",
		"{\"t\":\"send\",\"room\":\"r\",\"body\":\"ok\",\"meta\":{\"k\":\"\xed\xa0\x80\"}}",
		"{\"t\":\"send\",\"room\":\"r\",\"body\":\"ok\",\"meta\":{\"\xc3\":\"v\"}}",
	} {
		var cmd proto.Command
		if err := d.Decode(proto.JSON, []byte(s), &cmd); !errors.Is(err, proto.ErrInvalidUTF8) {
			t.Errorf("%q: got %v (body %q, meta %q), want ErrInvalidUTF8", s, err, cmd.Body, cmd.Meta)
		}
	}
}

// TestDecodeJSONKeysExact expects JSON keys to match exactly, as in msgpack:
// "T", "Room" or "BODY" are unknown fields and must be ignored.
//
// BUG (decode.go decodeJSON): encoding/json matches struct fields without
// regard to case, so {"t":"ping","T":"send","Room":"x"} decodes as a send to
// room x in JSON and as a ping in msgpack.
func TestDecodeJSONKeysExact(t *testing.T) {
	d := proto.NewDecoder()
	var cmd proto.Command
	err := d.Decode(proto.JSON, []byte(`{"t":"ping","T":"send","Room":"x","BODY":"y","Ref":5,"Since":1}`), &cmd)
	if want := (proto.Command{T: "ping"}); err != nil || !reflect.DeepEqual(cmd, want) {
		t.Errorf("got %+v, %v; want %+v", cmd, err, want)
	}
}

// TestDecodeFieldErrorKeepsRef: a frame with one bad field is answered with
// bad_request carrying the frame's ref and room (frames.go message passes
// cmd.Ref and cmd.Room to fail; PROTOCOL.md 3: "a reply to a frame that had a
// ref carries the same ref"), so Decode must fill the good fields even when
// it returns a *FieldError, in both formats.
func TestDecodeFieldErrorKeepsRef(t *testing.T) {
	d := proto.NewDecoder()
	f := func(format proto.Format, b []byte) {
		t.Helper()
		var cmd proto.Command
		err := d.Decode(format, b, &cmd)
		var fe *proto.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%v %q: got %v, want a *FieldError", format, b, err)
			return
		}
		if cmd.Ref != 5 || cmd.Room != "lobby" {
			t.Errorf("%v %q: after %v cmd has ref %d room %q, want 5 and lobby", format, b, err, cmd.Ref, cmd.Room)
		}
	}
	f(proto.Msgpack, mp(t, m{"t": "send", "ref": 5, "room": "lobby", "body": 1}))
	f(proto.Msgpack, mp(t, m{"t": "join", "ref": 5, "room": "lobby", "since": "x"}))
	f(proto.Msgpack, mp(t, m{"t": "send", "ref": 5, "room": "lobby", "meta": m{"k": 1}}))
	f(proto.JSON, []byte(`{"t":"send","ref":5,"room":"lobby","body":1}`))
	f(proto.JSON, []byte(`{"t":"join","ref":5,"room":"lobby","since":"x"}`))
	f(proto.JSON, []byte(`{"t":"send","body":[],"ref":5,"room":"lobby"}`)) // bad field first
	f(proto.JSON, []byte(`{"t":"send","ref":5,"room":"lobby","meta":{"k":1}}`))
}

// TestDecodeLengthBeyondInput: a msgpack string, bin or ext header may claim
// up to 4 GiB. A 6-byte frame claiming that must cost next to nothing.
//
// BUG (decode.go, Decoder.decodeMsgpack relying on msgpack.Decoder): the
// library's readNGrow grows the Decoder's internal buffer by at least 1 MiB
// towards the claimed length before it finds the input short, and keeps the
// grown buffer on error. The relay keeps one Decoder per event loop, so each
// such frame (e.g. 81 db ff ff ff ff, or 81 a1 78 c6 ff ff ff ff as an
// unknown field) grows that buffer further: measured, 40 frames of 6 bytes
// left ~4.9 GB live on the heap, 24 GB allocated, and took 37 s. Any client
// (anonymous viewers included) can do this by reconnecting after each 1007.
func TestDecodeLengthBeyondInput(t *testing.T) {
	d := proto.NewDecoder()
	frames := [][]byte{
		{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff},                                // str32 key
		{0x81, 0xa4, 'b', 'o', 'd', 'y', 0xdb, 0x7f, 0xff, 0xff, 0xff},      // str32 body
		{0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff},                     // bin32 unknown field
		{0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},               // ext32 unknown field
		{0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff},                     // array32 unknown field
		{0x81, 0xa4, 'm', 'e', 't', 'a', 0xdf, 0xff, 0xff, 0xff, 0xff},      // map32 meta
		{0x81, 0xa4, 'm', 'e', 't', 'a', 0x81, 0xa1, 'k', 0xdb, 0, 1, 0, 0}, // str32 meta value
	}
	var cmd proto.Command
	for _, b := range frames[4:] { // these are cheap today
		if err := d.Decode(proto.Msgpack, b, &cmd); !errors.Is(err, proto.ErrMalformed) {
			t.Errorf("%x: got %v, want ErrMalformed", b, err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 3 {
		for _, b := range frames {
			if err := d.Decode(proto.Msgpack, b, &cmd); !errors.Is(err, proto.ErrMalformed) {
				t.Errorf("%x: got %v, want ErrMalformed", b, err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("decoding %d frames of at most 14 bytes allocated %d bytes", 3*len(frames), n)
	}
}

func TestDecoderReuse(t *testing.T) {
	d := proto.NewDecoder()
	var cmd proto.Command // one Command, reused like the relay's event loop does
	full := proto.Command{T: "join", Ref: 9, Room: "lobby:eu", Body: "b", Meta: map[string]string{"k": "v"},
		Since: 3, HasSince: true, History: 4, HasHistory: true, Action: "ban", User: "u", Secs: 5, Seq: 6}
	fullMap := m{"t": "join", "ref": 9, "room": "lobby:eu", "body": "b", "meta": m{"k": "v"},
		"since": 3, "history": 4, "action": "ban", "user": "u", "secs": 5, "seq": 6}
	fullJSON := `{"t":"join","ref":9,"room":"lobby:eu","body":"b","meta":{"k":"v"},"since":3,"history":4,"action":"ban","user":"u","secs":5,"seq":6}`

	steps := []struct {
		f       proto.Format
		b       []byte
		want    proto.Command
		wantErr string // "", "field", "malformed", "utf8"
	}{
		{proto.Msgpack, mp(t, fullMap), full, ""},
		{proto.Msgpack, mp(t, m{"t": "ping"}), proto.Command{T: "ping"}, ""},
		{proto.JSON, []byte(fullJSON), full, ""},
		{proto.JSON, []byte(`{"t":"ping"}`), proto.Command{T: "ping"}, ""},
		{proto.Msgpack, mp(t, fullMap), full, ""},
		{proto.Msgpack, mp(t, m{"t": "x", "ref": "bad"}), proto.Command{}, "field"},
		{proto.Msgpack, mp(t, m{"t": "ping"}), proto.Command{T: "ping"}, ""}, // no FieldError left over
		{proto.Msgpack, mp(t, m{"t": "x", "seq": -1}), proto.Command{}, "field"},
		{proto.Msgpack, mp(t, m{"t": "ping"}), proto.Command{T: "ping"}, ""},
		{proto.Msgpack, mp(t, fullMap)[:20], proto.Command{}, "malformed"}, // stops mid-map
		{proto.Msgpack, mp(t, m{"t": "leave", "room": "r"}), proto.Command{T: "leave", Room: "r"}, ""},
		{proto.Msgpack, mp(t, m{"t": "send", "body": "\xff"}), proto.Command{}, "utf8"},
		{proto.Msgpack, mp(t, m{"t": "send", "body": "ok"}), proto.Command{T: "send", Body: "ok"}, ""},
		{proto.JSON, []byte(`{"t":"x","ref":"bad"}`), proto.Command{}, "field"},
		{proto.Msgpack, mp(t, fullMap), full, ""},
		{proto.JSON, []byte(`{"t":`), proto.Command{}, "malformed"},
		{proto.JSON, []byte(`{"t":"ping"}`), proto.Command{T: "ping"}, ""},
	}
	for i, s := range steps {
		err := d.Decode(s.f, s.b, &cmd)
		var fe *proto.FieldError
		var ok bool
		switch s.wantErr {
		case "":
			ok = err == nil
		case "field":
			ok = errors.As(err, &fe)
		case "malformed":
			ok = errors.Is(err, proto.ErrMalformed)
		case "utf8":
			ok = errors.Is(err, proto.ErrInvalidUTF8)
		}
		if !ok {
			t.Errorf("step %d (%v %q): got error %v, want %s", i, s.f, s.b, err, s.wantErr)
			continue
		}
		if s.wantErr == "" && !reflect.DeepEqual(cmd, s.want) {
			t.Errorf("step %d (%v %q):\n got %+v\nwant %+v", i, s.f, s.b, cmd, s.want)
		}
	}
}

// TestDecodeNoAlias: strings in the Command do not alias the payload, which
// the relay unmasks in place inside gnet's buffer and then reuses.
func TestDecodeNoAlias(t *testing.T) {
	d := proto.NewDecoder()
	for _, c := range []struct {
		f proto.Format
		b []byte
	}{
		{proto.Msgpack, mp(t, m{"t": "send", "room": "lobby", "body": "hello", "meta": m{"k": "v"}})},
		{proto.JSON, []byte(`{"t":"send","room":"lobby","body":"hello","meta":{"k":"v"}}`)},
	} {
		var cmd proto.Command
		if err := d.Decode(c.f, c.b, &cmd); err != nil {
			t.Fatal(err)
		}
		for i := range c.b {
			c.b[i] = 'Z'
		}
		want := proto.Command{T: "send", Room: "lobby", Body: "hello", Meta: map[string]string{"k": "v"}}
		if !reflect.DeepEqual(cmd, want) {
			t.Errorf("%v: after overwriting the payload the command is %+v", c.f, cmd)
		}
	}
}

func TestValidRoom(t *testing.T) {
	f := func(name string, want bool) {
		t.Helper()
		if got := proto.ValidRoom(name); got != want {
			t.Errorf("ValidRoom(%q) = %v, want %v", name, got, want)
		}
	}
	f("a", true)
	f("Z", true)
	f("0", true)
	f("lobby", true)
	f("lobby:eu-1", true)
	f("a:b:c", true)
	f("A.b_c-d:9", true)
	f("x:", true)
	f("x-", true)
	f("9_", true)
	f(strings.Repeat("a", 64), true)
	f("a"+strings.Repeat(":._-", 15)+"abc", true) // 64 chars

	f("", false)
	f(strings.Repeat("a", 65), false)
	f(":lobby", false)
	f(".a", false)
	f("_a", false)
	f("-a", false)
	f(":", false)
	f("a b", false)
	f("a/b", false)
	f("a\x00", false)
	f("a\n", false)
	f("é", false)
	f("aé", false)
	f("a\xff", false)
	f("a*", false)
	f("lobby:*", false)
	f("a#b", false)
	f("a+b", false)
	f("a,b", false)
	f("a@b", false)
	f("a[b", false)
	f("a`b", false)
	f("a{b", false)
	f("a~", false)
	f("\x7f", false)
}

func TestNamespace(t *testing.T) {
	f := func(room, want string) {
		t.Helper()
		if got := proto.Namespace(room); got != want {
			t.Errorf("Namespace(%q) = %q, want %q", room, got, want)
		}
	}
	f("lobby:eu-1", "lobby")
	f("lobby", "lobby")
	f("a:b:c", "a")
	f("x:", "x")
	f(":x", "")
	f("", "")
	f("game.42:team-a", "game.42")
}
