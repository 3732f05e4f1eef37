package shard

import (
	"testing"
	"unsafe"
)

// TestMembershipSize keeps a member's entry in the 64-byte size class: every
// member of every room holds one (BENCHMARKS.md, memory per connection).
func TestMembershipSize(t *testing.T) {
	if n := unsafe.Sizeof(Membership{}); n > 64 {
		t.Errorf("Membership is %d bytes, want at most 64", n)
	}
}
