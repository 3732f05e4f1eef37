package relay

// userIndex is the index of open sessions by user id (not anonymous
// viewers), for /api/disconnect, bans and webhooks' offline lists. The
// caller holds Server.usersMu for every method.
//
// Most users have one connection, so the first session of each user is
// the map's value itself: no backing array per user, and a 24-byte map
// slot rather than 40 (BENCHMARKS.md, memory per connection). A user's
// further sessions, rare, are in more.
type userIndex struct {
	one  map[string]*session   // a session of each user with any
	more map[string][]*session // the user's other sessions; made on first use
}

func newUserIndex() userIndex {
	return userIndex{one: map[string]*session{}}
}

// add indexes ss under user.
func (u *userIndex) add(user string, ss *session) {
	if _, ok := u.one[user]; !ok {
		u.one[user] = ss
		return
	}
	if u.more == nil {
		u.more = map[string][]*session{}
	}
	u.more[user] = append(u.more[user], ss)
}

// remove drops ss from user's sessions (no-op if not indexed).
func (u *userIndex) remove(user string, ss *session) {
	more := u.more[user]
	if u.one[user] != ss {
		for i, x := range more {
			if x == ss {
				more[i] = more[len(more)-1]
				more[len(more)-1] = nil
				more = more[:len(more)-1]
				break
			}
		}
	} else if n := len(more); n > 0 {
		u.one[user] = more[n-1]
		more[n-1] = nil
		more = more[:n-1]
	} else {
		delete(u.one, user)
		return
	}
	if len(more) == 0 {
		delete(u.more, user)
	} else {
		u.more[user] = more
	}
}

// has reports whether user has an open session.
func (u *userIndex) has(user string) bool {
	_, ok := u.one[user]
	return ok
}

// appendTo appends user's sessions to dst.
func (u *userIndex) appendTo(dst []*session, user string) []*session {
	if ss, ok := u.one[user]; ok {
		dst = append(dst, ss)
		dst = append(dst, u.more[user]...)
	}
	return dst
}
