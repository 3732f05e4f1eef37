package relay

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
	"unsafe"
)

// Verified tokens are remembered so that a reconnect storm, which presents
// the same tokens again, skips the JWT parse and signature check (about
// 50 allocations and 10 µs each). The cache is keyed by the first 16 bytes
// of the SHA-256 of the whole token (finding another token with the key of
// a cached one is a 2^128 second preimage), so an entry holds 16 bytes of
// key rather than the token (a few hundred bytes per user), and a hit is a
// token byte for byte equal to one that passed with the same keys. Only
// the time-dependent claims can change its verdict: nbf and iat only ever
// turn from failing to passing, and exp is checked on every hit (an expired
// entry is dropped and the token parsed again, so its error is the
// parser's). Failed tokens are never cached.
const (
	tokenCacheSize = 16384 // entries; a storm of this many distinct users hits
	tokenCacheMax  = 4096  // bytes; longer tokens are not cached (not worth hashing)
)

// tokenCache is a bounded LRU of verified tokens. Any loop calls get and
// put (the upgrade, /sse admission and refresh); mu guards everything.
type tokenCache struct {
	mu   sync.Mutex
	idx  tokenIndex   // token's key -> slot in ent
	ent  []tokenEntry // grows to tokenCacheSize, then slots are reused
	free []int32      // slots of dropped (expired) entries
	head int32        // most recently used; -1 when empty
	tail int32        // least recently used; -1 when empty
}

type tokenEntry struct {
	key        tokenKey
	id         *identity // read-only, shared with every connection the token admitted
	prev, next int32
}

// tokenKey identifies a token in the cache: the first half of its SHA-256.
type tokenKey [16]byte

// The token's bytes are hashed where they are (Sum256 only reads them):
// a copy would be a token-sized piece of garbage per lookup.
func keyOf(tok string) (k tokenKey) {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(tok), len(tok)))
	copy(k[:], sum[:])
	return k
}

func newTokenCache() *tokenCache {
	return &tokenCache{head: -1, tail: -1}
}

// get returns the identity of a verified token, or nil if the token is not
// cached or its identity has expired at now (then it is dropped). The
// identity is the cache's, shared by every connection of the token: never
// change it (refresh makes a new one when it must).
func (c *tokenCache) get(tok string, now time.Time) *identity {
	if len(tok) > tokenCacheMax {
		return nil
	}
	key := keyOf(tok)
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.idx.get(key, c.ent)
	if !ok {
		return nil
	}
	e := &c.ent[i]
	if e.id.expired(now) {
		c.unlink(i)
		c.drop(i)
		return nil
	}
	c.unlink(i)
	c.pushFront(i)
	return e.id
}

// put remembers the identity of a token that just passed verification.
// The cache keeps id itself: its caller must not change it after.
func (c *tokenCache) put(tok string, id *identity) {
	if len(tok) > tokenCacheMax {
		return
	}
	key := keyOf(tok)
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.idx.get(key, c.ent); ok {
		c.ent[i].id = id
		c.unlink(i)
		c.pushFront(i)
		return
	}
	i := c.slot()
	c.ent[i] = tokenEntry{key: key, id: id}
	c.idx.add(key, i, c.ent)
	c.pushFront(i)
}

// slot returns an unused entry: a freed one, a new one, or the least
// recently used, evicted.
func (c *tokenCache) slot() int32 {
	if n := len(c.free); n > 0 {
		i := c.free[n-1]
		c.free = c.free[:n-1]
		return i
	}
	if len(c.ent) < tokenCacheSize {
		if len(c.ent) == cap(c.ent) {
			// Doubled up to the cap exactly: append would grow a full
			// table past tokenCacheSize by up to a quarter, never used.
			ent := make([]tokenEntry, len(c.ent), min(max(64, 2*cap(c.ent)), tokenCacheSize))
			copy(ent, c.ent)
			c.ent = ent
		}
		c.ent = append(c.ent, tokenEntry{})
		return int32(len(c.ent) - 1)
	}
	i := c.tail
	c.unlink(i)
	c.idx.remove(c.ent[i].key, c.ent)
	return i
}

// drop removes entry i (unlinked already).
func (c *tokenCache) drop(i int32) {
	c.idx.remove(c.ent[i].key, c.ent)
	c.ent[i] = tokenEntry{}
	c.free = append(c.free, i)
}

// unlink takes entry i out of the recency list.
func (c *tokenCache) unlink(i int32) {
	e := &c.ent[i]
	if e.prev >= 0 {
		c.ent[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next >= 0 {
		c.ent[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

// pushFront makes entry i the most recently used.
func (c *tokenCache) pushFront(i int32) {
	e := &c.ent[i]
	e.prev, e.next = -1, c.head
	if c.head >= 0 {
		c.ent[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

// len is the number of cached tokens.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idx.n
}

// tokenIndex finds a key's entry: an open-addressing table of entry slots
// (linear probing, at most half full), 4 to 8 bytes per cached token where
// a map takes about 35 (BENCHMARKS.md, memory per connection). The keys
// are hashes already, so their first 8 bytes place them. Owned by its
// tokenCache (under its mu); every method takes the cache's entries.
type tokenIndex struct {
	tab []int32 // entry slot + 1; 0 is empty. Its length is a power of two
	n   int     // keys held
}

func (x *tokenIndex) home(k tokenKey) int {
	return int(binary.LittleEndian.Uint64(k[:8]) & uint64(len(x.tab)-1))
}

// find returns where k is in tab, or the empty place where it would go.
func (x *tokenIndex) find(k tokenKey, ent []tokenEntry) (int, bool) {
	p := x.home(k)
	for x.tab[p] != 0 {
		if ent[x.tab[p]-1].key == k {
			return p, true
		}
		p = (p + 1) & (len(x.tab) - 1)
	}
	return p, false
}

// get returns the entry slot of k.
func (x *tokenIndex) get(k tokenKey, ent []tokenEntry) (int32, bool) {
	if x.n == 0 {
		return 0, false
	}
	p, ok := x.find(k, ent)
	return x.tab[p] - 1, ok
}

// add indexes k (not held) at entry slot i; ent[i].key is k.
func (x *tokenIndex) add(k tokenKey, i int32, ent []tokenEntry) {
	if 2*(x.n+1) > len(x.tab) {
		x.grow(ent)
	}
	p, _ := x.find(k, ent)
	x.tab[p] = i + 1
	x.n++
}

// grow doubles the table (the first is 64 places) and places every key
// again.
func (x *tokenIndex) grow(ent []tokenEntry) {
	old := x.tab
	x.tab = make([]int32, max(64, 2*len(old)))
	for _, v := range old {
		if v != 0 {
			p, _ := x.find(ent[v-1].key, ent)
			x.tab[p] = v
		}
	}
}

// remove drops k, if held (backward-shift deletion: no tombstones).
func (x *tokenIndex) remove(k tokenKey, ent []tokenEntry) {
	if x.n == 0 {
		return
	}
	p, ok := x.find(k, ent)
	if !ok {
		return
	}
	mask := len(x.tab) - 1
	x.tab[p] = 0
	x.n--
	for j := (p + 1) & mask; x.tab[j] != 0; j = (j + 1) & mask {
		if mayFill(p, j, x.home(ent[x.tab[j]-1].key)) {
			x.tab[p], x.tab[j] = x.tab[j], 0
			p = j
		}
	}
}

// mayFill reports whether, in a linear-probing table, the key at j whose
// home is h may move to the hole at p: unless its home lies cyclically in
// (p, j]. Backward-shift deletion (tokenIndex, userIndex) moves such keys.
func mayFill(p, j, h int) bool {
	return (j > p && (h <= p || h > j)) || (j < p && h <= p && h > j)
}
