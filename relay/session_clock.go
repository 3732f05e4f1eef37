package relay

import (
	"math"
	"time"

	"github.com/roomcast/roomcast/ratelimit"
)

// clockBase is the origin of stamps.
var clockBase = time.Now()

// stamp is a time on the monotonic clock, as nanoseconds since clockBase:
// 8 bytes where a time.Time takes 24, for the times every session keeps.
type stamp int64

// stampOf returns the stamp of t (which must carry a monotonic reading, as
// time.Now and ticker times do).
func stampOf(t time.Time) stamp { return stamp(t.Sub(clockBase)) }

// time returns the stamp as a time.Time, with its monotonic reading.
func (st stamp) time() time.Time { return clockBase.Add(time.Duration(st)) }

// age returns how long before now the stamp is.
func (st stamp) age(now time.Time) time.Duration { return now.Sub(clockBase) - time.Duration(st) }

// stampBucket is ratelimit.Bucket with its time as a stamp: 16 bytes where
// the Bucket takes 32, for the join allowance every session keeps. Take
// does the same arithmetic as Bucket.Take (same float64 tokens, same
// durations on the monotonic clock; TestStampBucketIsBucket). The zero
// stampBucket starts full on its first Take. Single owner, no locking.
type stampBucket struct {
	tokens float64
	last   stamp // 0 before the first Take
}

// Take takes one token at time now, or returns false and how long until a
// token is there.
func (b *stampBucket) Take(lim ratelimit.Limits, now time.Time) (bool, time.Duration) {
	st := stampOf(now)
	if st == 0 {
		st = 1 // 0 means never taken
	}
	if b.last == 0 {
		b.tokens, b.last = float64(lim.Burst), st
	}
	if el := time.Duration(st - b.last); el > 0 {
		b.tokens += el.Seconds() * lim.Rate
		b.last = st
	}
	b.tokens = math.Min(float64(lim.Burst), b.tokens) // also when the burst was just lowered
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if lim.Rate <= 0 {
		return false, time.Duration(math.MaxInt64)
	}
	return false, time.Duration(math.Ceil((1 - b.tokens) / lim.Rate * float64(time.Second)))
}
