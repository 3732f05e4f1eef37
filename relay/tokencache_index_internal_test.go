package relay

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestTokenIndex adds and removes keys at random, many sharing their home
// place, and checks the index against a map after every step.
func TestTokenIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ent := make([]tokenEntry, 300)
	for i := range ent {
		// Few homes, the first 4 places and the last 8: long probe runs,
		// wrapping the end into keys at home there.
		if i%2 == 0 {
			ent[i].key[0], ent[i].key[1] = byte(0xf8+rng.IntN(8)), 0xff
		} else {
			ent[i].key[0] = byte(rng.IntN(4))
		}
		ent[i].key[15] = byte(i)
		ent[i].key[14] = byte(i >> 8)
	}
	var x tokenIndex
	held := map[int32]bool{}
	for step := range 5000 {
		i := int32(rng.IntN(len(ent)))
		if held[i] {
			x.remove(ent[i].key, ent)
			delete(held, i)
		} else {
			x.add(ent[i].key, i, ent)
			held[i] = true
		}
		if x.n != len(held) {
			t.Fatalf("step %d: index holds %d, want %d", step, x.n, len(held))
		}
		if step%10 != 0 {
			continue
		}
		for j := range ent {
			got, ok := x.get(ent[j].key, ent)
			if ok != held[int32(j)] || (ok && got != int32(j)) {
				t.Fatalf("step %d: key %d: get %d %v, want held %v", step, j, got, ok, held[int32(j)])
			}
		}
	}
}

// TestTokenCacheTableSize fills the cache past its size: its entries take
// exactly tokenCacheSize places (no growth past the cap), the oldest token
// is evicted and the newest found.
func TestTokenCacheTableSize(t *testing.T) {
	c := newTokenCache()
	id := &identity{user: "u", grant: &grant{role: roleUser}}
	for i := range tokenCacheSize + 10 {
		c.put("token-"+strconv.Itoa(i), id)
	}
	if len(c.ent) != tokenCacheSize || cap(c.ent) != tokenCacheSize || c.len() != tokenCacheSize {
		t.Fatalf("entries: len %d cap %d, %d cached; want %d each", len(c.ent), cap(c.ent), c.len(), tokenCacheSize)
	}
	now := time.Now()
	if c.get("token-0", now) != nil || c.get("token-"+strconv.Itoa(tokenCacheSize+9), now) != id {
		t.Fatal("want the oldest token evicted and the newest cached")
	}
}
