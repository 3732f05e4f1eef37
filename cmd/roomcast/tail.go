package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/roomcast/roomcast/relay/client"
)

// clientCommand runs roomcast tail or roomcast chat until SIGINT or
// SIGTERM.
func clientCommand(name string, args []string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if name == "chat" {
		return chat(ctx, args, os.Stdin, os.Stdout, stderr)
	}
	return tail(ctx, args, os.Stdout, stderr)
}

// clientFlags are the flags tail and chat share.
type clientFlags struct {
	url, token string
	json       bool
	history    int
}

func (f *clientFlags) register(fs *flag.FlagSet, history int) {
	fs.StringVar(&f.url, "url", envOr("ROOMCAST_URL", "ws://127.0.0.1:8080/ws"), "the relay's WebSocket URL (ROOMCAST_URL)")
	fs.StringVar(&f.token, "token", os.Getenv("ROOMCAST_TOKEN"), "user token (ROOMCAST_TOKEN); none: an anonymous viewer")
	fs.BoolVar(&f.json, "json", false, "use the JSON wire format instead of msgpack")
	fs.IntVar(&f.history, "history", history, "how many recent messages to print first")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// dial connects with the shared flags; reconnects are told on stderr.
func (f *clientFlags) dial(ctx context.Context, stderr io.Writer) (*client.Client, error) {
	var mu sync.Mutex
	return client.Dial(ctx, f.url, client.Options{Token: f.token, JSON: f.json, OnState: func(s client.StateChange) {
		mu.Lock()
		defer mu.Unlock()
		switch s.State {
		case client.Connecting:
			fmt.Fprintf(stderr, "roomcast: connection lost (%v); reconnecting in %v\n", s.Err, s.Delay.Round(time.Millisecond))
		case client.Connected:
			fmt.Fprintln(stderr, "roomcast: connected")
		}
	}})
}

// tail prints the messages of rooms as JSON lines: each message once, in
// seq order per room, across reconnects, and {"gap": ...} where the relay
// could not fill a hole.
func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: roomcast tail [flags] ROOM...\n\nprints each message as one JSON line {room, seq, epoch, ts, from, name, body, meta},\nand {\"gap\": {room, from, to, reason, epoch}} when messages were lost\n\nflags:\n")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs, 0)
	since := fs.Int64("since", -1, "print every kept message after this seq (-1: only new ones, or -history)")
	epoch := fs.String("epoch", "", "the epoch -since belongs to (a \"gap\" line if the room's differs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("tail: name at least one room")
	}
	c, err := cf.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	jo := client.JoinOptions{History: cf.history}
	if *since >= 0 {
		jo.Since, jo.HasSince, jo.Epoch = uint64(*since), true, *epoch
	}
	var rooms []*client.Room
	for _, name := range fs.Args() {
		r, err := c.Join(ctx, name, jo)
		if err != nil {
			return fmt.Errorf("tail: join %s: %w", name, err)
		}
		rooms = append(rooms, r)
	}
	out := &lineWriter{enc: json.NewEncoder(stdout)}
	out.enc.SetEscapeHTML(false)
	return follow(ctx, c, rooms, func(ev client.Event) error {
		switch ev := ev.(type) {
		case *client.Message:
			return out.write(ev)
		case *client.Gap:
			return out.write(map[string]*client.Gap{"gap": ev})
		case *client.Kicked:
			fmt.Fprintf(stderr, "roomcast: kicked from %s: %s\n", ev.Room, ev.Reason)
		}
		return nil
	})
}

// lineWriter writes whole JSON lines from several goroutines.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *lineWriter) write(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(v)
}

// follow hands every event of rooms to handle (one goroutine per room, so
// a busy room does not hold up the others) until ctx ends (nil), the
// client ends (its error) or every room ended.
func follow(ctx context.Context, c *client.Client, rooms []*client.Room, handle func(client.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(rooms))
	for _, r := range rooms {
		go func() {
			for {
				select {
				case ev, ok := <-r.Events():
					if !ok {
						errs <- r.Err()
						return
					}
					if err := handle(ev); err != nil {
						errs <- err
						return
					}
				case <-ctx.Done():
					errs <- nil
					return
				}
			}
		}()
	}
	var first error
	for range rooms {
		err := <-errs
		if err != nil && ctx.Err() == nil {
			cancel()
			first = err
		}
	}
	if errors.Is(first, client.ErrClosed) {
		first = nil
	}
	return first
}
