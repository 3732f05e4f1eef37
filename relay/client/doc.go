// Package client is the Go client of roomcast: one WebSocket connection to a
// relay carrying many rooms, kept alive across drops, with each room's
// messages handed to the application exactly once and in seq order.
//
//	c, err := client.Dial(ctx, "ws://relay.example/ws", client.Options{Token: tok})
//	if err != nil { ... }
//	defer c.Close()
//	room, err := c.Join(ctx, "lobby:eu-1", client.JoinOptions{History: 20})
//	if err != nil { ... }
//	go func() {
//		for ev := range room.Events() {
//			switch ev := ev.(type) {
//			case *client.Message:  // once each, in seq order
//			case *client.Gap:      // messages the relay no longer has
//			case *client.Presence, *client.Deleted, *client.Cleared, *client.Kicked:
//			}
//		}
//		// room.Err() tells why the room ended (nil after Leave).
//	}()
//	seq, err := room.Send(ctx, "gg", client.SendOptions{Meta: map[string]string{"color": "red"}})
//
// # Connection
//
// Dial connects once and fails if that fails. From then on the client
// reconnects by itself, with jittered exponential back-off, after the
// connection drops and after the close codes 1001 (relay shutting down),
// 4000 (idle), 4009 (slow consumer), 4010 (token expired) and 1011, and
// rejoins every room with since (the last seq it handed over) and epoch.
// It ends, with an error from Err and Done closed, after 4003 (an operator
// disconnected the user), 1002, 1007, 1008, 1009 (the relay refuses this
// client's frames or behaviour) and after an HTTP refusal of the upgrade
// other than 429 and 5xx (401: the token is refused).
//
// A TokenSource is called before each connection that needs a fresh token
// (the first one, after 4010, and when the token is about to expire), and
// again before the token's exp (read from the JWT without verifying it):
// the fresh token is sent as a refresh, so the connection stays up.
//
// # Delivery
//
// Each Room has one channel of events, in the order the relay sent them.
// Messages are de-duplicated by seq: a message whose seq is not above the
// last one handed over is dropped, so every message reaches the
// application once, in seq order, across reconnects. When the relay cannot
// fill a hole (it aged out of history, or the room's epoch changed: a
// restarted relay, a room re-created), a *Gap event comes first.
//
// Events are never dropped. Each room's channel holds Options.Buffer
// events; when it is full, the client stops reading the connection until
// the application receives. Every room of the connection waits, and a
// relay whose queue for this client overflows closes it with 4009; the
// client then reconnects and resumes with since: nothing is lost, nothing
// handed over twice. Applications that must not stall other rooms receive
// from each room in its own goroutine.
//
// Requests (Join, Send, Leave, Ping, Mod) wait for a live connection and
// for the relay's reply, bounded by their context. A request whose
// connection drops before the reply fails with ErrDisconnected: a Send
// may or may not have been accepted (its message, if accepted, arrives as
// usual). Errors the relay answers are *Error with the protocol code.
//
// Every method is safe for concurrent use. Close ends the client and its
// goroutines (one per client, one per live connection).
package client
