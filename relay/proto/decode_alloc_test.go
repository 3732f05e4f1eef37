package proto

import (
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Decoding a msgpack join allocates only its room's name: keys are matched
// in place and command types are the package's constants.
func TestDecodeJoinAllocs(t *testing.T) {
	b, err := msgpack.Marshal(map[string]any{"t": "join", "room": "lobby:main", "ref": 7, "history": 20})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder()
	var cmd Command
	allocs := testing.AllocsPerRun(100, func() {
		if err := d.Decode(Msgpack, b, &cmd); err != nil {
			t.Fatal(err)
		}
	})
	if cmd.T != TJoin || cmd.Room != "lobby:main" || cmd.Ref != 7 || !cmd.HasHistory || cmd.History != 20 {
		t.Fatalf("decoded %+v", cmd)
	}
	t.Logf("msgpack join: %v allocations", allocs)
	if allocs > 1 {
		t.Errorf("msgpack join: %v allocations, want at most 1 (the room's name)", allocs)
	}
}

// Decoding a JSON join allocates only its room's name.
func TestDecodeJSONJoinAllocs(t *testing.T) {
	b := []byte(`{"t":"join","room":"lobby:main","ref":7,"history":20}`)
	d := NewDecoder()
	var cmd Command
	allocs := testing.AllocsPerRun(100, func() {
		if err := d.Decode(JSON, b, &cmd); err != nil {
			t.Fatal(err)
		}
	})
	if cmd.T != TJoin || cmd.Room != "lobby:main" || cmd.Ref != 7 || !cmd.HasHistory || cmd.History != 20 {
		t.Fatalf("decoded %+v", cmd)
	}
	t.Logf("JSON join: %v allocations", allocs)
	if allocs > 1 {
		t.Errorf("JSON join: %v allocations, want at most 1 (the room's name)", allocs)
	}
}

// The JSON fast path decodes as encoding/json does: same command, same
// error, for plain frames and for those it leaves to the slow path.
var jsonFastCases = []string{
	`{}`, ` { "t" : "join" , "room" : "a" } `, `{"t":"send","room":"a","body":"hi","ref":1}`,
	`{"t":"join","t":"leave"}`, `{"t":"join","room":"a","since":0,"history":0}`, `{"t":"join","since":null}`,
	`{"t":"join","ref":1.0}`, `{"t":"join","ref":-1}`, `{"t":"join","ref":1e2}`, `{"t":"join","ref":18446744073709551616}`,
	`{"t":"join","ref":"1"}`, `{"t":1}`, `{"t":null,"room":null}`, `{"\u0074":"join"}`, `{"t":"jo\u0069n"}`,
	`{"t":"send","body":"a\"b","meta":{"k":"v"}}`, `{"t":"mod","action":"ban","user":"u","secs":99999999999999}`,
	`{"x":{"t":"no","y":[1,{"z":"}"}]},"t":"ping"}`, `{"t":"join","room":"é"}`, `{"T":"join"}`,
	`{"t":"join"} x`, `{"t":"join"`, `{"t":"send","body":"\ud800"}`, `{"t":"ping","seq":5,"epoch":"e","token":"k"}`,
	"{\"t\":\"send\",\"body\":\"\xff\"}",
}

func TestDecodeJSONFastAsSlow(t *testing.T) {
	for _, s := range jsonFastCases {
		var fast, slow Command
		errFast := decodeJSON([]byte(s), &fast)
		errSlow := decodeJSONSlow([]byte(s), &slow)
		if fmt.Sprint(errFast) != fmt.Sprint(errSlow) || fmt.Sprintf("%+v", fast) != fmt.Sprintf("%+v", slow) {
			t.Errorf("%s:\n fast %+v %v\n slow %+v %v", s, fast, errFast, slow, errSlow)
		}
	}
}

// FuzzDecodeJSONFastAsSlow: the in-place JSON decoder gives exactly what
// encoding/json gives, error text included, for any input
// (go test -fuzz FuzzDecodeJSONFastAsSlow ./relay/proto/).
func FuzzDecodeJSONFastAsSlow(f *testing.F) {
	for _, s := range jsonFastCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow Command
		errFast := decodeJSON(b, &fast)
		errSlow := decodeJSONSlow(b, &slow)
		if fmt.Sprint(errFast) != fmt.Sprint(errSlow) || fmt.Sprintf("%+v", fast) != fmt.Sprintf("%+v", slow) {
			t.Errorf("%q:\n fast %+v %v\n slow %+v %v", b, fast, errFast, slow, errSlow)
		}
	})
}
