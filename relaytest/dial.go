package relaytest

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Subprotocols of the wire formats (PROTOCOL.md).
const (
	MsgpackProtocol = "roomcast.v1.msgpack"
	JSONProtocol    = "roomcast.v1.json"
)

// Dialer dials a relay's WebSocket endpoint with gobwas/ws.
type Dialer struct {
	// Token is sent as ?token=; empty: none.
	Token string
	// Protocols are the subprotocols offered; nil: MsgpackProtocol.
	Protocols []string
	// Dialer is the base gobwas dialer (TLS, header, NetDial); its
	// Protocols are replaced, a zero Timeout becomes 5 s.
	Dialer ws.Dialer
}

// Dial opens a WebSocket to rawURL (ws:// or wss://). The reader holds
// bytes the server sent right after the handshake, then the connection;
// the test's cleanup closes the connection.
func (d Dialer) Dial(t testing.TB, rawURL string) (net.Conn, *bufio.Reader, error) {
	wd := d.Dialer
	wd.Protocols = d.Protocols
	if wd.Protocols == nil {
		wd.Protocols = []string{MsgpackProtocol}
	}
	if wd.Timeout == 0 {
		wd.Timeout = 5 * time.Second
	}
	if d.Token != "" {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, nil, err
		}
		q := u.Query()
		q.Set("token", d.Token)
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	conn, br, _, err := wd.Dial(context.Background(), rawURL)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return conn, br, nil
}
