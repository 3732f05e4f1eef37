package ratelimit

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// take checks one Take on b at now: whether it passes and, if not, the
// exact wait it reports.
func take(t *testing.T, b *Bucket, lim Limits, now time.Time, wantOK bool, wantWait time.Duration) {
	t.Helper()
	ok, wait := b.Take(lim, now)
	if ok != wantOK || wait != wantWait {
		t.Fatalf("Take(%+v) at +%v = %v, %v; want %v, %v", lim, now.Sub(epoch(now)), ok, wait, wantOK, wantWait)
	}
}

// allow is take for a Limiter key.
func allow(t *testing.T, l *Limiter, key string, lim Limits, wantOK bool, wantWait time.Duration) {
	t.Helper()
	ok, wait := l.Allow(key, lim, time.Now())
	if ok != wantOK || wait != wantWait {
		t.Fatalf("Allow(%q, %+v) = %v, %v; want %v, %v", key, lim, ok, wait, wantOK, wantWait)
	}
}

// epoch is the start of a synctest bubble's clock (for readable failures).
func epoch(now time.Time) time.Time {
	return time.Date(2000, 1, 1, 0, 0, 0, 0, now.Location())
}

func TestBucketStartsFullThenRefusesExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := Limits{Rate: 2, Burst: 3}
		var b Bucket
		now := time.Now()
		for i := 0; i < 3; i++ {
			take(t, &b, lim, now, true, 0)
		}
		// Empty: one token comes after 1/rate.
		take(t, &b, lim, now, false, 500*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		take(t, &b, lim, time.Now(), false, 300*time.Millisecond)
		time.Sleep(300*time.Millisecond - 1)
		take(t, &b, lim, time.Now(), false, 1)
		time.Sleep(1)
		take(t, &b, lim, time.Now(), true, 0)
		take(t, &b, lim, time.Now(), false, 500*time.Millisecond)
	})
}

func TestBucketRefillsAtRateNeverAboveBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := Limits{Rate: 10, Burst: 5}
		var b Bucket
		drain := func() int {
			n := 0
			for {
				if ok, _ := b.Take(lim, time.Now()); !ok {
					return n
				}
				n++
			}
		}
		if n := drain(); n != 5 {
			t.Fatalf("a new bucket gave %d tokens, want the burst 5", n)
		}
		time.Sleep(300 * time.Millisecond) // 3 tokens at 10/s
		if n := drain(); n != 3 {
			t.Fatalf("after 300ms at 10/s: %d tokens, want 3", n)
		}
		time.Sleep(time.Hour) // far more than the burst
		if n := drain(); n != 5 {
			t.Fatalf("after an hour: %d tokens, want the burst 5", n)
		}
	})
}

// TestBucketWaitIsExact checks that the wait reported for simple rates is
// exact to the nanosecond, and that a Take after exactly that wait passes
// while one a nanosecond earlier does not.
func TestBucketWaitIsExact(t *testing.T) {
	f := func(lim Limits, want time.Duration) {
		t.Helper()
		synctest.Test(t, func(t *testing.T) {
			var b Bucket
			for i := 0; i < lim.Burst; i++ {
				take(t, &b, lim, time.Now(), true, 0)
			}
			take(t, &b, lim, time.Now(), false, want)
			time.Sleep(want - 1)
			early := b // a copy: its refill leaves b as it was
			if ok, _ := early.Take(lim, time.Now()); ok {
				t.Fatalf("%+v: a token 1ns before the reported wait %v", lim, want)
			}
			time.Sleep(1)
			take(t, &b, lim, time.Now(), true, 0)
		})
	}
	f(Limits{Rate: 1, Burst: 1}, time.Second)
	f(Limits{Rate: 2, Burst: 1}, 500*time.Millisecond)
	f(Limits{Rate: 4, Burst: 7}, 250*time.Millisecond)
	f(Limits{Rate: 1000, Burst: 10}, time.Millisecond)
	f(Limits{Rate: 0.5, Burst: 3}, 2*time.Second)
	f(Limits{Rate: 0.001, Burst: 2}, 1000*time.Second)
	f(Limits{Rate: 1e9, Burst: 1}, 1)
	// 1/3 s is not a whole number of nanoseconds: the wait rounds up.
	f(Limits{Rate: 3, Burst: 1}, 333333334)
}

// TestBucketWaitIsEnough takes tokens at awkward rates and times, and
// checks that every reported wait is enough: a Take after exactly the wait
// passes.
func TestBucketWaitIsEnough(t *testing.T) {
	rates := []float64{0.1, 0.3, 2.0 / 3, 20.0 / 30, 100.0 / 30, 7, 13.7, 1e3 / 7, 12345.678}
	for _, r := range rates {
		lim := Limits{Rate: r, Burst: 2}
		var b Bucket
		now := time.Unix(1700000000, 0)
		step := time.Duration(float64(time.Second) / r / 3.7)
		for i := 0; i < 200; i++ {
			ok, wait := b.Take(lim, now)
			if ok {
				now = now.Add(step)
				continue
			}
			if wait <= 0 || wait > time.Duration(math.Ceil(float64(time.Second)/r)) {
				t.Fatalf("rate %v: wait %v out of (0, 1/rate]", r, wait)
			}
			now = now.Add(wait)
			if ok, again := b.Take(lim, now); !ok {
				t.Fatalf("rate %v, take %d: refused again %v after waiting the reported %v", r, i, again, wait)
			}
		}
	}
}

func TestBucketZeroRate(t *testing.T) {
	lim := Limits{Rate: 0, Burst: 1}
	var b Bucket
	now := time.Unix(1, 0)
	take(t, &b, lim, now, true, 0)
	take(t, &b, lim, now.Add(time.Hour), false, time.Duration(math.MaxInt64))
}

func TestBucketClockBackwards(t *testing.T) {
	lim := Limits{Rate: 1, Burst: 1}
	var b Bucket
	now := time.Unix(100, 0)
	take(t, &b, lim, now, true, 0)
	// An earlier time refills nothing and does not move the bucket back.
	take(t, &b, lim, now.Add(-time.Hour), false, time.Second)
	take(t, &b, lim, now.Add(time.Second), true, 0)
}

func TestLimiterAllow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		lim := Limits{Rate: 2, Burst: 2}
		allow(t, l, "a", lim, true, 0)
		allow(t, l, "a", lim, true, 0)
		allow(t, l, "a", lim, false, 500*time.Millisecond)
		// Keys are independent, and a new key starts full.
		allow(t, l, "b", lim, true, 0)
		allow(t, l, "b", lim, true, 0)
		allow(t, l, "b", lim, false, 500*time.Millisecond)
		time.Sleep(250 * time.Millisecond)
		allow(t, l, "a", lim, false, 250*time.Millisecond)
		time.Sleep(250 * time.Millisecond)
		allow(t, l, "a", lim, true, 0)
		allow(t, l, "b", lim, true, 0)
		allow(t, l, "a", lim, false, 500*time.Millisecond)
	})
}

// TestLimiterLimitsChange checks that new Limits apply from the call that
// passes them.
func TestLimiterLimitsChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		slow, fast := Limits{Rate: 1, Burst: 1}, Limits{Rate: 10, Burst: 1}
		allow(t, l, "k", slow, true, 0)
		allow(t, l, "k", slow, false, time.Second)
		// The same empty bucket, at a faster rate: a token in 100ms.
		allow(t, l, "k", fast, false, 100*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		allow(t, l, "k", fast, true, 0)

		// A bigger burst lets the bucket fill further.
		big := Limits{Rate: 10, Burst: 5}
		time.Sleep(time.Second)
		for i := 0; i < 5; i++ {
			allow(t, l, "k", big, true, 0)
		}
		allow(t, l, "k", big, false, 100*time.Millisecond)

		// A smaller burst caps what the bucket holds.
		time.Sleep(time.Second) // full: 5 tokens
		small := Limits{Rate: 10, Burst: 2}
		time.Sleep(time.Nanosecond)
		allow(t, l, "k", small, true, 0)
		allow(t, l, "k", small, true, 0)
		if ok, _ := l.Allow("k", small, time.Now()); ok {
			t.Fatal("a bucket of burst 2 gave a third token at once")
		}
	})
}

// TestLimiterBurstCutAtSameInstant lowers the burst in a call made at the
// same instant as the bucket's last update: the bucket is capped at once.
func TestLimiterBurstCutAtSameInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		allow(t, l, "k", Limits{Rate: 1, Burst: 10}, true, 0) // 9 left
		small := Limits{Rate: 1, Burst: 2}
		n := 0
		for {
			if ok, _ := l.Allow("k", small, time.Now()); !ok {
				break
			}
			n++
		}
		if n > 2 {
			t.Fatalf("burst 2 gave %d tokens at once", n)
		}
	})
}

func TestSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		lim := Limits{Rate: 1, Burst: 4}
		if n := l.Sweep(time.Now()); n != 0 {
			t.Fatalf("empty limiter: Sweep = %d", n)
		}
		// full: one Allow leaves 3 of 4, full again after 1s.
		// half: drained, full after 4s. slow: its own slower limits.
		allow(t, l, "full", lim, true, 0)
		for i := 0; i < 4; i++ {
			allow(t, l, "half", lim, true, 0)
		}
		allow(t, l, "slow", Limits{Rate: 0.1, Burst: 1}, true, 0)
		if n := l.Sweep(time.Now()); n != 3 {
			t.Fatalf("Sweep = %d, want 3 (all partly drained)", n)
		}
		time.Sleep(time.Second)
		if n := l.Sweep(time.Now()); n != 2 {
			t.Fatalf("after 1s Sweep = %d, want 2", n)
		}
		// The swept key starts full again; nothing was lost by forgetting it.
		for i := 0; i < 4; i++ {
			allow(t, l, "full", lim, true, 0)
		}
		allow(t, l, "full", lim, false, time.Second)
		// half has 1 token of 4 after 1s: Sweep must not have reset it.
		allow(t, l, "half", lim, true, 0)
		allow(t, l, "half", lim, false, time.Second)
		time.Sleep(10 * time.Second)
		if n := l.Sweep(time.Now()); n != 0 {
			t.Fatalf("after 11s Sweep = %d, want 0", n)
		}
	})
}

func TestSweepManyKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New()
	lim := Limits{Rate: 1, Burst: 2}
	for i := 0; i < 1000; i++ {
		l.Allow(strconv.Itoa(i), lim, now)
		if i%2 == 0 {
			l.Allow(strconv.Itoa(i), lim, now) // drained
		}
	}
	// After 1s the odd keys are full again, the even ones are not.
	if n := l.Sweep(now.Add(time.Second)); n != 500 {
		t.Fatalf("Sweep = %d, want 500", n)
	}
	if n := l.Sweep(now.Add(2 * time.Second)); n != 0 {
		t.Fatalf("Sweep = %d, want 0", n)
	}
}

// TestConcurrentOneKeyFixedTime: at one instant, however many goroutines
// ask, exactly burst tokens are given.
func TestConcurrentOneKeyFixedTime(t *testing.T) {
	l := New()
	lim := Limits{Rate: 1, Burst: 100}
	now := time.Unix(5000, 0)
	var got atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if ok, _ := l.Allow("k", lim, now); ok {
					got.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got.Load() != 100 {
		t.Fatalf("%d tokens given at one instant, want the burst 100", got.Load())
	}
}

// TestConcurrentOneKeyRealClock: goroutines hammering one key on the real
// clock never get more than burst + rate*elapsed.
func TestConcurrentOneKeyRealClock(t *testing.T) {
	l := New()
	lim := Limits{Rate: 500, Burst: 50}
	var got atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(100 * time.Millisecond)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if ok, _ := l.Allow("k", lim, time.Now()); ok {
					got.Add(1)
				}
				// Other keys in the same and other shards at the same time.
				l.Allow(fmt.Sprint("other", g), lim, time.Now())
			}
		}(g)
	}
	wg.Wait()
	el := time.Since(start)
	limit := float64(lim.Burst) + lim.Rate*el.Seconds()
	if n := float64(got.Load()); n > limit+1e-9 || n < float64(lim.Burst) {
		t.Fatalf("%v tokens in %v, want between the burst %d and %v", n, el, lim.Burst, limit)
	}
}

func TestAllowAllocs(t *testing.T) {
	l := New()
	lim := Limits{Rate: 1e9, Burst: 1 << 30}
	now := time.Unix(1, 0)
	l.Allow("user-42", lim, now)
	key := "user-42"
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		l.Allow(key, lim, now)
	}); n != 0 {
		t.Fatalf("Allow on an existing key: %v allocs, want 0", n)
	}
	var b Bucket
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		b.Take(lim, now)
	}); n != 0 {
		t.Fatalf("Bucket.Take: %v allocs, want 0", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New()
	lim := Limits{Rate: 1e9, Burst: 1 << 30}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	now := time.Now()
	for _, k := range keys {
		l.Allow(k, lim, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919)) // each goroutine starts elsewhere
		for pb.Next() {
			l.Allow(keys[i%len(keys)], lim, time.Now())
			i++
		}
	})
}

func BenchmarkAllowOneKey(b *testing.B) {
	l := New()
	lim := Limits{Rate: 1e9, Burst: 1 << 30}
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.Allow("one", lim, time.Now())
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow("one", lim, time.Now())
			}
		})
	})
}
