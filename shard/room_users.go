package shard

// roomUsers is a room's index of the users with connections in it on this
// node (not anonymous viewers), by id: their display names and how many
// connections each has. Guarded by the room's mu (every method).
//
// Most users have one connection in a room, so the main map holds only the
// name (a 32-byte map slot rather than 40 with a count beside it), and a
// user's further connections are counted in more, made on first use
// (relay/proto/PROTOCOL.md, "Memory per connection").
type roomUsers struct {
	names map[string]string // id -> display name (the identity's string, not a copy)
	more  map[string]int32  // id -> connections beyond the first; absent when one
}

func newRoomUsers() roomUsers {
	return roomUsers{names: map[string]string{}}
}

// add counts a connection of user id; it reports whether the user is new
// to the room (on this node).
func (u *roomUsers) add(id, name string) bool {
	if _, ok := u.names[id]; !ok {
		u.names[id] = name
		return true
	}
	if u.more == nil {
		u.more = map[string]int32{}
	}
	u.more[id]++
	return false
}

// remove uncounts a connection of user id; it reports whether that was the
// user's last one (the user is gone). No-op, false, for an unknown id.
func (u *roomUsers) remove(id string) bool {
	if _, ok := u.names[id]; !ok {
		return false
	}
	if n, ok := u.more[id]; ok {
		if n > 1 {
			u.more[id] = n - 1
		} else {
			delete(u.more, id)
		}
		return false
	}
	delete(u.names, id)
	return true
}

// has reports whether user id has connections in the room on this node.
func (u *roomUsers) has(id string) bool {
	_, ok := u.names[id]
	return ok
}

// len is the number of distinct users.
func (u *roomUsers) len() int { return len(u.names) }
