package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Decode errors. ErrMalformed and ErrInvalidUTF8 close the connection (1007);
// a *FieldError is answered with bad_request and the connection stays.
var (
	ErrMalformed   = errors.New("proto: frame does not decode as one map")
	ErrInvalidUTF8 = errors.New("proto: string is not valid UTF-8")
)

// FieldError reports a field of the wrong type or value, or a missing "t".
type FieldError struct {
	Field string
	Want  string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %q must be %s", e.Field, e.Want)
}

// Decoder decodes client frames. It keeps scratch state between calls and
// must be used by one goroutine at a time (the relay keeps one per event loop).
type Decoder struct {
	r   bytes.Reader
	b   []byte // the msgpack frame being decoded (r reads it); nil between calls
	mp  *msgpack.Decoder
	bad *FieldError
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.mp = msgpack.NewDecoder(&d.r)
	return d
}

// Decode decodes one frame payload of format f into cmd (which it resets).
// Strings in cmd do not alias b.
func (d *Decoder) Decode(f Format, b []byte, cmd *Command) error {
	*cmd = Command{}
	var err error
	if f == JSON {
		err = decodeJSON(b, cmd)
	} else {
		err = d.decodeMsgpack(b, cmd)
	}
	if err != nil {
		return err
	}
	if !utf8.ValidString(cmd.Body) {
		return ErrInvalidUTF8
	}
	for k, v := range cmd.Meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return ErrInvalidUTF8
		}
	}
	if cmd.T == "" {
		return &FieldError{Field: "t", Want: "a non-empty string"}
	}
	return nil
}

func (d *Decoder) decodeMsgpack(b []byte, cmd *Command) error {
	// The library trusts declared lengths and grows its buffers toward
	// them; a 6-byte frame can claim 4 GiB. Check the structure first.
	if SkipValues(b, 0, 1) != len(b) {
		return ErrMalformed
	}
	d.r.Reset(b)
	d.mp.Reset(&d.r)
	d.b, d.bad = b, nil
	defer func() { d.b = nil }()
	n, err := d.mp.DecodeMapLen()
	if err != nil || n < 0 {
		return ErrMalformed
	}
	for i := 0; i < n; i++ {
		if err := d.field(cmd); err != nil {
			return ErrMalformed
		}
	}
	if d.r.Len() != 0 {
		return ErrMalformed
	}
	if d.bad != nil {
		return d.bad
	}
	return nil
}

// field decodes one key and its value. A value of the wrong type is skipped
// and remembered in d.bad; only undecodable bytes return an error.
func (d *Decoder) field(cmd *Command) error {
	c, err := d.mp.PeekCode()
	if err != nil {
		return err
	}
	if !isStr(c) {
		if err := d.mp.Skip(); err != nil {
			return err
		}
		return d.mp.Skip()
	}
	k, err := d.inPlace()
	if err != nil {
		return err
	}
	switch string(k) { // compared without a copy: keys never allocate
	case "t":
		return d.name("t", &cmd.T, commandTypes)
	case "room":
		return d.str("room", &cmd.Room)
	case "body":
		return d.str("body", &cmd.Body)
	case "action":
		return d.name("action", &cmd.Action, AllActions)
	case "user":
		return d.str("user", &cmd.User)
	case "epoch":
		return d.str("epoch", &cmd.Epoch)
	case "token":
		return d.str("token", &cmd.Token)
	case "ref":
		return d.uint("ref", &cmd.Ref, nil)
	case "seq":
		return d.uint("seq", &cmd.Seq, nil)
	case "since":
		return d.uint("since", &cmd.Since, &cmd.HasSince)
	case "history":
		var h uint64
		err := d.uint("history", &h, &cmd.HasHistory)
		cmd.History = int(min(h, 1<<30))
		return err
	case "secs":
		var s uint64
		err := d.uint("secs", &s, nil)
		cmd.Secs = int64(min(s, 1<<40))
		return err
	case "meta":
		return d.meta(cmd)
	}
	return d.mp.Skip()
}

func (d *Decoder) wrong(field, want string) error {
	if d.bad == nil {
		d.bad = &FieldError{Field: field, Want: want}
	}
	return d.mp.Skip()
}

// isString peeks at the next value: true for a string; false (and the
// value skipped) for nil, or for anything else after recording field as
// wrong.
func (d *Decoder) isString(field string) (bool, error) {
	c, err := d.mp.PeekCode()
	if err != nil {
		return false, err
	}
	if c == msgpcode.Nil {
		return false, d.mp.Skip()
	}
	if !isStr(c) {
		return false, d.wrong(field, "a string")
	}
	return true, nil
}

func (d *Decoder) str(field string, dst *string) error {
	ok, err := d.isString(field)
	if !ok {
		return err
	}
	*dst, err = d.mp.DecodeString()
	return err
}

// commandTypes are the client frame types, which name decodes without a
// copy.
var commandTypes = []string{TJoin, TLeave, TSend, TPing, TMod, TRefresh}

// inPlace reads a string (the code is a string's) and returns its bytes in
// the frame: valid until Decode returns, never kept.
func (d *Decoder) inPlace() ([]byte, error) {
	n, err := d.mp.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	off := len(d.b) - d.r.Len()
	if n < 0 || n > d.r.Len() {
		return nil, ErrMalformed
	}
	if _, err := d.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return d.b[off : off+n], nil
}

// name is str for a field whose usual values are known: one of them is
// taken from known rather than copied from the frame.
func (d *Decoder) name(field string, dst *string, known []string) error {
	ok, err := d.isString(field)
	if !ok {
		return err
	}
	v, err := d.inPlace()
	if err != nil {
		return err
	}
	for _, k := range known {
		if string(v) == k {
			*dst = k
			return nil
		}
	}
	*dst = string(v)
	return nil
}

func (d *Decoder) uint(field string, dst *uint64, has *bool) error {
	c, err := d.mp.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		return d.mp.Skip()
	}
	switch {
	case c == msgpcode.Uint64:
		*dst, err = d.mp.DecodeUint64()
	case msgpcode.IsFixedNum(c) || c >= msgpcode.Uint8 && c <= msgpcode.Int64:
		var v int64
		v, err = d.mp.DecodeInt64()
		if err == nil && v < 0 {
			d.bad = cmp(d.bad, &FieldError{Field: field, Want: "a non-negative integer"})
			return nil
		}
		*dst = uint64(v)
	default:
		return d.wrong(field, "a non-negative integer")
	}
	if err == nil && has != nil {
		*has = true
	}
	return err
}

func (d *Decoder) meta(cmd *Command) error {
	c, err := d.mp.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		return d.mp.Skip()
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return d.wrong("meta", "a map of string to string")
	}
	n, err := d.mp.DecodeMapLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var k, v string
		if err := d.str("meta", &k); err != nil {
			return err
		}
		if err := d.str("meta", &v); err != nil {
			return err
		}
		if cmd.Meta == nil {
			cmd.Meta = make(map[string]string, min(n, 16))
		}
		cmd.Meta[k] = v
	}
	return nil
}

func cmp(old, e *FieldError) *FieldError {
	if old != nil {
		return old
	}
	return e
}

func isStr(c byte) bool {
	return msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

// decodeJSON decodes a JSON object. Keys match exactly (encoding/json alone
// would match "Room" to room), and the text must be valid UTF-8 whatever the
// frame's opcode (encoding/json would replace bad bytes silently).
func decodeJSON(b []byte, cmd *Command) error {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return ErrMalformed
	}
	if json.Valid(b) && utf8.Valid(b) {
		if decodeJSONFast(b, cmd) {
			return nil
		}
		*cmd = Command{}
	}
	return decodeJSONSlow(b, cmd)
}

// decodeJSONSlow decodes b with encoding/json: any valid frame, and the
// errors of invalid ones.
func decodeJSONSlow(b []byte, cmd *Command) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return ErrMalformed
	}
	if !utf8.Valid(b) {
		return ErrInvalidUTF8
	}
	var bad *FieldError
	field := func(key string, dst any, want string) {
		v, ok := raw[key]
		if !ok || json.Unmarshal(v, dst) == nil {
			return
		}
		if bad == nil {
			bad = &FieldError{Field: key, Want: want}
		}
	}
	var since, history *jsonUint
	var ref, secs, seq jsonUint
	field("t", &cmd.T, "a string")
	field("ref", &ref, "a non-negative integer")
	field("room", &cmd.Room, "a string")
	field("body", &cmd.Body, "a string")
	field("meta", &cmd.Meta, "a map of string to string")
	field("since", &since, "a non-negative integer")
	field("history", &history, "a non-negative integer")
	field("action", &cmd.Action, "a string")
	field("user", &cmd.User, "a string")
	field("epoch", &cmd.Epoch, "a string")
	field("token", &cmd.Token, "a string")
	field("secs", &secs, "a non-negative integer")
	field("seq", &seq, "a non-negative integer")
	cmd.Ref, cmd.Seq, cmd.Secs = uint64(ref), uint64(seq), int64(min(secs, 1<<40))
	if since != nil {
		cmd.Since, cmd.HasSince = uint64(*since), true
	}
	if history != nil {
		cmd.History, cmd.HasHistory = int(min(*history, 1<<30)), true
	}
	if bad != nil {
		return bad // the other fields are decoded, so the reply can carry the ref
	}
	return nil
}

// jsonUint is a non-negative integer of a JSON frame. Some JSON encoders
// write every number as a float, so 1.0 and 1e2 are taken when integral;
// 1.5, -1 and numbers past 2^64 are not.
type jsonUint uint64

func (u *jsonUint) UnmarshalJSON(b []byte) error {
	var n uint64
	if err := json.Unmarshal(b, &n); err == nil {
		*u = jsonUint(n)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f < 0 || f != math.Trunc(f) || f >= 1<<64 {
		return errNotUint
	}
	*u = jsonUint(f)
	return nil
}

var errNotUint = errors.New("not a non-negative integer")
