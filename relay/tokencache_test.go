package relay

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relaytest"
)

func mintToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return relaytest.Sign(t, benchSecret, claims)
}

// TestTokenCacheHitIsShared: every connection of a cached token gets the
// same read-only identity (memory per connection), and an anonymous
// viewer's, which admission changes, is never shared.
func TestTokenCacheHitIsShared(t *testing.T) {
	a, err := newAuthenticator(&Config{JWTSecret: benchSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok := mintToken(t, jwt.MapClaims{"sub": "u1", "name": "One", "role": "mod", "exp": time.Now().Add(time.Hour).Unix()})
	first, err := a.identify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if a.cache.len() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", a.cache.len())
	}
	second, err := a.identify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if second != first || second.name != "One" || second.user != "u1" || second.role != roleMod {
		t.Fatalf("second identity %+v (same pointer %v)", second, second == first)
	}
	x, _ := a.identify("")
	y, _ := a.identify("")
	if x == y {
		t.Fatal("anonymous viewers share an identity")
	}
}

// TestTokenCacheExpiry: a cached token past its exp is refused exactly as
// an uncached one: errExpired within the parser's leeway, the parser's
// error past it; and it leaves the cache.
func TestTokenCacheExpiry(t *testing.T) {
	a, err := newAuthenticator(&Config{JWTSecret: benchSecret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := mintToken(t, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()})
	if _, err := a.identify(tok); err != nil {
		t.Fatal(err)
	}
	// Make the cached identity expire 1 s ago, then 1 min ago.
	for _, ago := range []time.Duration{time.Second, time.Minute} {
		if _, err := a.identify(tok); err != nil { // cached again
			t.Fatal(err)
		}
		i, _ := a.cache.idx.get(keyOf(tok), a.cache.ent)
		a.cache.ent[i].id.grant = &grant{role: roleUser, exp: time.Now().Add(-ago).UnixNano()}
		if id := a.cache.get(tok, time.Now()); id != nil {
			t.Fatalf("expired %v ago: cache answered %+v", ago, id)
		}
		if a.cache.len() != 0 {
			t.Fatalf("expired entry still cached")
		}
	}
	for _, c := range []struct {
		exp  time.Time
		want string
	}{
		{now.Add(-time.Second), errExpired.Error()},
		{now.Add(-time.Minute), "token is expired"},
	} {
		tok := mintToken(t, jwt.MapClaims{"sub": "u2", "exp": c.exp.Unix()})
		for range 2 { // neither time is it cached
			_, err := a.identify(tok)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("exp %v: err %v, want %q", c.exp, err, c.want)
			}
		}
	}
	if a.cache.len() != 0 {
		t.Fatalf("failed tokens cached: %d", a.cache.len())
	}
}

// TestTokenCacheBounded: the cache never holds more than tokenCacheSize
// tokens, evicts the least recently used, and skips long tokens.
func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache()
	id := &identity{user: "u", grant: &grant{role: roleUser}}
	now := time.Now()
	for i := range tokenCacheSize + 100 {
		c.put("tok"+strconv.Itoa(i), id)
		if i == tokenCacheSize-1 {
			c.get("tok0", now) // tok0 is used again: tok1 is now the oldest
		}
	}
	if c.len() != tokenCacheSize || len(c.ent) != tokenCacheSize {
		t.Fatalf("cache holds %d tokens in %d slots, want %d", c.len(), len(c.ent), tokenCacheSize)
	}
	if c.get("tok0", now) == nil {
		t.Fatal("recently used tok0 evicted")
	}
	for _, gone := range []string{"tok1", "tok50"} {
		if c.get(gone, now) != nil {
			t.Fatalf("%s not evicted", gone)
		}
	}
	if c.get("tok"+strconv.Itoa(tokenCacheSize+99), now) == nil {
		t.Fatal("newest token missing")
	}
	c.put(strings.Repeat("x", tokenCacheMax+1), id)
	if c.get(strings.Repeat("x", tokenCacheMax+1), now) != nil {
		t.Fatal("a token over tokenCacheMax was cached")
	}
	// The list and the index agree.
	n := 0
	for i := c.head; i >= 0; i = c.ent[i].next {
		if j, ok := c.idx.get(c.ent[i].key, c.ent); !ok || j != i {
			t.Fatalf("slot %d: index says %d", i, j)
		}
		n++
	}
	if n != c.len() {
		t.Fatalf("list holds %d, index %d", n, c.len())
	}
}

// A token that differs from a cached one in any byte is no hit: the key is
// a hash of the whole token, not of a part (its signature, say).
func TestTokenCacheWholeToken(t *testing.T) {
	c := newTokenCache()
	id := &identity{user: "u1", grant: &grant{role: roleUser}}
	tok := "aaaa.bbbb.cccc"
	c.put(tok, id)
	if c.get(tok, time.Now()) == nil {
		t.Fatal("cached token missed")
	}
	for _, other := range []string{"aaaa.bbbX.cccc", "Xaaa.bbbb.cccc", "aaaa.bbbb.cccX", "aaaa.bbbb.cccc "} {
		if got := c.get(other, time.Now()); got != nil {
			t.Fatalf("%q hit the entry of %q: %+v", other, tok, got)
		}
	}
}
