package relay

import (
	"crypto/sha256"
	"sync"
	"time"
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
	idx  map[tokenKey]int32 // token's key -> slot in ent
	ent  []tokenEntry       // grows to tokenCacheSize, then slots are reused
	free []int32            // slots of dropped (expired) entries
	head int32              // most recently used; -1 when empty
	tail int32              // least recently used; -1 when empty
}

type tokenEntry struct {
	key        tokenKey
	id         *identity // read-only, shared with every connection the token admitted
	prev, next int32
}

// tokenKey identifies a token in the cache: the first half of its SHA-256.
type tokenKey [16]byte

func keyOf(tok string) (k tokenKey) {
	sum := sha256.Sum256([]byte(tok))
	copy(k[:], sum[:])
	return k
}

func newTokenCache() *tokenCache {
	return &tokenCache{idx: make(map[tokenKey]int32), head: -1, tail: -1}
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
	i, ok := c.idx[key]
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
	if i, ok := c.idx[key]; ok {
		c.ent[i].id = id
		c.unlink(i)
		c.pushFront(i)
		return
	}
	i := c.slot()
	c.ent[i] = tokenEntry{key: key, id: id}
	c.idx[key] = i
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
		c.ent = append(c.ent, tokenEntry{})
		return int32(len(c.ent) - 1)
	}
	i := c.tail
	c.unlink(i)
	delete(c.idx, c.ent[i].key)
	return i
}

// drop removes entry i (unlinked already).
func (c *tokenCache) drop(i int32) {
	delete(c.idx, c.ent[i].key)
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
	return len(c.idx)
}
