package relay

import (
	"strings"
	"testing"
)

// TestTokenKeyNoAlloc: hashing a token for the cache copies nothing (a
// token-sized piece of garbage per lookup, twice per handshake, otherwise).
func TestTokenKeyNoAlloc(t *testing.T) {
	tok := strings.Repeat("x", 300)
	var k tokenKey
	if n := testing.AllocsPerRun(100, func() { k = keyOf(tok) }); n != 0 {
		t.Errorf("keyOf: %.1f allocations, want 0", n)
	}
	if k != keyOf(strings.Repeat("x", 300)) || k == keyOf(strings.Repeat("x", 299)+"y") {
		t.Error("keyOf does not depend on the token's bytes alone")
	}
}
