package relay

import "testing"

// TestSessionSetWalkWhileRemoving: a walk reaches every session once even
// when sessions close (leave the set) as they are walked, and removing a
// session twice or one never added changes nothing.
func TestSessionSetWalkWhileRemoving(t *testing.T) {
	var set sessionSet
	all := make([]*session, 200)
	for i := range all {
		all[i] = &session{}
		set.add(all[i])
	}
	seen := map[*session]int{}
	n := 0
	set.each(func(s *session) {
		seen[s]++
		if n++; n%3 == 0 {
			set.remove(s) // as OnClose does when a write fails in tick
			set.remove(s)
		}
	})
	for i, s := range all {
		if seen[s] != 1 {
			t.Fatalf("session %d walked %d times", i, seen[s])
		}
	}
	set.remove(&session{slot: 3})
	if want := len(all) - len(all)/3; len(set) != want {
		t.Fatalf("%d sessions left, want %d", len(set), want)
	}
	for i, s := range set {
		if int(s.slot) != i {
			t.Fatalf("session in slot %d says %d", i, s.slot)
		}
	}
	for _, s := range all {
		set.remove(s)
	}
	if len(set) != 0 || cap(set) > 64 {
		t.Fatalf("emptied set: len %d cap %d", len(set), cap(set))
	}
}
