package shard

import "testing"

// TestRoomUsersCountsConnections checks the room's users index: a user is
// new on its first connection only, gone on its last only, keeps the name
// of its first connection, and unknown ids are a no-op.
func TestRoomUsersCountsConnections(t *testing.T) {
	u := newRoomUsers()
	if !u.add("a", "Ann") {
		t.Fatal("first connection of a: not new")
	}
	if u.add("a", "Other") || u.add("a", "Other") {
		t.Fatal("further connections of a: new")
	}
	if !u.add("b", "Bob") {
		t.Fatal("first connection of b: not new")
	}
	if u.len() != 2 || u.names["a"] != "Ann" || u.names["b"] != "Bob" {
		t.Fatalf("users %v, want a=Ann b=Bob", u.names)
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
		t.Fatalf("after a left: names %v more %v", u.names, u.more)
	}
	if u.remove("a") {
		t.Fatal("a gone twice")
	}
	if !u.remove("b") || u.len() != 0 {
		t.Fatal("b not gone after its only connection")
	}
	if !u.add("a", "Ann2") || u.names["a"] != "Ann2" {
		t.Fatal("a rejoining is not new with its new name")
	}
}
