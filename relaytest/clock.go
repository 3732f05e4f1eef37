package relaytest

import (
	"sync"
	"time"
)

// Clock is a fake clock for Config.Now fields (shard, relay), advanced by
// hand. Now and Advance are safe for concurrent use: the event loops call
// Now while the test's goroutine calls Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed instant (2027-01-15 08:00:00 UTC),
// so that tests do not depend on the wall clock.
func NewClock() *Clock { return &Clock{now: time.Unix(1_800_000_000, 0)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
