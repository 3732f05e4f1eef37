package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/shard"
)

const tailSecret = "tail-secret"

func startTailRelay(t *testing.T, listen string) *relay.Server {
	t.Helper()
	var srv *relay.Server
	var err error
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		srv, err = relay.New(relay.Config{Listen: listen, Admin: "off", Loops: 1, JWTSecret: tailSecret, NodeID: "test"})
		if err == nil {
			if err = srv.Start(); err == nil {
				break
			}
		}
		if time.Now().After(end) {
			t.Fatalf("relay on %s: %v", listen, err)
		}
	}
	t.Cleanup(func() { stopTailRelay(srv) })
	return srv
}

func stopTailRelay(srv *relay.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// tailLine is one line tail prints: a message or a gap.
type tailLine struct {
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"`
	Epoch string `json:"epoch"`
	TS    int64  `json:"ts"`
	From  string `json:"from"`
	Name  string `json:"name"`
	Body  string `json:"body"`
	Meta  map[string]string
	Gap   *struct {
		Room   string `json:"room"`
		From   uint64 `json:"from"`
		To     uint64 `json:"to"`
		Reason string `json:"reason"`
		Epoch  string `json:"epoch"`
	} `json:"gap"`
}

// lines runs cmd in-process and returns its stdout lines as they come.
func lines(t *testing.T, run func(ctx context.Context, stdout io.Writer) error) <-chan tailLine {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := run(ctx, pw); err != nil {
			t.Errorf("command: %v", err)
		}
		pw.Close()
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make(chan tailLine, 100)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var l tailLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("line %q: %v", sc.Text(), err)
				continue
			}
			out <- l
		}
	}()
	return out
}

func expectLine(t *testing.T, ch <-chan tailLine) tailLine {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("tail ended")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no line from tail within 5 s")
	}
	return tailLine{}
}

// TestTail: history and new messages as JSON lines, in order, once each;
// after a relay restart, a gap line, then the new epoch's messages.
func TestTail(t *testing.T) {
	srv := startTailRelay(t, "127.0.0.1:0")
	addr := srv.Addr()
	for _, b := range []string{"one", "two", "three"} {
		if _, err := srv.Hub().Publish("lobby:t", &shard.Message{From: "bot", Name: "Bot", Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.Hub().Publish("other:1", &shard.Message{From: "bot", Body: "before"}); err != nil {
		t.Fatal(err)
	}
	out := lines(t, func(ctx context.Context, w io.Writer) error {
		return tail(ctx, []string{"-url", "ws://" + addr + "/ws", "-since", "1", "lobby:t", "other:1"}, w, io.Discard)
	})
	for i, want := range []string{"two", "three"} {
		l := expectLine(t, out)
		if l.Room != "lobby:t" || l.Seq != uint64(i+2) || l.Body != want || l.From != "bot" || l.Name != "Bot" || l.Epoch == "" || l.TS == 0 {
			t.Errorf("line %d: %+v", i, l)
		}
	}
	oldEpoch := ""
	if _, err := srv.Hub().Publish("other:1", &shard.Message{From: "bot", Body: "o", Meta: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if l := expectLine(t, out); l.Room != "other:1" || l.Seq != 2 || l.Meta["k"] != "v" {
		t.Errorf("other room: %+v", l)
	} else {
		oldEpoch = l.Epoch
	}

	stopTailRelay(srv)
	srv2 := startTailRelay(t, addr)
	// Gap lines for both rooms (new epochs), then the new messages once.
	gaps := map[string]bool{}
	for len(gaps) < 2 {
		l := expectLine(t, out)
		if l.Gap == nil || l.Gap.Reason != "epoch" || l.Gap.Epoch == oldEpoch {
			t.Fatalf("after restart: %+v (gap %+v), want a gap line", l, l.Gap)
		}
		gaps[l.Gap.Room] = true
	}
	if !gaps["lobby:t"] || !gaps["other:1"] {
		t.Errorf("gap lines for %v", gaps)
	}
	if _, err := srv2.Hub().Publish("lobby:t", &shard.Message{From: "bot", Body: "new"}); err != nil {
		t.Fatal(err)
	}
	if l := expectLine(t, out); l.Room != "lobby:t" || l.Seq != 1 || l.Body != "new" {
		t.Errorf("after restart: %+v", l)
	}
}

// TestChat: chat sends stdin's lines; a tail on the room sees them.
func TestChat(t *testing.T) {
	srv := startTailRelay(t, "127.0.0.1:0")
	url := "ws://" + srv.Addr() + "/ws"
	tok := relaytest.Token(t, tailSecret, "ann", "Ann", "")
	out := lines(t, func(ctx context.Context, w io.Writer) error {
		return tail(ctx, []string{"-url", url, "-json", "-since", "0", "lobby:c"}, w, io.Discard) // from the first message, whenever tail joins
	})
	var chatOut relaytest.SyncBuffer
	err := chat(context.Background(), []string{"-url", url, "-token", tok, "lobby:c"}, strings.NewReader("hello\n\nworld\n"), &chatOut, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"hello", "world"} {
		if l := expectLine(t, out); l.Seq != uint64(i+1) || l.Body != want || l.From != "ann" || l.Name != "Ann" {
			t.Errorf("line %d: %+v", i, l)
		}
	}
}
