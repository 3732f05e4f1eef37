package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/roomcast/roomcast/relay/client"
)

// chat sends each line of stdin to a room and prints the room's messages
// ("[seq] name: body") until stdin ends, ctx ends or the client does.
func chat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: roomcast chat [flags] ROOM\n\nsends each line of stdin to ROOM and prints its messages\n\nflags:\n")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs, 20)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("chat: name one room")
	}
	c, err := cf.dial(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	room, err := c.Join(ctx, fs.Arg(0), client.JoinOptions{History: cf.history})
	if err != nil {
		return fmt.Errorf("chat: join %s: %w", fs.Arg(0), err)
	}
	printed := make(chan error, 1)
	go func() {
		printed <- follow(ctx, c, []*client.Room{room}, func(ev client.Event) error {
			var err error
			switch ev := ev.(type) {
			case *client.Message:
				_, err = fmt.Fprintf(stdout, "[%d] %s: %s\n", ev.Seq, ev.Name, ev.Body)
			case *client.Gap:
				_, err = fmt.Fprintf(stdout, "-- messages %d..%d are lost (%s)\n", ev.From, ev.To, ev.Reason)
			case *client.Kicked:
				_, err = fmt.Fprintf(stdout, "-- kicked: %s\n", ev.Reason)
			case *client.Cleared:
				_, err = fmt.Fprintln(stdout, "-- a moderator cleared the room")
			case *client.Deleted:
				_, err = fmt.Fprintf(stdout, "-- message %d deleted\n", ev.Seq)
			}
			return err
		})
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			if err := send(ctx, room, line, stderr); err != nil {
				return err
			}
		case err := <-printed:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// send sends one line, waiting out rate limits; other refusals are
// told on stderr.
func send(ctx context.Context, room *client.Room, line string, stderr io.Writer) error {
	for {
		_, err := room.Send(ctx, line, client.SendOptions{})
		var e *client.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &e) && e.RetryMS > 0 && e.Code != "muted":
			fmt.Fprintf(stderr, "roomcast: %s, retrying in %d ms\n", e.Code, e.RetryMS)
			select {
			case <-time.After(time.Duration(e.RetryMS) * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
		case errors.As(err, &e) && e.Code != client.CodeClosed:
			fmt.Fprintln(stderr, "roomcast:", err)
			return nil
		default:
			return err
		}
	}
}
