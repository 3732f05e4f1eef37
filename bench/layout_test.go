package bench

import (
	"testing"
)

func TestLayout(t *testing.T) {
	f := func(cfg Config, wantSizes []int, wantPubs int) {
		t.Helper()
		cfg.JWTSecret = "s"
		cfg = cfg.withDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		l := newLayout(&cfg, "r:")
		sizes := make([]int, len(l.rooms))
		pubs, sampled := 0, 0
		for _, m := range l.members {
			if m.room >= 0 {
				sizes[m.room]++
			}
			pubs += b2i(m.publisher)
			sampled += b2i(m.sampled)
		}
		for i := range wantSizes {
			if i >= len(sizes) || sizes[i] != wantSizes[i] {
				t.Errorf("%s: sizes %v, want %v...", cfg.Scenario, sizes[:min(len(sizes), 8)], wantSizes)
				break
			}
		}
		if sum(sizes) != cfg.Connections && cfg.Rooms > 0 || pubs != wantPubs || sampled == 0 {
			t.Errorf("%s: %d members in rooms, %d publishers (want %d), %d sampled", cfg.Scenario, sum(sizes), pubs, wantPubs, sampled)
		}
	}
	f(Config{Scenario: Lobby, Connections: 100}, []int{10, 10, 10}, 100)
	f(Config{Scenario: Stream, Connections: 1000}, []int{1000}, 10)
	f(Config{Scenario: Mixed, Connections: 1000, Rooms: 10, ZipfS: 1}, []int{339, 170, 114, 85}, 100)
	f(Config{Scenario: Storm, Connections: 1000}, []int{100, 100}, 10)
	f(Config{Scenario: Idle, Connections: 10}, nil, 0)
	f(Config{Scenario: Lobby, Connections: 7, Rooms: 3, Publishers: 2}, []int{3, 2, 2}, 2)
}

func TestApportion(t *testing.T) {
	got := apportion(5, []int{1, 1, 10})
	if sum(got) != 5 || got[0] > 1 || got[1] > 1 {
		t.Errorf("apportion(5, [1 1 10]) = %v", got)
	}
	if got := apportion(50, []int{2, 3}); sum(got) != 5 {
		t.Errorf("apportion(50, [2 3]) = %v, want all 5", got)
	}
}
