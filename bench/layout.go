package bench

import (
	"fmt"
	"math"
)

// layout is the shape of a run: which room each connection joins, which
// connections publish, which are sampled or stall. Every process computes
// the same layout from the Config, and takes the connections i with
// i % procs == its index.
type layout struct {
	rooms   []string     // names, by room index
	pubs    []int        // publishers per room
	members []memberSpec // by global connection index
}

type memberSpec struct {
	room      int // index into layout.rooms; -1 means no room
	publisher bool
	sampled   bool
	stall     bool
}

// newLayout spreads cfg.Connections over the rooms (contiguous blocks),
// the publishers over the rooms in proportion to their size, and samples.
func newLayout(cfg *Config, prefix string) *layout {
	l := &layout{members: make([]memberSpec, cfg.Connections)}
	for i := range l.members {
		l.members[i].room = -1
	}
	if cfg.Rooms > 0 {
		sizes := roomSizes(cfg)
		l.pubs = apportion(max(cfg.Publishers, 0), sizes)
		l.place(prefix, sizes)
	}
	l.pick(cfg)
	return l
}

// place names the rooms and assigns each its block of members, the first
// l.pubs[r] of them publishing.
func (l *layout) place(prefix string, sizes []int) {
	l.rooms = make([]string, len(sizes))
	i := 0
	for r, n := range sizes {
		l.rooms[r] = fmt.Sprintf("%s%d", prefix, r)
		for k := 0; k < n; k++ {
			l.members[i] = memberSpec{room: r, publisher: k < l.pubs[r]}
			i++
		}
	}
}

// pick marks sampled and stalled members by a hash of their index, so the
// choice is spread evenly over rooms and processes.
func (l *layout) pick(cfg *Config) {
	sampled := 0
	for i := range l.members {
		m := &l.members[i]
		m.sampled = unit(cfg.Seed, uint64(i)) < cfg.Sample
		m.stall = !m.publisher && !m.sampled && m.room >= 0 && unit(cfg.Seed+7, uint64(i)) < cfg.Stall
		if m.sampled {
			sampled++
		}
	}
	if sampled == 0 && cfg.Sample > 0 && len(l.members) > 0 {
		l.members[0].sampled, l.members[0].stall = true, false
	}
}

// roomSizes returns the members of each room: an even split, or a Zipf law
// for the mixed scenario. Every room gets at least one member.
func roomSizes(cfg *Config) []int {
	w := make([]float64, cfg.Rooms)
	for r := range w {
		w[r] = 1
		if cfg.Scenario == Mixed {
			w[r] = 1 / math.Pow(float64(r+1), cfg.ZipfS)
		}
	}
	return apportionMin(cfg.Connections, w)
}

// apportionMin splits n into len(w) parts of at least 1, in proportion to w
// (largest remainder).
func apportionMin(n int, w []float64) []int {
	parts := largestRemainder(n-len(w), w)
	for i := range parts {
		parts[i]++
	}
	return parts
}

// apportion splits n publishers over rooms of the given sizes, in proportion
// to size, no room getting more than its size.
func apportion(n int, sizes []int) []int {
	w := make([]float64, len(sizes))
	for i, s := range sizes {
		w[i] = float64(s)
	}
	parts := largestRemainder(min(n, sum(sizes)), w)
	for i := range parts {
		parts[i] = min(parts[i], sizes[i]) // rounding never exceeds, this is a guard
	}
	return parts
}

func largestRemainder(n int, w []float64) []int {
	parts := make([]int, len(w))
	total := 0.0
	for _, x := range w {
		total += x
	}
	if n <= 0 || total == 0 {
		return parts
	}
	rem := make([]float64, len(w))
	given := 0
	for i, x := range w {
		exact := float64(n) * x / total
		parts[i] = int(exact)
		rem[i] = exact - float64(parts[i])
		given += parts[i]
	}
	for ; given < n; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		parts[best]++
		rem[best] = -1
	}
	return parts
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// unit maps (seed, i) to [0, 1) by splitmix64.
func unit(seed, i uint64) float64 {
	z := seed*0x9e3779b97f4a7c15 + i*0xbf58476d1ce4e5b9
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
