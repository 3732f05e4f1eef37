package relay

import "github.com/roomcast/roomcast/shard"

// roomSet is the memberships of one session, in join order. A slice, not a
// map: most connections are in one room or a few (at most max_rooms), and a
// map costs about 250 bytes even for one entry. The room's own name string
// is the key, so a membership keeps no copy of it. Owned by the session's
// loop.
type roomSet []*shard.Membership

// get returns the membership of room name, or nil.
func (rs roomSet) get(name string) *shard.Membership {
	for _, ms := range rs {
		if ms.Room().Name() == name {
			return ms
		}
	}
	return nil
}

// addRoom records a new membership (of a room not in the set). The first
// room of a connection with none takes the session's own slot (room1), so
// a connection in one room holds no backing array; a second moves the set
// to the heap, and room1 is cleared so that it keeps no membership alive.
func (s *session) addRoom(ms *shard.Membership) {
	if len(s.rooms) == 0 {
		s.room1[0] = ms
		s.rooms = s.room1[:1:1]
		return
	}
	inline := &s.rooms[0] == &s.room1[0]
	s.rooms = append(s.rooms, ms)
	if inline {
		s.room1[0] = nil
	}
}

// remove drops the membership of room name, if any, and returns it. The
// order of the others may change. The slot it leaves is cleared (room1
// included).
func (rs *roomSet) remove(name string) *shard.Membership {
	s := *rs
	for i, ms := range s {
		if ms.Room().Name() == name {
			last := len(s) - 1
			s[i], s[last] = s[last], nil
			*rs = s[:last]
			if last == 0 {
				*rs = nil // an idle connection keeps no backing array
			}
			return ms
		}
	}
	return nil
}
