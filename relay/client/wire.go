package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

// out is a client frame. Pointers tell absent from zero.
type out struct {
	T       string            `msgpack:"t" json:"t"`
	Ref     uint64            `msgpack:"ref,omitempty" json:"ref,omitempty"`
	Room    string            `msgpack:"room,omitempty" json:"room,omitempty"`
	Since   *uint64           `msgpack:"since,omitempty" json:"since,omitempty"`
	Epoch   string            `msgpack:"epoch,omitempty" json:"epoch,omitempty"`
	History int               `msgpack:"history,omitempty" json:"history,omitempty"`
	Body    string            `msgpack:"body,omitempty" json:"body,omitempty"`
	Meta    map[string]string `msgpack:"meta,omitempty" json:"meta,omitempty"`
	Token   string            `msgpack:"token,omitempty" json:"token,omitempty"`
	Action  string            `msgpack:"action,omitempty" json:"action,omitempty"`
	User    string            `msgpack:"user,omitempty" json:"user,omitempty"`
	Secs    int64             `msgpack:"secs,omitempty" json:"secs,omitempty"`
	Seq     uint64            `msgpack:"seq,omitempty" json:"seq,omitempty"`
}

// in is any server frame; each type fills its own fields.
type in struct {
	T       string          `msgpack:"t" json:"t"`
	Ref     uint64          `msgpack:"ref" json:"ref"`
	Room    string          `msgpack:"room" json:"room"`
	Seq     uint64          `msgpack:"seq" json:"seq"`
	Epoch   string          `msgpack:"epoch" json:"epoch"`
	History []proto.Message `msgpack:"history" json:"history"`
	Msgs    []proto.Message `msgpack:"msgs" json:"msgs"`
	Gap     bool            `msgpack:"gap" json:"gap"`
	Count   int             `msgpack:"count" json:"count"`
	Members []proto.Member  `msgpack:"members" json:"members"`
	Joins   []proto.Member  `msgpack:"joins" json:"joins"`
	Leaves  []string        `msgpack:"leaves" json:"leaves"`
	Reason  string          `msgpack:"reason" json:"reason"`
	Code    string          `msgpack:"code" json:"code"`
	Message string          `msgpack:"message" json:"message"`
	RetryMS int64           `msgpack:"retry_ms" json:"retry_ms"`
	// hello
	V      int          `msgpack:"v" json:"v"`
	User   string       `msgpack:"user" json:"user"`
	Name   string       `msgpack:"name" json:"name"`
	Anon   bool         `msgpack:"anon" json:"anon"`
	Role   string       `msgpack:"role" json:"role"`
	Limits proto.Limits `msgpack:"limits" json:"limits"`
	Node   string       `msgpack:"node" json:"node"`
}

// Hello is what the relay said about this connection.
type Hello struct {
	User   string
	Name   string
	Anon   bool
	Role   string
	Limits proto.Limits
	Node   string
}

var errMalformed = errors.New("roomcast: server frame does not decode")

func encode(jsonFormat bool, f *out) ([]byte, error) {
	if jsonFormat {
		return json.Marshal(f)
	}
	return msgpack.Marshal(f)
}

// decode decodes one server frame. msgpack is walked by proto.SkipValues
// first: the library trusts declared lengths.
func decode(jsonFormat bool, b []byte, f *in) error {
	*f = in{}
	var err error
	if jsonFormat {
		err = json.Unmarshal(b, f)
	} else if proto.SkipValues(b, 0, 1) != len(b) {
		err = errMalformed
	} else {
		err = msgpack.Unmarshal(b, f)
	}
	if err != nil || f.T == "" {
		return errMalformed
	}
	return nil
}

func (f *in) err() *Error {
	return &Error{Code: f.Code, Message: f.Message, RetryMS: f.RetryMS, Room: f.Room}
}

// tokenExp reads exp from a JWT's payload without verifying it (the relay
// does); zero if the token has none or is not a JWT.
func tokenExp(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(c.Exp), 0)
}

// refreshDelay is how long after now to refresh a token expiring at exp:
// half of its remaining life before exp, at most 30 seconds before.
func refreshDelay(now, exp time.Time) time.Duration {
	left := exp.Sub(now)
	if left <= 0 {
		return 0
	}
	return left - min(left/2, 30*time.Second)
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
