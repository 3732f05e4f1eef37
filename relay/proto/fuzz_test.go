package proto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roomcast/roomcast/relay/proto"
)

// commandFields are the keys a FieldError may name.
var commandFields = map[string]bool{"t": true, "ref": true, "room": true, "body": true, "meta": true,
	"since": true, "history": true, "action": true, "user": true, "secs": true, "seq": true}

// FuzzDecode feeds the same bytes to both formats, then every prefix of them
// (a frame cut short, as partial reads would hand it over). Seeds are in
// testdata/fuzz/FuzzDecode.
//
//	go test -run XXX -fuzz FuzzDecode -fuzztime 20s ./relay/proto/
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"t":"send","ref":1,"room":"r","body":"hi","meta":{"k":"v"},"since":1,"history":2,"action":"a","user":"u","secs":3,"seq":4}`))
	f.Add(mp(f, m{"t": "send", "ref": 1, "room": "r", "body": "hi", "meta": m{"k": "v"},
		"since": 1, "history": 2, "action": "a", "user": "u", "secs": 3, "seq": 4}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, format := range formats {
			d := proto.NewDecoder()
			var cmd proto.Command
			err := d.Decode(format, b, &cmd)
			checkDecoded(t, format, b, &cmd, err)
			if err == nil {
				reencode(t, d, format, &cmd)
			}
			checkReuse(t, format, b, &cmd, err)

			// Every prefix: no panic, a legal result, and a prefix of a
			// frame that decodes (even to a FieldError) cannot decode.
			whole := !errors.Is(err, proto.ErrMalformed)
			step := max(1, len(b)/256) // keep long inputs cheap
			for i := 0; i < len(b); i += step {
				var pc proto.Command
				// A fresh Decoder per prefix: a reused one grows without
				// bound on a huge length prefix (TestDecodeLengthBeyondInput).
				perr := proto.NewDecoder().Decode(format, b[:i], &pc)
				checkDecoded(t, format, b[:i], &pc, perr)
				cut := format == proto.Msgpack || len(bytes.TrimLeft(b[i:], " \t\r\n")) > 0
				if whole && cut && !errors.Is(perr, proto.ErrMalformed) {
					t.Errorf("%v: %q decodes (%v), but its prefix %q gives %v, want ErrMalformed", format, b, err, b[:i], perr)
				}
			}
		}
	})
}

// checkDecoded checks what any Decode call may return.
func checkDecoded(t *testing.T, format proto.Format, b []byte, cmd *proto.Command, err error) {
	t.Helper()
	var fe *proto.FieldError
	switch {
	case err == nil:
	case errors.Is(err, proto.ErrMalformed), errors.Is(err, proto.ErrInvalidUTF8):
		return
	case errors.As(err, &fe):
		if field, _, _ := strings.Cut(fe.Field, "."); !commandFields[field] || fe.Want == "" {
			t.Errorf("%v %q: FieldError %+v names no field of a command", format, b, fe)
		}
		return
	default:
		t.Fatalf("%v %q: unexpected error %T %v", format, b, err, err)
	}
	if cmd.T == "" {
		t.Errorf("%v %q: decoded without error, but t is empty", format, b)
	}
	if !utf8.ValidString(cmd.Body) {
		t.Errorf("%v %q: decoded without error, but body %q is not UTF-8", format, b, cmd.Body)
	}
	for k, v := range cmd.Meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Errorf("%v %q: decoded without error, but meta %q: %q is not UTF-8", format, b, k, v)
		}
	}
	if cmd.History < 0 || cmd.History > 1<<30 || !cmd.HasHistory && cmd.History != 0 {
		t.Errorf("%v %q: history %d (given: %v)", format, b, cmd.History, cmd.HasHistory)
	}
	if !cmd.HasSince && cmd.Since != 0 {
		t.Errorf("%v %q: since %d, but not given", format, b, cmd.Since)
	}
	if cmd.Secs < 0 || cmd.Secs > 1<<40 {
		t.Errorf("%v %q: secs %d", format, b, cmd.Secs)
	}
}

// cmdMap is cmd written back as a frame map.
func cmdMap(cmd *proto.Command) map[string]any {
	out := map[string]any{"t": cmd.T}
	for k, v := range map[string]string{"room": cmd.Room, "body": cmd.Body, "action": cmd.Action, "user": cmd.User} {
		if v != "" {
			out[k] = v
		}
	}
	for k, v := range map[string]uint64{"ref": cmd.Ref, "seq": cmd.Seq, "secs": uint64(cmd.Secs)} {
		if v != 0 {
			out[k] = v
		}
	}
	if cmd.Meta != nil {
		out["meta"] = cmd.Meta
	}
	if cmd.HasSince {
		out["since"] = cmd.Since
	}
	if cmd.HasHistory {
		out["history"] = cmd.History
	}
	return out
}

// sameCommand is reflect.DeepEqual, with an empty meta equal to none.
func sameCommand(a, b proto.Command) bool {
	if len(a.Meta) == 0 && len(b.Meta) == 0 {
		a.Meta, b.Meta = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// reencode writes a decoded command back as a map in its format and in the
// other one (when every string is UTF-8, which JSON needs), and expects the
// same command from decoding that.
func reencode(t *testing.T, d *proto.Decoder, format proto.Format, cmd *proto.Command) {
	t.Helper()
	utf8OK := utf8.ValidString(cmd.T) && utf8.ValidString(cmd.Room) && utf8.ValidString(cmd.Action) && utf8.ValidString(cmd.User)
	for _, f2 := range formats {
		if f2 == proto.JSON && !utf8OK {
			continue
		}
		var b []byte
		if f2 == proto.JSON {
			var err error
			if b, err = json.Marshal(cmdMap(cmd)); err != nil {
				t.Fatal(err)
			}
		} else {
			b = mp(t, cmdMap(cmd))
		}
		var again proto.Command
		if err := d.Decode(f2, b, &again); err != nil {
			t.Errorf("%v %+v, written as %v %q, does not decode: %v", format, *cmd, f2, b, err)
			continue
		}
		if !sameCommand(again, *cmd) {
			t.Errorf("%v %+v, written as %v %q, decodes as %+v", format, *cmd, f2, b, again)
		}
	}
}

// checkReuse decodes b with a Decoder and Command that just decoded other
// frames (a full one, a field error, a truncated one) and expects what a
// fresh Decoder gave.
func checkReuse(t *testing.T, format proto.Format, b []byte, want *proto.Command, wantErr error) {
	t.Helper()
	d := proto.NewDecoder()
	var cmd proto.Command
	for _, prev := range []struct {
		f proto.Format
		b string
	}{
		{proto.Msgpack, "\x8b\xa1t\xa4join\xa3ref\x09\xa4room\xa1r\xa4body\xa1b\xa4meta\x81\xa1k\xa1v\xa5since\x03\xa7history\x04\xa6action\xa1a\xa4user\xa1u\xa4secs\x05\xa3seq\x06"},
		{proto.Msgpack, "\x82\xa1t\xa1x\xa3ref\xa1x"},
		{proto.Msgpack, "\x82\xa1t\xa1x\xa3ref"},
		{proto.JSON, `{"t":"x","since":5,"history":6,"meta":{"a":"b"}}`},
	} {
		_ = d.Decode(prev.f, []byte(prev.b), &cmd)
	}
	err := d.Decode(format, b, &cmd)
	var fe1, fe2 *proto.FieldError
	switch {
	case errors.As(err, &fe1) && errors.As(wantErr, &fe2):
		if *fe1 != *fe2 {
			t.Errorf("%v %q: a used Decoder says %v, a fresh one %v", format, b, err, wantErr)
		}
	case err != wantErr:
		t.Errorf("%v %q: a used Decoder says %v, a fresh one %v", format, b, err, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(cmd, *want) {
		t.Errorf("%v %q: a used Decoder gives %+v, a fresh one %+v", format, b, cmd, *want)
	}
}
