package relay

import (
	"slices"
	"testing"
)

// TestUserIndex adds and removes sessions of users in every order and
// checks the index lists exactly those still added.
func TestUserIndex(t *testing.T) {
	a, b, c, d := &session{}, &session{}, &session{}, &session{}
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
		if len(u.one) != 1 || len(u.more) != 0 || !u.has("v") {
			t.Fatalf("index not back to v alone: %v %v", u.one, u.more)
		}
		u.remove("v", a) // not indexed: no-op
		if got := u.appendTo(nil, "v"); len(got) != 1 || got[0] != d {
			t.Fatalf("v's sessions %v, want [d]", got)
		}
	}
}
