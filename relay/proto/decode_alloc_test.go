package proto

import (
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
