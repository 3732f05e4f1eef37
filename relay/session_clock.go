package relay

import "time"

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
