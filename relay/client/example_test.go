package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/roomcast/roomcast/relay/client"
)

// A bot that answers !ping in one room, with tokens from the game's
// backend. (Compiled, not run: it needs a relay.)
func Example() {
	ctx := context.Background()
	backendToken := func(ctx context.Context) (string, error) { return "a JWT from the backend", nil }
	c, err := client.Dial(ctx, "wss://relay.example/ws", client.Options{TokenSource: backendToken})
	if err != nil {
		log.Fatal(err) // a refused token: *client.Error{Code: "refused", Status: 401}
	}
	defer c.Close()
	room, err := c.Join(ctx, "lobby:eu-1", client.JoinOptions{History: 20})
	if err != nil {
		log.Fatal(err)
	}
	for ev := range room.Events() { // closed when the room or the client ends
		switch ev := ev.(type) {
		case *client.Message: // once each, in seq order
			if ev.Body == "!ping" {
				if _, err := room.Send(ctx, "pong", client.SendOptions{Meta: map[string]string{"re": fmt.Sprint(ev.Seq)}}); err != nil {
					log.Print(err) // *client.Error{Code: "rate_limited", RetryMS: ...}, ...
				}
			}
		case *client.Gap:
			log.Printf("lost %d..%d of %s (%s)", ev.From, ev.To, ev.Room, ev.Reason)
		}
	}
	log.Print(room.Err())
}
