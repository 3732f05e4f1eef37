package relay

import "github.com/roomcast/roomcast/shard"

// roomSet is the memberships of one session: 16 bytes of every session.
// Not a map: most connections are in one room or a few (at most
// max_rooms), and a map costs about 250 bytes even for one entry. The
// first room is held inline, so a connection in one room allocates
// nothing for its set; the others are behind one pointer, made on a second
// room and dropped when the set is back to one. The room's own name string
// is the key, so a membership keeps no copy of it. Owned by the session's
// loop.
//
// It reads as one list in join order, [first, *more...], indexed by at;
// remove moves the last into the slot it empties, as a slice swap-remove
// does, so a walk from the end that removes as it goes sees each room once
// (OnClose, refresh).
type roomSet struct {
	first *shard.Membership    // nil when the set is empty
	more  *[]*shard.Membership // the rooms after the first; nil when none
}

// len returns how many rooms the set holds.
func (rs *roomSet) len() int {
	switch {
	case rs.first == nil:
		return 0
	case rs.more == nil:
		return 1
	}
	return 1 + len(*rs.more)
}

// at returns the i-th membership, 0 ≤ i < len.
func (rs *roomSet) at(i int) *shard.Membership {
	if i == 0 {
		return rs.first
	}
	return (*rs.more)[i-1]
}

// get returns the membership of room name, or nil.
func (rs *roomSet) get(name string) *shard.Membership {
	if rs.first == nil {
		return nil
	}
	if rs.first.Room().Name() == name {
		return rs.first
	}
	if rs.more != nil {
		for _, ms := range *rs.more {
			if ms.Room().Name() == name {
				return ms
			}
		}
	}
	return nil
}

// add records a new membership (of a room not in the set), last.
func (rs *roomSet) add(ms *shard.Membership) {
	switch {
	case rs.first == nil:
		rs.first = ms
	case rs.more == nil:
		rs.more = &[]*shard.Membership{ms}
	default:
		*rs.more = append(*rs.more, ms)
	}
}

// remove drops the membership of room name, if any, and returns it. The
// last room takes its place (see roomSet). The slot it leaves is cleared,
// and an idle connection keeps no backing array.
func (rs *roomSet) remove(name string) *shard.Membership {
	if rs.first == nil {
		return nil
	}
	if ms := rs.first; ms.Room().Name() == name {
		rs.first = rs.popMore()
		return ms
	}
	if rs.more == nil {
		return nil
	}
	m := *rs.more
	for i, ms := range m {
		if ms.Room().Name() == name {
			last := len(m) - 1
			m[i], m[last] = m[last], nil
			rs.setMore(m[:last])
			return ms
		}
	}
	return nil
}

// popMore removes and returns the last of the rooms after the first, or
// nil when there is none.
func (rs *roomSet) popMore() *shard.Membership {
	if rs.more == nil {
		return nil
	}
	m := *rs.more
	last := len(m) - 1
	ms := m[last]
	m[last] = nil
	rs.setMore(m[:last])
	return ms
}

// setMore stores the rooms after the first, dropping the list when empty.
func (rs *roomSet) setMore(m []*shard.Membership) {
	if len(m) == 0 {
		rs.more = nil
		return
	}
	*rs.more = m
}
