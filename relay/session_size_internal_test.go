package relay

import (
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestSessionSize keeps the per-connection struct in the 128-byte size
// class: every idle connection holds one (BENCHMARKS.md, memory per
// connection), and the next class is 160 bytes, 32 more per connection.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 128 {
		t.Errorf("session is %d bytes, want at most 128 (the 128-byte size class; the next is 160): move rarely used fields to sessionCold, derive what can be derived", n)
	}
}

// TestIdentitySize keeps a connection's own part of its identity to the user
// id and one pointer to the token's shared grant (auth.go).
func TestIdentitySize(t *testing.T) {
	if n := unsafe.Sizeof(identity{}); n > 24 {
		t.Errorf("identity is %d bytes, want at most 24: put what the token grants in grant", n)
	}
}

// TestGrantSize keeps a token's identity and grant, allocated together
// (auth.go tokenIdentity), in the 64-byte size class: with a token per user
// each connection has its own. The role is a byte (roleID).
func TestGrantSize(t *testing.T) {
	if n := unsafe.Sizeof(tokenIdentity{}); n > 64 {
		t.Errorf("tokenIdentity is %d bytes, want at most 64: put what few tokens have in grantLists", n)
	}
}

// TestIdentitySlab: every identity taken is distinct, and every string
// holds its user and name, across chunks and for long ones.
func TestIdentitySlab(t *testing.T) {
	var s identitySlab
	seen := map[*tokenIdentity]bool{}
	var strs []string
	var want []string
	for i := range 3 * slabIdentities {
		user, name := "u"+strconv.Itoa(i), strings.Repeat("n", i*7%(2*slabMaxString))
		id, str := s.take(user, name)
		if seen[id] {
			t.Fatalf("identity %d handed out twice", i)
		}
		seen[id] = true
		strs, want = append(strs, str), append(want, user+name)
	}
	for i := range strs { // none was overwritten by a later take
		if strs[i] != want[i] {
			t.Fatalf("string %d is %q, want %q", i, strs[i], want[i])
		}
	}
}
