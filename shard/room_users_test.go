package shard

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// usersOf lists the index by iteration, failing on a user yielded twice.
func usersOf(t *testing.T, u *roomUsers) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, name := range u.all() {
		if _, dup := out[id]; dup {
			t.Fatalf("user %q yielded twice", id)
		}
		out[id] = name
	}
	return out
}

// TestRoomUsersCountsConnections checks the room's users index: a user is
// new on its first connection only, gone on its last only, keeps the name
// of its first connection, and unknown ids are a no-op.
func TestRoomUsersCountsConnections(t *testing.T) {
	var u roomUsers
	if u.len() != 0 || u.has("a") || u.remove("a") || len(usersOf(t, &u)) != 0 {
		t.Fatal("the empty index is not empty")
	}
	if !u.add("a", "Ann") {
		t.Fatal("first connection of a: not new")
	}
	second, third := u.add("a", "Other"), u.add("a", "Other")
	if second || third {
		t.Fatal("further connections of a: new")
	}
	if !u.add("b", "Bob") {
		t.Fatal("first connection of b: not new")
	}
	if got := usersOf(t, &u); u.len() != 2 || len(got) != 2 || got["a"] != "Ann" || got["b"] != "Bob" {
		t.Fatalf("users %v (len %d), want a=Ann b=Bob", got, u.len())
	}
	if u.remove("zz") {
		t.Fatal("unknown id reported gone")
	}
	for i := range 2 {
		if u.remove("a") {
			t.Fatalf("a gone after %d of 3 connections left", i+1)
		}
		if !u.has("a") {
			t.Fatal("a missing while connected")
		}
	}
	if !u.remove("a") {
		t.Fatal("a not gone after its last connection")
	}
	if u.has("a") || len(u.more) != 0 || u.len() != 1 {
		t.Fatalf("after a left: users %v more %v", usersOf(t, &u), u.more)
	}
	if u.remove("a") {
		t.Fatal("a gone twice")
	}
	if !u.remove("b") || u.len() != 0 {
		t.Fatal("b not gone after its only connection")
	}
	if u.small != nil || u.names != nil || u.more != nil {
		t.Fatalf("an index without users holds small %v names %v more %v", u.small, u.names, u.more)
	}
	if !u.add("a", "Ann2") || usersOf(t, &u)["a"] != "Ann2" {
		t.Fatal("a rejoining is not new with its new name")
	}
}

// The index moves from its slice to a map past smallUsers users and back
// at smallUsers/2, keeping every user's name and extra connections.
func TestRoomUsersSwitchesForm(t *testing.T) {
	var u roomUsers
	id := func(i int) string { return fmt.Sprint("u", i) }
	for i := range smallUsers {
		u.add(id(i), "N"+id(i))
	}
	u.add(id(0), "again") // a second connection of u0
	if u.names != nil || len(u.small) != smallUsers {
		t.Fatalf("%d users: small %d names %v, want the slice", smallUsers, len(u.small), u.names)
	}
	if !u.add(id(smallUsers), "N"+id(smallUsers)) {
		t.Fatal("the user past the slice is not new")
	}
	if u.names == nil || u.small != nil || u.len() != smallUsers+1 {
		t.Fatalf("%d users: small %d names %d, want the map", smallUsers+1, len(u.small), len(u.names))
	}
	for i := range smallUsers + 1 {
		if !u.has(id(i)) || usersOf(t, &u)[id(i)] != "N"+id(i) {
			t.Fatalf("after the move to the map, %s: has %v, users %v", id(i), u.has(id(i)), usersOf(t, &u))
		}
	}
	// Down to smallUsers/2+1: still the map (no flapping at the edge).
	for i := smallUsers; i > smallUsers/2; i-- {
		if !u.remove(id(i)) {
			t.Fatalf("%s not gone", id(i))
		}
	}
	if u.names == nil || u.len() != smallUsers/2+1 {
		t.Fatalf("%d users: names %v, want still the map", u.len(), u.names)
	}
	if !u.remove(id(smallUsers / 2)) {
		t.Fatal("not gone")
	}
	if u.names != nil || len(u.small) != smallUsers/2 {
		t.Fatalf("%d users: small %d names %v, want the slice", smallUsers/2, len(u.small), u.names)
	}
	if u.remove(id(0)) || !u.has(id(0)) {
		t.Fatal("u0's second connection lost in the moves")
	}
	if !u.remove(id(0)) || u.has(id(0)) {
		t.Fatal("u0 not gone after its last connection")
	}
	got := usersOf(t, &u)
	for i := 1; i < smallUsers/2; i++ {
		if got[id(i)] != "N"+id(i) {
			t.Fatalf("after the move back, users %v", got)
		}
	}
}

// Random adds and removes of a few dozen users, held to a plain model: in
// phases that mostly add, then mostly remove, so that the index moves
// between its forms both ways many times.
func TestRoomUsersModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var u roomUsers
	conns, names := map[string]int{}, map[string]string{}
	switches, wasSmall := 0, true
	for step := range 40000 {
		id := fmt.Sprint("u", rng.IntN(3*smallUsers))
		add := rng.IntN(100) < 65
		if step/1000%2 == 1 { // a phase that drains: remove users that are there, mostly
			if add = rng.IntN(100) < 20; !add && len(conns) > 0 && rng.IntN(10) > 0 {
				ids := slices.Sorted(maps.Keys(conns))
				id = ids[rng.IntN(len(ids))]
			}
		}
		if add {
			name := fmt.Sprint("n", step)
			if got, want := u.add(id, name), conns[id] == 0; got != want {
				t.Fatalf("step %d: add %s = %v, want %v", step, id, got, want)
			}
			if conns[id] == 0 {
				names[id] = name
			}
			conns[id]++
		} else {
			if got, want := u.remove(id), conns[id] == 1; got != want {
				t.Fatalf("step %d: remove %s = %v, want %v", step, id, got, want)
			}
			if conns[id] > 0 {
				if conns[id]--; conns[id] == 0 {
					delete(conns, id)
					delete(names, id)
				}
			}
		}
		if u.len() != len(names) || u.has(id) != (conns[id] > 0) {
			t.Fatalf("step %d: len %d has(%s) %v, want %d %v", step, u.len(), id, u.has(id), len(names), conns[id] > 0)
		}
		small := u.names == nil
		if small && u.len() > smallUsers || !small && u.len() <= smallUsers/2 {
			t.Fatalf("step %d: %d users in the %s form", step, u.len(), map[bool]string{true: "slice", false: "map"}[small])
		}
		if small != wasSmall {
			switches, wasSmall = switches+1, small
		}
		if step%97 == 0 {
			if got := usersOf(t, &u); fmt.Sprint(got) != fmt.Sprint(names) {
				t.Fatalf("step %d: users %v, want %v", step, got, names)
			}
		}
	}
	if switches < 10 {
		t.Fatalf("the index changed form %d times; the test shows little", switches)
	}
	t.Logf("%d changes of form", switches)
}
