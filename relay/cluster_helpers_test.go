package relay_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
)

// runNATS starts a NATS server with JetStream stored in dir, on loopback
// (port -1: any free one). Shut it down to simulate an outage; the test's
// cleanup shuts it down too.
func runNATS(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	return relaytest.RunNATS(t, dir, port)
}

// startNode starts a relay sharing its rooms through the NATS server at url.
func startNode(t testing.TB, url, node string) *relay.Server {
	t.Helper()
	return startRelay(t, func(c *relay.Config) { c.NATS, c.NodeID = url, node })
}

// readyz returns the status of the relay's /readyz.
func readyz(t testing.TB, srv *relay.Server) int {
	t.Helper()
	resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// seen is what one client read: the seqs of its batches in order, and the
// seqs of its acks by ref.
type seen struct {
	seqs []uint64
	acks map[int64]uint64
	errs []frame
}

// collect reads c's frames until done says it has enough or a read fails
// (the error is returned). It does not call t.Fatal: goroutines may run it.
func (c *client) collect(s *seen, done func(*seen) bool) error {
	if s.acks == nil {
		s.acks = map[int64]uint64{}
	}
	for !done(s) {
		f, err := c.read(5 * time.Second)
		if err != nil {
			return err
		}
		switch f.str("t") {
		case "batch":
			for _, m := range f.list("msgs") {
				s.seqs = append(s.seqs, uint64(toInt(m.(map[string]any)["seq"])))
			}
		case "ack":
			s.acks[f.num("ref")] = uint64(f.num("seq"))
		case "error":
			s.errs = append(s.errs, f)
		}
	}
	return nil
}

// historySeqs returns the seqs of a joined reply's history.
func historySeqs(f frame) []uint64 {
	var out []uint64
	for _, m := range f.list("history") {
		out = append(out, uint64(toInt(m.(map[string]any)["seq"])))
	}
	return out
}

// contiguous checks that seqs are from..to, each once, in order.
func contiguous(seqs []uint64, from, to uint64) error {
	if uint64(len(seqs)) != to-from+1 {
		return errors.New("wrong count")
	}
	for i, s := range seqs {
		if s != from+uint64(i) {
			return errors.New("out of order, repeated or missing")
		}
	}
	return nil
}
