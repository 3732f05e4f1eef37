package shard

import "iter"

// roomUsers is a room's index of the users with connections in it on this
// node (not anonymous viewers), by id: their display names and how many
// connections each has. Guarded by the room's mu (every method).
//
// Most rooms have few users, so up to smallUsers of them are kept in a
// slice searched linearly (16 bytes of id and 16 of name each, grown by
// append: 32 bytes for one user), and the index moves to a map past that;
// it moves back to a slice when a map's users fall to smallUsers/2 (not at
// smallUsers: a room hovering there would make a map on every other join).
// A room with no users (anonymous viewers only) holds neither. Most users
// have one connection in a room, so the index holds only the name, and a
// user's further connections are counted in more, made on first use
// (relay/proto/PROTOCOL.md, "Memory per connection").
type roomUsers struct {
	small []roomUser        // the users while at most smallUsers and names is nil; nil when none
	names map[string]string // id -> display name (the identity's string, not a copy); nil while small holds them
	more  map[string]int32  // id -> connections beyond the first; absent when one
}

// roomUser is one user of a small index.
type roomUser struct {
	id, name string
}

// smallUsers is the most users a room's index keeps in its slice.
const smallUsers = 16

// add counts a connection of user id; it reports whether the user is new
// to the room (on this node).
func (u *roomUsers) add(id, name string) bool {
	if !u.has(id) {
		u.insert(id, name)
		return true
	}
	if u.more == nil {
		u.more = map[string]int32{}
	}
	u.more[id]++
	return false
}

// insert adds a user not in the index.
func (u *roomUsers) insert(id, name string) {
	switch {
	case u.names != nil:
		u.names[id] = name
	case len(u.small) < smallUsers:
		u.small = append(u.small, roomUser{id, name})
	default:
		u.names = make(map[string]string, smallUsers+1)
		for _, e := range u.small {
			u.names[e.id] = e.name
		}
		u.names[id] = name
		u.small = nil
	}
}

// remove uncounts a connection of user id; it reports whether that was the
// user's last one (the user is gone). No-op, false, for an unknown id.
func (u *roomUsers) remove(id string) bool {
	if !u.has(id) {
		return false
	}
	if n, ok := u.more[id]; ok {
		if n > 1 {
			u.more[id] = n - 1
		} else if delete(u.more, id); len(u.more) == 0 {
			u.more = nil // a map keeps its groups after deletes
		}
		return false
	}
	u.delete(id)
	return true
}

// delete drops a user in the index.
func (u *roomUsers) delete(id string) {
	if u.names == nil {
		i := u.index(id)
		last := len(u.small) - 1
		u.small[i] = u.small[last]
		u.small[last] = roomUser{}
		if u.small = u.small[:last]; last == 0 {
			u.small = nil
		}
		return
	}
	delete(u.names, id)
	if len(u.names) > smallUsers/2 {
		return
	}
	u.small = make([]roomUser, 0, len(u.names)+1)
	for id, name := range u.names {
		u.small = append(u.small, roomUser{id, name})
	}
	if len(u.small) == 0 {
		u.small = nil
	}
	u.names = nil
}

// index is the position of id in small, or -1.
func (u *roomUsers) index(id string) int {
	for i := range u.small {
		if u.small[i].id == id {
			return i
		}
	}
	return -1
}

// has reports whether user id has connections in the room on this node.
func (u *roomUsers) has(id string) bool {
	if u.names == nil {
		return u.index(id) >= 0
	}
	_, ok := u.names[id]
	return ok
}

// len is the number of distinct users.
func (u *roomUsers) len() int {
	if u.names == nil {
		return len(u.small)
	}
	return len(u.names)
}

// all yields each user's id and name once, in no particular order. The
// index must not change while it runs.
func (u *roomUsers) all() iter.Seq2[string, string] {
	return func(yield func(id, name string) bool) {
		if u.names == nil {
			for _, e := range u.small {
				if !yield(e.id, e.name) {
					return
				}
			}
			return
		}
		for id, name := range u.names {
			if !yield(id, name) {
				return
			}
		}
	}
}
