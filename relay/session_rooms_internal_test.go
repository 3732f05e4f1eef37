package relay

import (
	"context"
	"testing"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

type inlineLoop struct{}

func (inlineLoop) Execute(r shard.Runnable) error { return r.Run(context.Background()) }

// TestRoomSetFirstRoomInline: a session's first room lives in its own slot
// (no backing array), a second moves the set to the heap and clears the
// slot, and leaving and joining again keeps get and remove right.
func TestRoomSetFirstRoomInline(t *testing.T) {
	hub := shard.NewHub(shard.Config{})
	s := &session{}
	join := func(name string) *shard.Membership {
		ms, _, err := hub.Join(name, &shard.JoinRequest{Loop: inlineLoop{}, Member: s, Format: proto.JSON, User: "u", Anon: true})
		if err != nil {
			t.Fatal(err)
		}
		s.addRoom(ms)
		return ms
	}
	a := join("a")
	if &s.rooms[0] != &s.room1[0] || s.rooms.get("a") != a {
		t.Fatal("first room not held in the session's slot")
	}
	b := join("b")
	if &s.rooms[0] == &s.room1[0] || s.room1[0] != nil || s.rooms.get("a") != a || s.rooms.get("b") != b {
		t.Fatalf("second room: set %v, slot %v", s.rooms, s.room1)
	}
	if s.rooms.remove("a") != a || s.rooms.get("a") != nil || s.rooms.remove("b") != b || s.rooms != nil {
		t.Fatalf("after leaving both: %v", s.rooms)
	}
	c := join("c")
	if &s.rooms[0] != &s.room1[0] || s.rooms.remove("c") != c || s.room1[0] != nil || s.rooms != nil {
		t.Fatalf("joined again and left: set %v, slot %v", s.rooms, s.room1)
	}
	for _, ms := range []*shard.Membership{a, b, c} {
		ms.Leave()
	}
}
