package relay_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// In durable mode (-data-dir) hooked sends and whispers go through the
// room's log: the hook keeps order and rewrites, a whisper waiting in an
// inbox survives a restart, and a block holds after it.
func TestBackendDurableMode(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	gates := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	be := hookBackend(t, func(c hookCall) any {
		mu.Lock()
		g := gates[c.Body]
		mu.Unlock()
		if g != nil {
			<-g
		}
		return map[string]any{"allow": true, "body": strings.ToUpper(c.Body)}
	})
	start := func() *relay.Server {
		return startRelay(t, func(c *relay.Config) {
			c.DataDir = dir
			hooked("chat", relay.PublishHook{URL: be.URL, Timeout: 5 * time.Second})(c)
		})
	}
	srv := start()
	alice := userClient(t, srv, "alice")
	bob := userClient(t, srv, "bob")
	alice.join("chat:1", 1)
	alice.sendRef("chat:1", "a", 2)
	alice.sendRef("chat:1", "b", 3)
	close(gates["b"])
	time.Sleep(20 * time.Millisecond)
	close(gates["a"])
	if got, seqs := alice.bodies(2); got[0] != "A" || got[1] != "B" || seqs[1] != seqs[0]+1 {
		t.Fatalf("got %q %v, want A then B", got, seqs)
	}
	bob.join("user:bob", 1)
	bob.send(map[string]any{"t": "mod", "room": "user:bob", "action": "block", "user": "eve", "ref": 2})
	bob.expectAck(2)
	bob.conn.Close() // offline
	alice.sendRef("user:bob", "while you were away", 4)
	alice.expectAck(4)
	alice.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv = start()
	bob = userClient(t, srv, "bob")
	bob.send(map[string]any{"t": "join", "room": "user:bob", "ref": 1, "history": 10})
	if h := bob.expect("joined").list("history"); len(h) != 1 || toFrame(h[0]).str("body") != "while you were away" {
		t.Fatalf("inbox after the restart: %v", h)
	}
	eve := userClient(t, srv, "eve")
	eve.sendRef("user:bob", "hi", 1)
	if e := eve.expectError(1); e.str("code") != "forbidden" {
		t.Fatalf("blocked whisper after the restart: %v, want forbidden", e)
	}
}
