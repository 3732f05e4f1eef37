package shard

import (
	"testing"
	"unsafe"
)

// TestMembershipSize keeps a member's entry in the 48-byte size class: every
// member of every room holds one (BENCHMARKS.md, memory per connection).
// The user id it joined under is not in it (UserMember, Room.userOf).
func TestMembershipSize(t *testing.T) {
	if n := unsafe.Sizeof(Membership{}); n > 48 {
		t.Errorf("Membership is %d bytes, want at most 48", n)
	}
}

// TestRoomSize keeps a room in the 512-byte size class (1 152 before issue
// 13 part 1's cut: its flight is a pointer, made while the room is busy,
// its flags share a word, its window times are 8-byte stamps) and a
// loop's part of it in the 64-byte class:
// every room holds one, and one part per loop it has members on. A room
// of one is a common pattern (private lobbies, per-user channels).
func TestRoomSize(t *testing.T) {
	if n := unsafe.Sizeof(Room{}); n > 512 {
		t.Errorf("Room is %d bytes, want at most 512 (the next size class is 576)", n)
	}
	if n := unsafe.Sizeof(loopRoom{}); n > 64 {
		t.Errorf("loopRoom is %d bytes, want at most 64", n)
	}
	if n := unsafe.Sizeof(roomUser{}); n != 32 {
		t.Errorf("roomUser is %d bytes, want 32", n)
	}
}
