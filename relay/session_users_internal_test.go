package relay

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// userSession is a session of user, as the index sees it.
func userSession(user string) *session {
	return &session{id: &identity{user: user, grant: &grant{role: roleUser}}}
}

// TestUserIndex adds and removes sessions of users in every order and
// checks the index lists exactly those still added.
func TestUserIndex(t *testing.T) {
	a, b, c, d := userSession("u"), userSession("u"), userSession("u"), userSession("v")
	for _, order := range [][]*session{{a, b, c}, {c, b, a}, {b, a, c}, {b, c, a}} {
		u := newUserIndex()
		u.add("u", a)
		u.add("u", b)
		u.add("u", c)
		u.add("v", d)
		left := []*session{a, b, c}
		for _, ss := range order {
			u.remove("u", ss)
			left = slices.DeleteFunc(left, func(x *session) bool { return x == ss })
			got := u.appendTo(nil, "u")
			if len(got) != len(left) || u.has("u") != (len(left) > 0) {
				t.Fatalf("after removing %p: %v, want %v", ss, got, left)
			}
			for _, x := range left {
				if !slices.Contains(got, x) {
					t.Fatalf("after removing %p: %v, want %v", ss, got, left)
				}
			}
		}
		if u.n != 1 || len(u.more) != 0 || !u.has("v") {
			t.Fatalf("index not back to v alone: %d users, more %v", u.n, u.more)
		}
		u.remove("v", a) // not indexed: no-op
		if got := u.appendTo(nil, "v"); len(got) != 1 || got[0] != d {
			t.Fatalf("v's sessions %v, want [d]", got)
		}
	}
}

// TestUserIndexMany churns thousands of users (some with several
// sessions) through the table, across its growth and its backward-shift
// deletions, and checks it against a map after every step.
func TestUserIndexMany(t *testing.T) {
	u := newUserIndex()
	want := map[string][]*session{}
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(user string) {
		got := u.appendTo(nil, user)
		w := want[user]
		if len(got) != len(w) || u.has(user) != (len(w) > 0) {
			t.Fatalf("user %s: %d sessions, want %d", user, len(got), len(w))
		}
		for _, ss := range w {
			if !slices.Contains(got, ss) {
				t.Fatalf("user %s: session %p missing", user, ss)
			}
		}
	}
	for step := range 20000 {
		user := "user-" + strconv.Itoa(rng.IntN(3000))
		if w := want[user]; len(w) > 0 && rng.IntN(2) == 0 {
			ss := w[rng.IntN(len(w))]
			u.remove(user, ss)
			want[user] = slices.DeleteFunc(w, func(x *session) bool { return x == ss })
		} else {
			ss := userSession(user)
			u.add(user, ss)
			want[user] = append(w, ss)
		}
		check(user)
		if step%2000 == 0 {
			for user := range want {
				check(user)
			}
		}
	}
	users := 0
	for user, w := range want {
		check(user)
		if len(w) > 0 {
			users++
		}
	}
	if u.n != users || 4*u.n > 3*len(u.tab) {
		t.Fatalf("%d users in a table of %d, want %d", u.n, len(u.tab), users)
	}
}
