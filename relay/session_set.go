package relay

// sessionSet is every open connection of a loop: a slice, each session
// knowing its slot, where a map[*session]struct{} cost about 30 bytes per
// connection. Owned by the loop (OnOpen adds, OnClose removes, ticks and
// drains walk it with each).
type sessionSet []*session

// add puts s in the set.
func (set *sessionSet) add(s *session) {
	s.slot = int32(len(*set))
	*set = append(*set, s)
}

// remove takes s out of the set; the last session moves to its slot. After
// a wave of closes the backing array is given back once it is a quarter
// used.
func (set *sessionSet) remove(s *session) {
	a := *set
	i, last := int(s.slot), len(a)-1
	if i < 0 || i > last || a[i] != s {
		return // not in the set
	}
	a[i] = a[last]
	a[i].slot = int32(i)
	a[last] = nil
	a = a[:last]
	s.slot = -1
	if cap(a) > 64 && len(a) < cap(a)/4 {
		a = append(make(sessionSet, 0, 2*len(a)), a...)
	}
	*set = a
}

// each calls f for every session in the set. f may close its session (so
// that OnClose removes it): the walk goes from the end, so the session
// moved into its slot was already walked and none is skipped.
func (set *sessionSet) each(f func(*session)) {
	for i := len(*set) - 1; i >= 0; i-- {
		if i < len(*set) {
			f((*set)[i])
		}
	}
}
