package relay

import "hash/maphash"

// userIndex is the index of open sessions by user id (not anonymous
// viewers), for /api/disconnect, bans and webhooks' offline lists. The
// caller holds Server.usersMu for every method.
//
// Most users have one connection, so the first session of each user is
// all the table holds: an open-addressing table of session pointers
// (linear probing, 3/8 to 3/4 full), 11 to 22 bytes per user where a
// map[string]*session takes about 45 (relay/proto/PROTOCOL.md, "Memory per
// connection"). The key is the session's own user id (ss.id.user): a
// session's id is replaced only by refresh, with the same user, under
// Server.usersMu. A user's further sessions, rare, are in more.
type userIndex struct {
	seed maphash.Seed
	tab  []*session            // a session of each user with any; nil is empty. Its length is 0 or a power of two
	n    int                   // users held
	more map[string][]*session // the user's other sessions; made on first use
}

func newUserIndex() userIndex {
	return userIndex{seed: maphash.MakeSeed()}
}

func (u *userIndex) home(user string) int {
	return int(maphash.String(u.seed, user) & uint64(len(u.tab)-1))
}

// find returns where user is in tab, or the empty place where it would go
// (tab must not be empty).
func (u *userIndex) find(user string) (int, bool) {
	p := u.home(user)
	for u.tab[p] != nil {
		if u.tab[p].id.user == user {
			return p, true
		}
		p = (p + 1) & (len(u.tab) - 1)
	}
	return p, false
}

// lookup returns where user is in tab, or -1.
func (u *userIndex) lookup(user string) int {
	if u.n == 0 {
		return -1
	}
	if p, ok := u.find(user); ok {
		return p
	}
	return -1
}

// add indexes ss under user (ss.id.user).
func (u *userIndex) add(user string, ss *session) {
	if p := u.lookup(user); p >= 0 {
		if u.more == nil {
			u.more = map[string][]*session{}
		}
		u.more[user] = append(u.more[user], ss)
		return
	}
	if 4*(u.n+1) > 3*len(u.tab) {
		u.grow()
	}
	p, _ := u.find(user)
	u.tab[p] = ss
	u.n++
}

// grow doubles the table (the first has 64 places) and places every
// session again.
func (u *userIndex) grow() {
	old := u.tab
	u.tab = make([]*session, max(64, 2*len(old)))
	for _, ss := range old {
		if ss != nil {
			p, _ := u.find(ss.id.user)
			u.tab[p] = ss
		}
	}
}

// remove drops ss from user's sessions (no-op if not indexed).
func (u *userIndex) remove(user string, ss *session) {
	p := u.lookup(user)
	if p < 0 {
		return
	}
	more := u.more[user]
	if u.tab[p] != ss {
		for i, x := range more {
			if x == ss {
				more[i] = more[len(more)-1]
				more[len(more)-1] = nil
				more = more[:len(more)-1]
				break
			}
		}
	} else if n := len(more); n > 0 {
		u.tab[p] = more[n-1]
		more[n-1] = nil
		more = more[:n-1]
	} else {
		u.deleteAt(p)
		return
	}
	if len(more) == 0 {
		delete(u.more, user)
	} else {
		u.more[user] = more
	}
}

// deleteAt empties place p (backward-shift deletion: no tombstones).
func (u *userIndex) deleteAt(p int) {
	mask := len(u.tab) - 1
	u.tab[p] = nil
	u.n--
	for j := (p + 1) & mask; u.tab[j] != nil; j = (j + 1) & mask {
		if mayFill(p, j, u.home(u.tab[j].id.user)) {
			u.tab[p], u.tab[j] = u.tab[j], nil
			p = j
		}
	}
}

// has reports whether user has an open session.
func (u *userIndex) has(user string) bool {
	return u.lookup(user) >= 0
}

// appendTo appends user's sessions to dst.
func (u *userIndex) appendTo(dst []*session, user string) []*session {
	if p := u.lookup(user); p >= 0 {
		dst = append(dst, u.tab[p])
		dst = append(dst, u.more[user]...)
	}
	return dst
}
