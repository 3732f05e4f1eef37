package shard

import "github.com/roomcast/roomcast/relay/proto"

// Member lists across nodes (Bus). Each node tells the others its own users
// of a room that lists members (Feed.Local); the Bus merges what the other
// nodes told and hands it to the room (Feed.Remote), which keeps it in
// remoteUsers and diffs it into the same presence joins and leaves local
// joins make. A user is listed once whatever the nodes it is on: it joins
// when it first appears on any node, and leaves when it is gone from all.
// Without a Bus remoteUsers stays nil and none of this runs.

// LocalPresence is what a node tells the other nodes about one room.
type LocalPresence struct {
	Count   int            // connections on this node, anonymous viewers included
	Listed  bool           // the room lists members (its total is at most its MemberListMax)
	Members []proto.Member // this node's users, each once, never anonymous viewers; nil unless Listed
}

// Local returns the room's presence on this node (bus presence goroutine).
// It copies at most MemberListMax members, and only while the room lists
// them.
func (f roomFeed) Local() LocalPresence {
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	lp := LocalPresence{Count: r.count}
	if r.listMax() < 0 || r.totalLocked() > r.listMax() {
		return lp
	}
	lp.Listed = true
	lp.Members = make([]proto.Member, 0, r.users.len())
	for id, name := range r.users.all() {
		lp.Members = append(lp.Members, proto.Member{ID: id, Name: name})
	}
	return lp
}

// Remote sets the room's connections on other nodes and the users they
// list; the changes are told to members like local ones: a join per user
// new to the room, leaves of users gone from every node (bus presence
// goroutine). members is not kept.
func (f roomFeed) Remote(n int, members []proto.Member) {
	r := f.r
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return
	}
	var next map[string]string
	if len(members) > 0 {
		next = make(map[string]string, len(members))
		for _, m := range members {
			next[m.ID] = m.Name
		}
	}
	told := false
	for id := range r.remoteUsers {
		if _, ok := next[id]; !ok && !r.hasUserLocked(id) {
			r.remote = n
			r.presenceLocked(nil, id)
			told = true
		}
	}
	for id, name := range next {
		if _, ok := r.remoteUsers[id]; !ok && !r.hasUserLocked(id) {
			r.remote = n
			r.presenceLocked(&proto.Member{ID: id, Name: name}, "")
			told = true
		}
	}
	r.remoteUsers = next
	if !told && r.remote != n {
		r.remote = n
		r.presenceLocked(nil, "")
	}
	r.unlockKick()
}

// elsewhereLocked reports whether another node lists the user.
func (r *Room) elsewhereLocked(id string) bool {
	_, ok := r.remoteUsers[id]
	return ok
}

// appendRemoteLocked appends to out the users other nodes list that are not
// on this node.
func (r *Room) appendRemoteLocked(out []proto.Member) []proto.Member {
	for id, name := range r.remoteUsers {
		if !r.hasUserLocked(id) {
			out = append(out, proto.Member{ID: id, Name: name})
		}
	}
	return out
}
