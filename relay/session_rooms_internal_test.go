package relay

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

type inlineLoop struct{}

func (inlineLoop) Execute(r shard.Runnable) error { return r.Run(context.Background()) }

// roomSetJoin joins s to room name on hub and records it in s's set.
func roomSetJoin(t *testing.T, hub *shard.Hub, s *session, name string) *shard.Membership {
	t.Helper()
	ms, _, err := hub.Join(name, &shard.JoinRequest{Loop: inlineLoop{}, Member: s, Format: proto.JSON, User: "u", Anon: true})
	if err != nil {
		t.Fatal(err)
	}
	s.rooms.add(ms)
	return ms
}

// TestRoomSetFirstRoomInline: a session's first room is held inline (no
// list), a second makes the list, and leaving back to one room or none
// drops it; get and remove stay right throughout.
func TestRoomSetFirstRoomInline(t *testing.T) {
	hub := shard.NewHub(shard.Config{})
	s := &session{}
	a := roomSetJoin(t, hub, s, "a")
	if s.rooms.first != a || s.rooms.more != nil || s.rooms.get("a") != a || s.rooms.len() != 1 {
		t.Fatalf("first room not held inline: %+v", s.rooms)
	}
	b := roomSetJoin(t, hub, s, "b")
	if s.rooms.more == nil || s.rooms.get("a") != a || s.rooms.get("b") != b || s.rooms.len() != 2 {
		t.Fatalf("second room: %+v", s.rooms)
	}
	if s.rooms.remove("a") != a || s.rooms.get("a") != nil || s.rooms.first != b || s.rooms.more != nil {
		t.Fatalf("after leaving the first: %+v", s.rooms)
	}
	if s.rooms.remove("b") != b || s.rooms != (roomSet{}) {
		t.Fatalf("after leaving both: %+v", s.rooms)
	}
	c := roomSetJoin(t, hub, s, "c")
	if s.rooms.first != c || s.rooms.remove("c") != c || s.rooms != (roomSet{}) {
		t.Fatalf("joined again and left: %+v", s.rooms)
	}
	for _, ms := range []*shard.Membership{a, b, c} {
		ms.Leave()
	}
}

// TestRoomSetIsSwapRemoveSlice: the set reads (len, at, get) as the slice
// it replaced, in which remove moves the last into the emptied slot, over
// random joins and leaves; no list is kept once it is back to one room.
func TestRoomSetIsSwapRemoveSlice(t *testing.T) {
	hub := shard.NewHub(shard.Config{})
	s := &session{}
	var want []*shard.Membership
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, 8)
	for i := range names {
		names[i] = "r" + strconv.Itoa(i)
	}
	for step := range 2000 {
		name := names[rng.IntN(len(names))]
		in := s.rooms.get(name)
		if in == nil {
			ms := roomSetJoin(t, hub, s, name)
			want = append(want, ms)
		} else {
			got := s.rooms.remove(name)
			if got != in {
				t.Fatalf("step %d: remove %s returned %p, want %p", step, name, got, in)
			}
			for i, ms := range want {
				if ms == in {
					last := len(want) - 1
					want[i], want = want[last], want[:last]
					break
				}
			}
			in.Leave()
		}
		if s.rooms.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, s.rooms.len(), len(want))
		}
		for i, ms := range want {
			if s.rooms.at(i) != ms || s.rooms.get(ms.Room().Name()) != ms {
				t.Fatalf("step %d: room %d differs", step, i)
			}
		}
		if len(want) <= 1 && s.rooms.more != nil {
			t.Fatalf("step %d: a list kept for %d rooms", step, len(want))
		}
		if s.rooms.remove("none") != nil {
			t.Fatalf("step %d: removed a room not in the set", step)
		}
	}
	for s.rooms.len() > 0 { // as OnClose walks it
		ms := s.rooms.at(s.rooms.len() - 1)
		if s.rooms.remove(ms.Room().Name()) != ms {
			t.Fatal("walk from the end: remove returned another membership")
		}
		ms.Leave()
	}
	if s.rooms != (roomSet{}) {
		t.Fatalf("after leaving all: %+v", s.rooms)
	}
}
