package relay_test

import (
	"testing"
	"time"

	"github.com/gobwas/httphead"

	"github.com/roomcast/roomcast/relay"
)

// With NoCompression (-compression=false) the relay declines every
// permessage-deflate offer: the 101 answer names no extension, room
// traffic comes plain, a compressed frame from the client is a protocol
// error (1002), and roomcast_compressed_connections stays 0. With
// compression on, the gauge counts compressed connections while they are
// open.
func TestDeflateOff(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.NoCompression = true })
	for _, offer := range []httphead.Option{offerDeflate, offerBrowser} {
		c := dialZ(t, srv, dialOpts{}, offer)
		if _, ok := findDeflate(c.ext); ok || c.resp != "" {
			t.Fatalf("compression off, offer %s: extension %q accepted", offer.Name, c.resp)
		}
	}
	c := dialZ(t, srv, dialOpts{token: token(t, "alice", "Alice", "")}, offerDeflate)
	c.joinZ("r", 1)
	c.send(map[string]any{"t": "send", "room": "r", "body": chatText(1, 300), "ref": 1})
	for {
		f, z, err := c.readZ(5 * time.Second)
		if err != nil {
			t.Fatalf("reading the batch: %v", err)
		}
		if z {
			t.Fatalf("compression off: a compressed %s frame", f.str("t"))
		}
		if f.str("t") == "batch" {
			break
		}
	}
	if got := metricsOf(t, srv)["roomcast_compressed_connections"]; got != 0 {
		t.Errorf("roomcast_compressed_connections %v with compression off", got)
	}
	// RSV1 from a client that negotiated nothing: 1002.
	c.sendZ(map[string]any{"t": "ping", "ref": 2})
	c.expectCloseZ(1002)

	on := startRelay(t, nil)
	z := dialZ(t, on, dialOpts{}, offerDeflate)
	dialZ(t, on, dialOpts{}) // no offer: not counted
	if got := metricsOf(t, on)["roomcast_compressed_connections"]; got != 1 {
		t.Errorf("roomcast_compressed_connections %v, want 1", got)
	}
	z.conn.Close()
	eventually(t, "roomcast_compressed_connections back to 0", func() bool {
		return metricsOf(t, on)["roomcast_compressed_connections"] == 0
	})
}
