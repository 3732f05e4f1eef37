package relay_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// A whisper reaches every connection of the receiver and no one else, is
// kept in the inbox's history, and counts against the sender's rate limit.
func TestWhisperReachesEveryConnectionOfReceiver(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.SendRate, c.SendBurst = 0.01, 3 })
	bob1 := userClient(t, srv, "bob")
	bob2 := userClient(t, srv, "bob")
	alice := userClient(t, srv, "alice")
	carol := userClient(t, srv, "carol")
	bob1.join("user:bob", 1)
	bob2.join("user:bob", 1)
	carol.join("lobby:1", 1)

	alice.sendRef("user:bob", "psst", 2)
	if a := alice.expectAck(2); a.num("seq") != 1 {
		t.Fatalf("ack %v, want seq 1", a)
	}
	for i, b := range []*client{bob1, bob2} {
		if got, _ := b.bodies(1); got[0] != "psst" {
			t.Fatalf("bob connection %d got %q", i+1, got)
		}
	}
	alice.quiet(150 * time.Millisecond)
	carol.quiet(10 * time.Millisecond)

	bob3 := userClient(t, srv, "bob") // a reconnect finds it in history
	bob3.send(map[string]any{"t": "join", "room": "user:bob", "ref": 1, "history": 10})
	j := bob3.expect("joined")
	if h := j.list("history"); len(h) != 1 || toFrame(h[0]).str("from") != "alice" {
		t.Fatalf("inbox history %v", h)
	}
	alice.sendRef("user:bob", "2", 3)
	alice.expectAck(3)
	alice.sendRef("user:bob", "3", 4)
	alice.expectAck(4)
	alice.sendRef("user:bob", "4", 5) // past the burst of 3
	if e := alice.expectError(5); e.str("code") != "rate_limited" {
		t.Fatalf("got %v, want rate_limited", e)
	}
}

// Only its owner joins an inbox: not another user, not over /sse.
func TestInboxJoinForbidden(t *testing.T) {
	srv := startRelay(t, nil)
	alice := userClient(t, srv, "alice")
	alice.send(map[string]any{"t": "join", "room": "user:bob", "ref": 1})
	if e := alice.expectError(1); e.str("code") != "forbidden" {
		t.Fatalf("got %v, want forbidden", e)
	}
	alice.join("user:alice", 2)
	for _, q := range []string{"room=user:bob", "room=user:bob&token=" + token(t, "alice", "A", "")} {
		resp, err := http.Get("http://" + srv.Addr() + "/sse?" + q)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("/sse?%s: status %d, want 403", q, resp.StatusCode)
		}
	}
}

// The owner blocks a user in their inbox: that user's whispers get
// forbidden, others' pass, until unblock. Only the owner may block.
func TestInboxBlock(t *testing.T) {
	srv := startRelay(t, nil)
	bob := userClient(t, srv, "bob")
	alice := userClient(t, srv, "alice")
	carol := userClient(t, srv, "carol")
	bob.join("user:bob", 1)

	alice.send(map[string]any{"t": "mod", "room": "user:bob", "action": "block", "user": "carol", "ref": 1})
	if e := alice.expectError(1); e.str("code") != "forbidden" {
		t.Fatalf("alice blocking in bob's inbox: %v, want forbidden", e)
	}
	bob.send(map[string]any{"t": "mod", "room": "user:bob", "action": "block", "user": "alice", "ref": 2})
	bob.expectAck(2)
	alice.sendRef("user:bob", "hey", 3)
	if e := alice.expectError(3); e.str("code") != "forbidden" {
		t.Fatalf("blocked whisper: %v, want forbidden", e)
	}
	carol.sendRef("user:bob", "hi", 4)
	carol.expectAck(4)
	if got, _ := bob.bodies(1); got[0] != "hi" {
		t.Fatalf("bob got %q", got)
	}
	bob.send(map[string]any{"t": "mod", "room": "user:bob", "action": "unblock", "user": "alice", "ref": 5})
	bob.expectAck(5)
	alice.sendRef("user:bob", "again", 6)
	alice.expectAck(6)
	if got, _ := bob.bodies(1); got[0] != "again" {
		t.Fatalf("bob got %q", got)
	}
}

// With whispers off, only the backend sends into inboxes (a notification).
func TestWhispersOff(t *testing.T) {
	off := false
	srv := startRelay(t, func(c *relay.Config) {
		c.APIKey = "k"
		c.Namespaces = map[string]relay.Namespace{"user": {Whispers: &off}}
	})
	bob := userClient(t, srv, "bob")
	alice := userClient(t, srv, "alice")
	bob.join("user:bob", 1)
	alice.sendRef("user:bob", "hey", 2)
	if e := alice.expectError(2); e.str("code") != "forbidden" {
		t.Fatalf("whisper with whispers off: %v, want forbidden", e)
	}
	if st, b := adminPost(t, srv, "k", "/api/publish", map[string]any{"room": "user:bob", "body": "you won"}); st != 200 {
		t.Fatalf("notification: %d %s", st, b)
	}
	if got, _ := bob.bodies(1); got[0] != "you won" {
		t.Fatalf("bob got %q", got)
	}
}
