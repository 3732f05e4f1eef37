package proto

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// joinedPlain is Joined without its EncodeMsgpack: reflection encodes it.
type joinedPlain Joined

// TestJoinedMsgpackAsReflection: Joined.EncodeMsgpack writes the bytes
// msgpack's reflection writes, for every combination of the omitempty
// fields and small and large numbers.
func TestJoinedMsgpackAsReflection(t *testing.T) {
	hist := []msgpack.RawMessage{{0x81, 0xa1, 'a', 0x01}, {0xc0}}
	var cases []Joined
	for _, ref := range []uint64{0, 7, 1 << 40} {
		for _, epoch := range []string{"", "e1"} {
			for _, members := range [][]Member{nil, {}, {{ID: "u1", Name: "One"}, {ID: "u2", Name: ""}}} {
				for _, h := range []any{[]msgpack.RawMessage{}, hist, nil} {
					cases = append(cases, Joined{T: TJoined, Ref: ref, Room: "lobby", Seq: ref * 3, Epoch: epoch,
						History: h, Gap: ref == 7, Count: int(ref % 100000), Members: members})
				}
			}
		}
	}
	cases = append(cases, Joined{T: TJoined, Room: "", Count: -1}, Joined{})
	enc := func(v any) []byte {
		var b bytes.Buffer
		e := msgpack.NewEncoder(&b)
		e.UseCompactInts(true)
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, j := range cases {
		got, want := enc(&j), enc((*joinedPlain)(&j))
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got % x\nwant % x", j, got, want)
		}
	}
	// And through the Encoder the relay uses.
	e := NewEncoder()
	j := cases[len(cases)/2]
	p, err := e.Payload(Msgpack, &j)
	if err != nil || !bytes.Equal(p, enc((*joinedPlain)(&j))) {
		t.Fatalf("Encoder.Payload: % x, %v", p, err)
	}
}
