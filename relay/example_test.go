package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
)

// A client in the JSON format: say hello, join a room, send, and read the
// message back in a batch. README shows the same client.
func Example() {
	srv, _ := relay.New(relay.Config{Listen: "127.0.0.1:0", Admin: "off", JWTSecret: "s3cret", NodeID: "eu-1"})
	_ = srv.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	// A game backend mints the token.
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "name": "Alice"}).SignedString([]byte("s3cret"))

	conn, br, _, err := ws.Dialer{Protocols: []string{"roomcast.v1.json"}}.Dial(context.Background(), "ws://"+srv.Addr()+"/ws?token="+tok)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	var rw io.ReadWriter = conn
	if br != nil { // hello came in the same packet as the handshake response
		rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	send := func(frame string) { _ = wsutil.WriteClientText(conn, []byte(frame)) }
	recv := func() (f map[string]any) {
		b, _ := wsutil.ReadServerText(rw)
		_ = json.Unmarshal(b, &f)
		return f
	}
	hello := recv()
	fmt.Println(hello["t"], hello["user"], hello["role"], hello["node"])
	send(`{"t":"join","room":"lobby:eu-1","ref":1}`)
	joined := recv()
	fmt.Println(joined["t"], joined["room"], joined["count"], joined["members"])
	send(`{"t":"send","room":"lobby:eu-1","body":"gg","ref":2}`)
	for i := 0; i < 2; i++ { // the ack and the batch, in either order
		f := recv()
		if f["t"] == "batch" {
			m := f["msgs"].([]any)[0].(map[string]any)
			fmt.Println("batch:", m["seq"], m["from"], m["body"])
		}
	}
	// Output:
	// hello alice user eu-1
	// joined lobby:eu-1 1 [map[id:alice name:Alice]]
	// batch: 1 alice gg
}
