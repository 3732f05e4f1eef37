// Package ratelimit keeps per-key token buckets (one per user id, shared by
// all of that user's connections).
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

const numShards = 64

// Limits are a bucket's sustained rate (tokens per second) and size.
type Limits struct {
	Rate  float64
	Burst int
}

// Limiter holds token buckets by key. All methods are safe for concurrent use.
type Limiter struct {
	seed   maphash.Seed
	shards [numShards]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	Bucket
	lim Limits // the limits of the last Allow, for Sweep
}

// New returns an empty Limiter.
func New() *Limiter {
	l := &Limiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// Allow takes one token from key's bucket at time now. If the bucket is
// empty it returns false and how long until a token is there. A key's bucket
// starts full; lim applies from this call on.
func (l *Limiter) Allow(key string, lim Limits, now time.Time) (bool, time.Duration) {
	s := &l.shards[maphash.String(l.seed, key)%numShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		b = &bucket{Bucket: Bucket{tokens: float64(lim.Burst), last: now}}
		s.buckets[key] = b
	}
	b.lim = lim
	return b.Take(lim, now)
}

// Bucket is one token bucket with a single owner (no locking). The zero
// Bucket starts full on its first Take.
type Bucket struct {
	tokens float64
	last   time.Time
}

// Take takes one token at time now, or returns false and how long until a
// token is there.
func (b *Bucket) Take(lim Limits, now time.Time) (bool, time.Duration) {
	if b.last.IsZero() {
		b.tokens, b.last = float64(lim.Burst), now
	}
	b.refill(lim, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if lim.Rate <= 0 {
		return false, time.Duration(math.MaxInt64)
	}
	return false, time.Duration(math.Ceil((1 - b.tokens) / lim.Rate * float64(time.Second)))
}

// Full reports whether the bucket is full at time now (so forgetting it
// would change nothing: a new bucket starts full).
func (b *Bucket) Full(lim Limits, now time.Time) bool {
	b.refill(lim, now)
	return b.tokens >= float64(lim.Burst)
}

func (b *Bucket) refill(lim Limits, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Seconds() * lim.Rate
		b.last = now
	}
	b.tokens = math.Min(float64(lim.Burst), b.tokens) // also when the burst was just lowered
}

// Sweep drops the buckets that are full again at time now: forgetting them
// changes nothing, since a new bucket starts full. It returns how many are
// left.
func (l *Limiter) Sweep(now time.Time) int {
	left := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, b := range s.buckets {
			b.refill(b.lim, now)
			if b.tokens >= float64(b.lim.Burst) {
				delete(s.buckets, k)
			}
		}
		left += len(s.buckets)
		s.mu.Unlock()
	}
	return left
}
