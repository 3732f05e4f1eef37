package relay

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/roomcast/roomcast/ratelimit"
)

// TestStampBucketIsBucket: the session's 16-byte join allowance answers
// every Take exactly as ratelimit.Bucket does, limits changing between
// calls included.
func TestStampBucketIsBucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lims := []ratelimit.Limits{{Rate: 2, Burst: 32}, {Rate: 0.5, Burst: 3}, {Rate: 0, Burst: 2}, {Rate: 100, Burst: 1}}
	now := time.Now()
	for trial := range 50 {
		var want ratelimit.Bucket
		var got stampBucket
		for i := range 200 {
			lim := lims[(trial+i/40)%len(lims)]
			now = now.Add(time.Duration(rng.Int64N(int64(800 * time.Millisecond))))
			wok, wwait := want.Take(lim, now)
			gok, gwait := got.Take(lim, now)
			if wok != gok || wwait != gwait {
				t.Fatalf("trial %d take %d (%+v): got %v %v, Bucket says %v %v", trial, i, lim, gok, gwait, wok, wwait)
			}
		}
	}
}
