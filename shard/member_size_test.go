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
