package shard

import (
	"testing"
	"unsafe"
)

// TestMembershipSize keeps a member's entry in the 80-byte size class: every
// member of every room holds one (BENCHMARKS.md, memory per connection).
func TestMembershipSize(t *testing.T) {
	if n := unsafe.Sizeof(Membership{}); n > 80 {
		t.Errorf("Membership is %d bytes, want at most 80", n)
	}
}
