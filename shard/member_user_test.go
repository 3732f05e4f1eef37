package shard

import (
	"testing"
)

// namedMember is a recording member that names a user (UserMember).
type namedMember struct {
	*recMember
	name string
}

func (m *namedMember) MemberUser() string { return m.name }

// TestLeaveRemovesJoinedUser: a member leaving takes out of the room's
// users the id it joined under, whether it names that user (no copy kept),
// names another one, or names none (the room's copy); the room's copies are
// gone once their members left.
func TestLeaveRemovesJoinedUser(t *testing.T) {
	cases := []struct {
		name      string
		names     string // the user the member names; "-" for a plain Member
		wantNamed bool
	}{
		{"names its user", "a", true},
		{"names another user", "b", false},
		{"names none", "-", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.join(t, "r", 0, JoinRequest{User: "w"}) // keeps the room
			rec := &recMember{loop: e.loops[1], user: "a"}
			var m Member = rec
			if c.names != "-" {
				m = &namedMember{recMember: rec, name: c.names}
			}
			req := JoinRequest{LoopIndex: 1, Loop: e.loops[1], Member: m, User: "a", Name: "A"}
			var ms *Membership
			var err error
			e.loops[1].do(t, func() { ms, _, err = e.hub.Join("r", &req) })
			if err != nil {
				t.Fatal(err)
			}
			r := ms.Room()
			r.mu.Lock()
			named, copy, has := ms.named, r.userOf[ms], r.users.has("a")
			r.mu.Unlock()
			if named != c.wantNamed || !has || (copy == "") != c.wantNamed || !c.wantNamed && copy != "a" {
				t.Fatalf("after the join: named %v, room's copy %q, user listed %v; want named %v", named, copy, has, c.wantNamed)
			}
			e.leave(t, rec, ms)
			r.mu.Lock()
			defer r.mu.Unlock()
			if _, kept := r.userOf[ms]; kept || r.users.has("a") || r.users.has("b") || !r.users.has("w") || len(r.userOf) != 1 {
				t.Fatalf("after the leave: a %v, b %v, w %v, room copies %d; want only w and its copy",
					r.users.has("a"), r.users.has("b"), r.users.has("w"), len(r.userOf))
			}
		})
	}
}
