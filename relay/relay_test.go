package relay_test

import (
	"fmt"
	"testing"
)

func TestHelloAndChat(t *testing.T) {
	for _, format := range []string{"msgpack", "json"} {
		t.Run(format, func(t *testing.T) {
			srv := startRelay(t, nil)
			isJSON := format == "json"
			alice := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", ""), json: isJSON})
			bob := dial(t, srv, dialOpts{token: token(t, "bob", "Bob", ""), json: !isJSON})

			h := alice.hello
			if h.str("user") != "alice" || h.str("name") != "Alice" || h.str("role") != "user" || h["anon"] != false || h.num("v") != 1 || h.str("node") != "test" {
				t.Fatalf("hello = %v", h)
			}
			lim, _ := h["limits"].(map[string]any)
			if toInt(lim["max_body"]) != 500 || toInt(lim["max_rooms"]) != 32 || toInt(lim["max_frame"]) != 65536 || toInt(lim["burst"]) != 1000 {
				t.Fatalf("hello limits = %v", lim)
			}

			j := alice.join("lobby:eu-1", 1)
			if j.num("seq") != 0 || len(j.list("history")) != 0 || j["gap"] != false || j.num("count") != 1 {
				t.Fatalf("joined = %v", j)
			}
			j = bob.join("lobby:eu-1", 7)
			if j.num("count") != 2 || len(j.list("members")) != 2 {
				t.Fatalf("bob's joined = %v", j)
			}
			p := alice.expect("presence")
			if p.num("count") != 2 || len(p.list("joins")) != 1 {
				t.Fatalf("presence = %v", p)
			}

			for i := 1; i <= 3; i++ {
				alice.send(map[string]any{"t": "send", "room": "lobby:eu-1", "body": fmt.Sprintf("hi %d", i), "ref": 10 + i})
			}
			for i := 1; i <= 3; i++ {
				a := alice.expectMsgOrAck()
				_ = a
			}
			var got []string
			for len(got) < 3 {
				b := bob.expect("batch")
				for _, m := range b.list("msgs") {
					mm := m.(map[string]any)
					if mm["from"] != "alice" || mm["name"] != "Alice" || toInt(mm["seq"]) != int64(len(got)+1) || toInt(mm["ts"]) <= 0 {
						t.Fatalf("message = %v", mm)
					}
					got = append(got, mm["body"].(string))
				}
			}
			if got[0] != "hi 1" || got[2] != "hi 3" {
				t.Fatalf("bodies = %v", got)
			}
		})
	}
}

// expectMsgOrAck reads the next ack or batch of the sender (their order
// between each other is free).
func (c *client) expectMsgOrAck() frame {
	c.t.Helper()
	for {
		f := c.next()
		switch f.str("t") {
		case "ack", "batch":
			return f
		}
	}
}
