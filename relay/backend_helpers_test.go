package relay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// Helpers of the backend tests (publish hook, inboxes, webhooks).

// hookCall is one publish hook request as the backend received it.
type hookCall struct {
	Room string            `json:"room"`
	From string            `json:"from"`
	Name string            `json:"name"`
	Role string            `json:"role"`
	Body string            `json:"body"`
	Meta map[string]string `json:"meta"`
}

// hookBackend is a real HTTP backend answering publish hook calls with
// answer(call): the JSON value to write (nil: status 500).
func hookBackend(t testing.TB, answer func(hookCall) any) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c hookCall
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a := answer(c)
		if a == nil {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// hooked returns a relay config change giving namespace ns the hook h.
func hooked(ns string, h relay.PublishHook) func(*relay.Config) {
	return func(c *relay.Config) {
		if c.Namespaces == nil {
			c.Namespaces = map[string]relay.Namespace{}
		}
		c.Namespaces[ns] = relay.Namespace{PublishHook: &h}
	}
}

// userClient dials a signed-in user.
func userClient(t testing.TB, srv *relay.Server, sub string) *client {
	t.Helper()
	return dial(t, srv, dialOpts{token: token(t, sub, "N"+sub, "")})
}

// sendRef sends body to room with ref.
func (c *client) sendRef(room, body string, ref int) {
	c.t.Helper()
	c.send(map[string]any{"t": "send", "room": room, "body": body, "ref": ref})
}

// expectError reads past batches and presence to the error of ref; an ack
// of ref first fails the test.
func (c *client) expectError(ref int) frame {
	c.t.Helper()
	for {
		f := c.next()
		switch {
		case f.str("t") == "error" && f.num("ref") == int64(ref):
			return f
		case f.str("t") == "ack" && f.num("ref") == int64(ref):
			c.t.Fatalf("ref %d was acked (%v), want an error", ref, f)
		}
	}
}

// bodies reads batches until n messages came, and returns their bodies and
// seqs in order.
func (c *client) bodies(n int) ([]string, []int64) {
	c.t.Helper()
	var bs []string
	var seqs []int64
	for len(bs) < n {
		f := c.next()
		if f.str("t") != "batch" {
			continue
		}
		for _, m := range f.list("msgs") {
			mm := toFrame(m)
			bs = append(bs, mm.str("body"))
			seqs = append(seqs, mm.num("seq"))
		}
	}
	return bs, seqs
}

// quiet fails the test if a batch reaches c within d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		f, err := c.read(time.Until(end))
		if err != nil {
			return // the deadline: nothing came
		}
		if f.str("t") == "batch" {
			c.t.Fatalf("unexpected batch: %v", f)
		}
	}
}

func toFrame(v any) frame {
	switch m := v.(type) {
	case map[string]any:
		return frame(m)
	case frame:
		return m
	}
	return frame{}
}

// adminPost POSTs a JSON body to the admin API with key.
func adminPost(t testing.TB, srv *relay.Server, key, path string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.AdminAddr()+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// ackAndBodies reads until the ack of ref and n messages came (in any
// order), and returns the ack and the bodies.
func (c *client) ackAndBodies(ref, n int) (frame, []string) {
	c.t.Helper()
	var ack frame
	var bs []string
	for ack == nil || len(bs) < n {
		f := c.next()
		switch {
		case f.str("t") == "ack" && f.num("ref") == int64(ref):
			ack = f
		case f.str("t") == "error":
			c.t.Fatalf("waiting for the ack of ref %d: %v", ref, f)
		case f.str("t") == "batch":
			for _, m := range f.list("msgs") {
				bs = append(bs, toFrame(m).str("body"))
			}
		}
	}
	return ack, bs
}
