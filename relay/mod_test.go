package relay_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/shard"
)

// ---------------------------------------------------------------------------
// Moderation helpers. Every name here starts with mod or mt so that it does
// not clash with the helpers of the other test files.

const modAPIKey = "mod-test-api-key"

// modClock is a test clock for shard.Config.Now, advanced by hand.
type modClock = relaytest.Clock

func newModClock() *modClock { return relaytest.NewClock() }

// modLog is a writer safe for concurrent use, for the relay's logger.
type modLog = relaytest.SyncBuffer

// modVias are the two paths of a moderation action.
var modVias = []string{"ws", "api"}

// modEnv is a relay with the admin API on, a fake engine clock, a captured
// log, and a connection of role mod (joined nowhere) for mod frames.
type modEnv struct {
	t     *testing.T
	srv   *relay.Server
	clock *modClock
	log   *modLog
	mod   *client
	via   string
	ref   int
}

func newModEnv(t *testing.T, via string, cfg func(*relay.Config)) *modEnv {
	t.Helper()
	e := &modEnv{t: t, clock: newModClock(), log: &modLog{}, via: via}
	e.srv = startRelay(t, func(c *relay.Config) {
		c.APIKey = modAPIKey
		c.Hub.Now = e.clock.Now
		c.Logger = slog.New(slog.NewTextHandler(e.log, nil))
		if cfg != nil {
			cfg(c)
		}
	})
	e.mod = dial(t, e.srv, dialOpts{token: token(t, "mia", "Mia", "mod")})
	return e
}

// modResult is the outcome of one moderation request.
type modResult struct {
	code    string // "" when it succeeded
	message string
	status  int // HTTP status (api) or 0 (ws)
	room    string
}

// try runs one moderation action through the env's path. req holds the
// fields of POST /api/mod (room, action, user, secs, seq).
func (e *modEnv) try(req map[string]any) modResult {
	e.t.Helper()
	if e.via == "api" {
		return modPost(e.t, e.srv, modAPIKey, req)
	}
	return modFrame(e.t, e.mod, &e.ref, req)
}

// do runs one action that must succeed.
func (e *modEnv) do(req map[string]any) {
	e.t.Helper()
	if r := e.try(req); r.code != "" {
		e.t.Fatalf("%s mod %v: refused with %s (%s), want success", e.via, req, r.code, r.message)
	}
}

// modFrame sends a mod frame with the next ref on c and reads its answer:
// an ack with that ref and the room, or an error with that ref.
func modFrame(t testing.TB, c *client, ref *int, req map[string]any) modResult {
	t.Helper()
	*ref++
	f := map[string]any{"t": "mod", "ref": *ref}
	for k, v := range req {
		f[k] = v
	}
	c.send(f)
	ans, _ := mtUntil(c, fmt.Sprintf("the answer to mod ref %d", *ref), func(f frame) bool {
		return f.num("ref") == int64(*ref) && (f.str("t") == "ack" || f.str("t") == "error")
	})
	if ans.str("t") == "ack" {
		if room, _ := req["room"].(string); ans.str("room") != room {
			t.Errorf("mod %v: ack %v, want room %q", req, ans, room)
		}
		return modResult{room: ans.str("room")}
	}
	if ans.str("message") == "" {
		t.Errorf("mod %v: error %v without a message", req, ans)
	}
	return modResult{code: ans.str("code"), message: ans.str("message"), room: ans.str("room")}
}

// modPost calls POST /api/mod with key. A refusal must be a 4xx with a
// body of exactly {error: {code, message}}; a success a 200 with a JSON
// object.
func modPost(t testing.TB, srv *relay.Server, key string, req any) modResult {
	t.Helper()
	var body []byte
	switch r := req.(type) {
	case string:
		body = []byte(r)
	default:
		var err error
		if body, err = json.Marshal(r); err != nil {
			t.Fatal(err)
		}
	}
	hr, err := http.NewRequest("POST", "http://"+srv.AdminAddr()+"/api/mod", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if key != "" {
		hr.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(hr)
	if err != nil {
		t.Fatalf("POST /api/mod %s: %v", body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST /api/mod %s: Content-Type %q, want application/json", body, ct)
	}
	if resp.StatusCode == http.StatusOK {
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Errorf("POST /api/mod %s: 200 with body %s that is not a JSON object: %v", body, b, err)
		}
		return modResult{status: resp.StatusCode}
	}
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("POST /api/mod %s: status %d (body %s), want 200 or a 4xx", body, resp.StatusCode, b)
	}
	var shape map[string]map[string]any
	if err := json.Unmarshal(b, &shape); err != nil || len(shape) != 1 || shape["error"] == nil {
		t.Errorf("POST /api/mod %s: body %s is not {error: {code, message}} (%v)", body, b, err)
		return modResult{code: "?", status: resp.StatusCode}
	}
	code, _ := shape["error"]["code"].(string)
	msg, _ := shape["error"]["message"].(string)
	if len(shape["error"]) != 2 || code == "" || msg == "" {
		t.Errorf("POST /api/mod %s: error %v, want a code and a message, nothing else", body, shape["error"])
	}
	return modResult{code: code, message: msg, status: resp.StatusCode}
}

// mtUntil reads frames of c until one satisfies pred; it returns that frame
// and the frames read before it.
func mtUntil(c *client, what string, pred func(frame) bool) (frame, []frame) {
	c.t.Helper()
	var skipped []frame
	for {
		f, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v (skipped %v)", what, err, skipped)
		}
		if pred(f) {
			return f, skipped
		}
		skipped = append(skipped, f)
	}
}

var mtRefs sync.Map // *client -> *int, refs for the helpers below

func mtNextRef(c *client) int {
	p, _ := mtRefs.LoadOrStore(c, new(int))
	r := p.(*int)
	*r += 1000 // far from the refs tests write by hand
	return *r
}

// mtSend sends body to room and returns the answer with its ref (ack or
// error), skipping every other frame.
func mtSend(c *client, room, body string) frame {
	c.t.Helper()
	ref := mtNextRef(c)
	c.send(map[string]any{"t": "send", "room": room, "body": body, "ref": ref})
	f, _ := mtUntil(c, "the answer to send "+body, func(f frame) bool {
		return f.num("ref") == int64(ref) && (f.str("t") == "ack" || f.str("t") == "error")
	})
	return f
}

// mtAck sends body to room, wants an ack, and returns its seq.
func mtAck(c *client, room, body string) int64 {
	c.t.Helper()
	f := mtSend(c, room, body)
	if f.str("t") != "ack" || f.num("seq") < 1 {
		c.t.Fatalf("send %q to %s: got %v, want an ack with a seq", body, room, f)
	}
	return f.num("seq")
}

// mtJoin sends a join with extra fields and returns the answer with its ref
// (joined or error), skipping every other frame.
func mtJoin(c *client, room string, extra map[string]any) frame {
	c.t.Helper()
	ref := mtNextRef(c)
	f := map[string]any{"t": "join", "room": room, "ref": ref}
	for k, v := range extra {
		f[k] = v
	}
	c.send(f)
	ans, _ := mtUntil(c, "the answer to join "+room, func(f frame) bool {
		return f.num("ref") == int64(ref) && (f.str("t") == "joined" || f.str("t") == "error")
	})
	return ans
}

// mtWantErr checks an error frame's code, room and retry_ms bounds
// (maxRetry 0: no retry_ms wanted).
func mtWantErr(t testing.TB, what string, f frame, code, room string, maxRetry int64) {
	t.Helper()
	if f.str("t") != "error" || f.str("code") != code {
		t.Errorf("%s: got %v, want error %s", what, f, code)
		return
	}
	if f.str("room") != room {
		t.Errorf("%s: error room %q, want %q", what, f.str("room"), room)
	}
	if maxRetry > 0 {
		if r := f.num("retry_ms"); r <= 0 || r > maxRetry {
			t.Errorf("%s: retry_ms %d, want 0 < retry_ms <= %d", what, r, maxRetry)
		}
	}
}

// mtBarrier sends a ping and returns the frames read before its pong.
func mtBarrier(c *client) []frame {
	c.t.Helper()
	ref := mtNextRef(c)
	c.send(map[string]any{"t": "ping", "ref": ref})
	_, before := mtUntil(c, "pong", func(f frame) bool { return f.str("t") == "pong" && f.num("ref") == int64(ref) })
	return before
}

// mtEvents reads the room traffic of a member until it has seen a batch
// holding seq last (or, with last 0, until pred matches an event) and
// returns it as a list like [b1 b2 b3 d2 c b4]: bN a message in a batch,
// dN a delete event, c a clear. Presence is left out.
func mtEvents(c *client, room string, last int64) []string {
	c.t.Helper()
	var out []string
	for {
		f := c.next()
		if f.str("room") != room {
			continue
		}
		switch f.str("t") {
		case "batch":
			for _, s := range seqsOf(f.list("msgs")) {
				out = append(out, fmt.Sprint("b", s))
				if s == last {
					return out
				}
			}
		case "delete":
			out = append(out, fmt.Sprint("d", f.num("seq")))
		case "clear":
			out = append(out, "c")
		case "presence":
		default:
			out = append(out, f.str("t"))
		}
	}
}

// mtHistory joins room with a fresh anonymous connection (of the given
// format) and returns the joined frame.
func mtHistory(t testing.TB, srv *relay.Server, json bool, room string, extra map[string]any) frame {
	t.Helper()
	c := dial(t, srv, dialOpts{json: json})
	f := mtJoin(c, room, extra)
	if f.str("t") != "joined" {
		t.Fatalf("join %s %v: %v", room, extra, f)
	}
	c.conn.Close()
	return f
}

func mtBodies(msgs []any) []string {
	var out []string
	for _, m := range msgs {
		b, _ := m.(map[string]any)["body"].(string)
		out = append(out, b)
	}
	return out
}

// mtModCounts returns roomcast_moderation_actions_total by action.
func mtModCounts(t testing.TB, srv *relay.Server) map[string]float64 {
	t.Helper()
	m := metricsOf(t, srv)
	out := map[string]float64{}
	for _, a := range []string{"delete", "timeout", "ban", "unban", "slow", "clear"} {
		out[a] = m[fmt.Sprintf("roomcast_moderation_actions_total{action=%q}", a)]
	}
	return out
}

// ---------------------------------------------------------------------------
// Who may moderate.

// TestModForbiddenForNonMods: role user, role bot and an anonymous viewer
// get forbidden for every action, and nothing changes.
func TestModForbiddenForNonMods(t *testing.T) {
	e := newModEnv(t, "ws", nil)
	const room = "forbid"
	alice := dial(t, e.srv, dialOpts{token: token(t, "alice", "Alice", "user")})
	bot := dial(t, e.srv, dialOpts{token: token(t, "bot1", "Bot", "bot"), json: true})
	viewer := dial(t, e.srv, dialOpts{json: true})
	if viewer.hello.str("role") != "viewer" {
		t.Fatalf("anonymous hello %v", viewer.hello)
	}
	for _, c := range []*client{alice, bot, viewer} {
		if f := mtJoin(c, room, nil); f.str("t") != "joined" {
			t.Fatalf("join: %v", f)
		}
	}
	seq := mtAck(alice, room, "keep me")
	// The joins of bot and viewer may still be in flight to alice's loop,
	// and then "keep me" waits for them: history holds only what was
	// handed out. Wait for alice's batch before the history check below.
	mtEvents(alice, room, seq)
	before := mtModCounts(t, e.srv)
	actions := []map[string]any{
		{"action": "delete", "seq": seq},
		{"action": "timeout", "user": "alice", "secs": 600},
		{"action": "ban", "user": "alice"},
		{"action": "unban", "user": "alice"},
		{"action": "slow", "secs": 600},
		{"action": "clear"},
	}
	for _, who := range []struct {
		name string
		c    *client
	}{{"user", alice}, {"bot", bot}, {"viewer", viewer}} {
		ref := 100
		for _, a := range actions {
			req := map[string]any{"room": room}
			for k, v := range a {
				req[k] = v
			}
			r := modFrame(t, who.c, &ref, req)
			if r.code != "forbidden" {
				t.Errorf("%s mod %v: %+v, want forbidden", who.name, req, r)
			}
		}
	}
	// Nothing changed: the message is still in history, alice is neither
	// muted, banned nor slowed, and she is still a member.
	j := mtHistory(t, e.srv, false, room, map[string]any{"history": 10})
	if got := mtBodies(j.list("history")); !slices.Equal(got, []string{"keep me"}) {
		t.Errorf("history after refused mod actions: %v", got)
	}
	s1 := mtAck(alice, room, "still here")
	s2 := mtAck(alice, room, "and again")
	if s1 != seq+1 || s2 != seq+2 {
		t.Errorf("acks %d %d after message %d", s1, s2, seq)
	}
	// An ack may come before the batch is handed out (and history holds
	// what was handed out): wait for alice's own batch first.
	mtEvents(alice, room, s2)
	if f := mtJoin(alice, room, map[string]any{"history": 10}); f.str("t") != "joined" || len(f.list("history")) != 3 {
		t.Errorf("alice rejoin: %v", f)
	}
	for _, c := range []*client{alice, bot, viewer} {
		for _, f := range mtBarrier(c) {
			if typ := f.str("t"); typ == "kicked" || typ == "delete" || typ == "clear" {
				t.Errorf("event %v after refused mod actions", f)
			}
		}
	}
	if after := mtModCounts(t, e.srv); !mapsEqual(before, after) {
		t.Errorf("moderation counters moved on refused actions: %v -> %v", before, after)
	}
	if strings.Contains(e.log.String(), "msg=moderation ") {
		t.Errorf("refused actions logged as moderation:\n%s", e.log.String())
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestModRolesModAndAdmin: both roles may moderate over WebSocket.
func TestModRolesModAndAdmin(t *testing.T) {
	e := newModEnv(t, "ws", nil)
	admin := dial(t, e.srv, dialOpts{token: token(t, "ada", "Ada", "admin"), json: true})
	ref := 0
	for _, c := range []*client{e.mod, admin} {
		if r := modFrame(t, c, &ref, map[string]any{"room": "roles", "action": "slow", "secs": 5}); r.code != "" {
			t.Errorf("%s: slow refused: %+v", c.hello.str("role"), r)
		}
		// Without a ref there is no ack; a ping right after answers first.
		c.send(map[string]any{"t": "mod", "room": "roles", "action": "slow", "secs": 0})
		for _, f := range mtBarrier(c) {
			t.Errorf("%s: mod without ref answered %v", c.hello.str("role"), f)
		}
	}
}

// ---------------------------------------------------------------------------
// delete

func TestModDelete(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			const room = "del:1"
			alice := dial(t, e.srv, dialOpts{token: token(t, "alice", "Alice", "")})
			readers := []*client{
				dial(t, e.srv, dialOpts{json: true}),
				dial(t, e.srv, dialOpts{token: token(t, "bob", "Bob", "")}),
			}
			alice.join(room, 1)
			for _, r := range readers {
				r.join(room, 1)
			}
			for i := 1; i <= 3; i++ {
				if s := mtAck(alice, room, fmt.Sprint("m", i)); s != int64(i) {
					t.Fatalf("seq %d, want %d", s, i)
				}
			}
			for _, r := range readers {
				if got := mtEvents(r, room, 3); !slices.Equal(got, []string{"b1", "b2", "b3"}) {
					t.Fatalf("before delete: %v", got)
				}
			}

			e.do(map[string]any{"room": room, "action": "delete", "seq": 2})
			for i, r := range readers {
				f := r.expect("delete")
				if f.str("room") != room || f.num("seq") != 2 {
					t.Errorf("reader %d: delete event %v, want room %s seq 2", i, f, room)
				}
			}

			// In order with the traffic: a delete right after an ack comes
			// after that message's batch (if it went out at all) and before
			// the next message.
			if s := mtAck(alice, room, "m4"); s != 4 {
				t.Fatalf("seq %d, want 4", s)
			}
			e.do(map[string]any{"room": room, "action": "delete", "seq": 4})
			if s := mtAck(alice, room, "m5"); s != 5 {
				t.Fatalf("seq %d, want 5", s)
			}
			for i, r := range readers {
				got := mtEvents(r, room, 5)
				if !slices.Equal(got, []string{"b4", "d4", "b5"}) && !slices.Equal(got, []string{"d4", "b5"}) {
					t.Errorf("reader %d: events %v, want [b4 d4 b5] (or [d4 b5] if deleted before its flush)", i, got)
				}
			}

			// Deleted means gone from joined.history and from resume; gap
			// stays false.
			for _, js := range []bool{false, true} {
				for _, c := range []struct {
					extra map[string]any
					want  []int64
				}{
					{map[string]any{"history": 10}, []int64{1, 3, 5}},
					{map[string]any{"history": 2}, []int64{3, 5}},
					{map[string]any{"history": 1}, []int64{5}},
					{map[string]any{"since": 0}, []int64{1, 3, 5}},
					{map[string]any{"since": 1}, []int64{3, 5}},
					{map[string]any{"since": 2}, []int64{3, 5}},
					{map[string]any{"since": 3}, []int64{5}},
					{map[string]any{"since": 4}, []int64{5}},
					{map[string]any{"since": 5}, nil},
				} {
					j := mtHistory(t, e.srv, js, room, c.extra)
					if got := seqsOf(j.list("history")); !slices.Equal(got, c.want) || j["gap"] != false || j.num("seq") != 5 {
						t.Errorf("json=%v join %v: history %v gap %v seq %d, want %v gap false seq 5", js, c.extra, got, j["gap"], j.num("seq"), c.want)
					}
					for _, b := range mtBodies(j.list("history")) {
						if b == "m2" || b == "m4" {
							t.Errorf("json=%v join %v: deleted body %q in history", js, c.extra, b)
						}
					}
				}
			}
			// A member's repeated join (resume on the same connection) too.
			if j := mtJoin(readers[1], room, map[string]any{"since": 0}); !slices.Equal(seqsOf(j.list("history")), []int64{1, 3, 5}) || j["gap"] != false {
				t.Errorf("rejoin since 0: %v", j)
			}

			// Unknown, already deleted and future seqs are bad requests.
			for _, seq := range []int{2, 4, 99} {
				r := e.try(map[string]any{"room": room, "action": "delete", "seq": seq})
				if r.code != "bad_request" || (via == "api" && r.status != http.StatusBadRequest) {
					t.Errorf("delete seq %d: %+v, want bad_request (400 on the API)", seq, r)
				}
			}
			if r := e.try(map[string]any{"room": "del:never", "action": "delete", "seq": 1}); r.code != "bad_request" {
				t.Errorf("delete in an empty room: %+v, want bad_request", r)
			}
			for _, r := range readers {
				for _, f := range mtBarrier(r) {
					if f.str("t") == "delete" {
						t.Errorf("a refused delete sent %v", f)
					}
				}
			}
		})
	}
}

// TestModDeleteWithoutHistory: in a room that keeps no history, members
// still displayed the message, so a delete must still reach them.
func TestModDeleteWithoutHistory(t *testing.T) {
	e := newModEnv(t, "api", func(c *relay.Config) { c.History = -1 })
	const room = "nohist"
	alice := dial(t, e.srv, dialOpts{token: token(t, "alice", "Alice", "")})
	reader := dial(t, e.srv, dialOpts{json: true})
	alice.join(room, 1)
	reader.join(room, 1)
	seq := mtAck(alice, room, "oops")
	mtEvents(reader, room, seq)
	e.do(map[string]any{"room": room, "action": "delete", "seq": seq})
	if f := reader.expect("delete"); f.num("seq") != seq {
		t.Errorf("delete event %v", f)
	}
}

// ---------------------------------------------------------------------------
// clear

func TestModClear(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			const room = "clr:1"
			alice := dial(t, e.srv, dialOpts{token: token(t, "alice", "Alice", "")})
			readers := []*client{
				dial(t, e.srv, dialOpts{json: true}),
				dial(t, e.srv, dialOpts{token: token(t, "bob", "Bob", "")}),
			}
			alice.join(room, 1)
			for _, r := range readers {
				r.join(room, 1)
			}
			for i := 1; i <= 3; i++ {
				mtAck(alice, room, fmt.Sprint("m", i))
			}
			for _, r := range readers {
				mtEvents(r, room, 3)
			}

			e.do(map[string]any{"room": room, "action": "clear"})
			for i, r := range readers {
				if f := r.expect("clear"); f.str("room") != room {
					t.Errorf("reader %d: clear event %v", i, f)
				}
			}
			check := func(when string, want []int64) {
				t.Helper()
				for _, js := range []bool{false, true} {
					for _, extra := range []map[string]any{
						{"history": 100}, {"since": 0}, {"since": 1}, {"since": 2}, {"since": 3},
					} {
						var w []int64
						for _, s := range want {
							if since, ok := extra["since"].(int); !ok || int64(since) < s {
								w = append(w, s)
							}
						}
						j := mtHistory(t, e.srv, js, room, extra)
						if got := seqsOf(j.list("history")); !slices.Equal(got, w) || j["gap"] != false {
							t.Errorf("%s: json=%v join %v: history %v gap %v, want %v gap false", when, js, extra, got, j["gap"], w)
						}
						if j.list("history") == nil {
							t.Errorf("%s: joined without a history list: %v", when, j)
						}
					}
				}
			}
			check("after clear", nil)

			// New messages after a clear are kept.
			if s := mtAck(alice, room, "m4"); s != 4 {
				t.Fatalf("seq %d after clear, want 4", s)
			}
			for i, r := range readers {
				if got := mtEvents(r, room, 4); !slices.Equal(got, []string{"b4"}) {
					t.Errorf("reader %d after clear: %v", i, got)
				}
			}
			check("after a message following clear", []int64{4})
			if j := mtJoin(readers[1], room, map[string]any{"since": 0}); !slices.Equal(seqsOf(j.list("history")), []int64{4}) || j["gap"] != false {
				t.Errorf("rejoin since 0 after clear: %v", j)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// timeout

func TestModTimeout(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			const room, other = "to:1", "to:2"
			carolTok := token(t, "carol", "Carol", "")
			c1 := dial(t, e.srv, dialOpts{token: carolTok})
			c2 := dial(t, e.srv, dialOpts{token: carolTok, json: true})
			dave := dial(t, e.srv, dialOpts{token: token(t, "dave", "Dave", "")})
			for _, c := range []*client{c1, c2} {
				c.join(room, 1)
				c.join(other, 2)
			}
			dave.join(room, 1)

			e.do(map[string]any{"room": room, "action": "timeout", "user": "carol", "secs": 30})
			for i, c := range []*client{c1, c2} {
				mtWantErr(t, fmt.Sprint("carol conn ", i+1), mtSend(c, room, "hi"), "muted", room, 30000)
				// Still joined: a timeout mutes, it does not kick.
				if f := mtJoin(c, room, nil); f.str("t") != "joined" {
					t.Errorf("carol conn %d rejoin while muted: %v", i+1, f)
				}
			}
			first := mtAck(dave, room, "dave speaks") // others unaffected
			mtAck(c1, other, "other room")            // other rooms unaffected
			mtAck(c2, other, "other room")

			// Reconnecting does not lift it.
			c1.conn.Close()
			c3 := dial(t, e.srv, dialOpts{token: carolTok})
			if f := mtJoin(c3, room, nil); f.str("t") != "joined" {
				t.Fatalf("carol reconnect join: %v", f)
			}
			mtWantErr(t, "carol reconnected", mtSend(c3, room, "hi"), "muted", room, 30000)

			// It counts down on the engine's clock, and ends on time.
			e.clock.Advance(10 * time.Second)
			mtWantErr(t, "carol after 10s", mtSend(c3, room, "hi"), "muted", room, 20000)
			e.clock.Advance(19 * time.Second)
			mtWantErr(t, "carol after 29s", mtSend(c2, room, "hi"), "muted", room, 1000)
			e.clock.Advance(time.Second)
			if s := mtAck(c3, room, "back"); s != first+1 {
				t.Errorf("first seq after the timeout %d, want %d (muted sends must not be sequenced)", s, first+1)
			}
			mtAck(c2, room, "back too")

			// A new timeout replaces the old one; a timeout of someone else
			// leaves carol alone.
			e.do(map[string]any{"room": room, "action": "timeout", "user": "dave", "secs": 5})
			mtWantErr(t, "dave", mtSend(dave, room, "x"), "muted", room, 5000)
			mtAck(c3, room, "carol unaffected")
			e.do(map[string]any{"room": room, "action": "timeout", "user": "dave", "secs": 600})
			mtWantErr(t, "dave re-timed out", mtSend(dave, room, "x"), "muted", room, 600000)
			if f := mtSend(dave, room, "x"); f.num("retry_ms") <= 5000 {
				t.Errorf("a longer timeout did not replace the shorter one: %v", f)
			}
		})
	}
}

// TestModTimeoutSurvivesEmptyRoom: a timeout must outlast the room being
// empty (the user leaving and coming back later).
func TestModTimeoutSurvivesEmptyRoom(t *testing.T) {
	e := newModEnv(t, "api", func(c *relay.Config) { c.Hub.EmptyRoomTTL = 20 * time.Millisecond })
	const room = "to:empty"
	e.do(map[string]any{"room": room, "action": "timeout", "user": "carol", "secs": 3600})
	e.srv.Hub().Room("to:control") // an empty room without moderation, reaped
	e.clock.Advance(time.Minute)
	eventually(t, "a reap pass", func() bool { return e.srv.Hub().Lookup("to:control") == nil })
	carol := dial(t, e.srv, dialOpts{token: token(t, "carol", "Carol", "")})
	carol.join(room, 1)
	mtWantErr(t, "carol after the room was empty", mtSend(carol, room, "hi"), "muted", room, 3600_000-60_000)
}

// ---------------------------------------------------------------------------
// ban / unban

func TestModBan(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			const room, other = "ban:1", "ban:2"
			eveTok := token(t, "eve", "Eve", "")
			e1 := dial(t, e.srv, dialOpts{token: eveTok})
			e2 := dial(t, e.srv, dialOpts{token: eveTok, json: true})
			e3 := dial(t, e.srv, dialOpts{token: eveTok}) // in the other room only
			frank := dial(t, e.srv, dialOpts{token: token(t, "frank", "Frank", "")})
			e1.join(room, 1)
			e2.join(room, 1)
			e1.join(other, 2)
			e3.join(other, 1)
			j := frank.join(room, 1)
			if j.num("count") != 3 {
				t.Fatalf("frank joined with count %d, want 3", j.num("count"))
			}

			e.do(map[string]any{"room": room, "action": "ban", "user": "eve"})
			for i, c := range []*client{e1, e2} {
				f, _ := mtUntil(c, "kicked", func(f frame) bool { return f.str("t") == "kicked" })
				if f.str("room") != room || f.str("reason") == "" {
					t.Errorf("eve conn %d: kicked %v, want room %s and a reason", i+1, f, room)
				}
			}
			// The others see eve leave.
			f, _ := mtUntil(frank, "eve's leave", func(f frame) bool {
				return f.str("t") == "presence" && slices.ContainsFunc(f.list("leaves"), func(v any) bool { return v == "eve" })
			})
			if f.num("count") != 1 {
				t.Errorf("presence after the ban: %v, want count 1", f)
			}
			eventually(t, "the room to hold frank only", func() bool { return e.srv.Hub().Lookup(room).Info().Count == 1 })

			// Kicked connections are out: sends are refused, batches stop.
			for i, c := range []*client{e1, e2} {
				f := mtSend(c, room, "let me in")
				if f.str("t") != "error" || (f.str("code") != "not_joined" && f.str("code") != "banned") {
					t.Errorf("eve conn %d send after kick: %v, want not_joined or banned", i+1, f)
				}
				mtWantErr(t, fmt.Sprint("eve conn ", i+1, " rejoin"), mtJoin(c, room, nil), "banned", room, 0)
			}
			mtAck(frank, room, "bye eve")
			for i, c := range []*client{e1, e2} {
				for _, f := range mtBarrier(c) {
					if f.str("room") == room {
						t.Errorf("eve conn %d got %v after the kick", i+1, f)
					}
				}
			}
			// Other rooms are unaffected, and a connection that was not in
			// the room is not told anything.
			mtAck(e1, other, "still here")
			for _, f := range mtBarrier(e3) {
				if f.str("t") == "kicked" {
					t.Errorf("eve's connection outside the room got %v", f)
				}
			}
			mtAck(e3, other, "me too")

			// Reconnecting does not lift the ban.
			e2.conn.Close()
			e4 := dial(t, e.srv, dialOpts{token: eveTok, json: true})
			mtWantErr(t, "eve reconnected", mtJoin(e4, room, nil), "banned", room, 0)
			if f := mtSend(e4, room, "hi"); f.str("t") != "error" || (f.str("code") != "not_joined" && f.str("code") != "banned") {
				t.Errorf("eve reconnected send: %v", f)
			}
			if f := mtJoin(e4, other, nil); f.str("t") != "joined" {
				t.Fatalf("eve reconnected, other room: %v", f)
			}
			mtAck(e4, other, "fine here")

			// A ban of someone not connected holds when they come.
			e.do(map[string]any{"room": room, "action": "ban", "user": "ghost"})
			ghost := dial(t, e.srv, dialOpts{token: token(t, "ghost", "", "")})
			mtWantErr(t, "ghost", mtJoin(ghost, room, nil), "banned", room, 0)

			// unban lets eve back in.
			e.do(map[string]any{"room": room, "action": "unban", "user": "eve"})
			if f := mtJoin(e4, room, nil); f.str("t") != "joined" {
				t.Fatalf("eve after unban: %v", f)
			}
			if f := mtJoin(e1, room, nil); f.str("t") != "joined" {
				t.Fatalf("eve conn 1 after unban: %v", f)
			}
			mtAck(e4, room, "thanks")
			mtWantErr(t, "ghost still banned", mtJoin(ghost, room, nil), "banned", room, 0)
		})
	}
}

// ---------------------------------------------------------------------------
// slow

func TestModSlow(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			const room, other = "slow:1", "slow:2"
			pia := dial(t, e.srv, dialOpts{token: token(t, "pia", "Pia", "")})
			pia2 := dial(t, e.srv, dialOpts{token: token(t, "pia", "Pia", ""), json: true})
			mo := dial(t, e.srv, dialOpts{token: token(t, "mo", "Mo", "mod")})
			ad := dial(t, e.srv, dialOpts{token: token(t, "ad", "Ad", "admin"), json: true})
			for _, c := range []*client{pia, pia2, mo, ad} {
				c.join(room, 1)
			}
			pia.join(other, 2)

			e.do(map[string]any{"room": room, "action": "slow", "secs": 10})
			mtAck(pia, room, "one")
			mtWantErr(t, "pia too soon", mtSend(pia, room, "two"), "slow_mode", room, 10000)
			mtWantErr(t, "pia's other connection", mtSend(pia2, room, "two"), "slow_mode", room, 10000)
			for i := 0; i < 3; i++ { // mods and admins are exempt
				mtAck(mo, room, fmt.Sprint("mod ", i))
				mtAck(ad, room, fmt.Sprint("admin ", i))
			}
			mtAck(pia, other, "a") // other rooms unaffected
			mtAck(pia, other, "b")

			e.clock.Advance(4 * time.Second)
			mtWantErr(t, "pia after 4s", mtSend(pia, room, "two"), "slow_mode", room, 6000)
			e.clock.Advance(6 * time.Second)
			mtAck(pia2, room, "two")
			mtWantErr(t, "pia right after", mtSend(pia, room, "three"), "slow_mode", room, 10000)

			e.do(map[string]any{"room": room, "action": "slow", "secs": 0})
			for i := 0; i < 3; i++ {
				mtAck(pia, room, fmt.Sprint("free ", i))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Refused requests.

func TestModBadRequests(t *testing.T) {
	for _, via := range modVias {
		t.Run(via, func(t *testing.T) {
			e := newModEnv(t, via, nil)
			seq, err := e.srv.Hub().Publish("bad:1", &shard.Message{From: "system", Body: "x"})
			if err != nil {
				t.Fatal(err)
			}
			before := mtModCounts(t, e.srv)
			for _, c := range []struct {
				req  map[string]any
				code string
			}{
				{map[string]any{"room": "bad:1", "action": "delete"}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "delete", "seq": 0}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "delete", "seq": seq + 1}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "timeout", "secs": 60}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "timeout", "user": "u"}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "timeout", "user": "u", "secs": 0}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "timeout", "user": "u", "secs": -5}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "timeout", "user": "u", "secs": 15 * 24 * 3600}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "ban"}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "ban", "user": ""}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "unban"}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "slow", "secs": -1}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": "nuke"}, "bad_request"},
				{map[string]any{"room": "bad:1", "action": ""}, "bad_request"},
				{map[string]any{"room": "bad:1"}, "bad_request"},
				{map[string]any{"room": "bad room!", "action": "clear"}, "bad_room"},
				{map[string]any{"room": "", "action": "clear"}, "bad_room"},
				{map[string]any{"action": "ban", "user": "u"}, "bad_room"},
				{map[string]any{"room": ":x", "action": "delete", "seq": 1}, "bad_room"},
				{map[string]any{"room": strings.Repeat("r", 65), "action": "slow", "secs": 1}, "bad_room"},
			} {
				r := e.try(c.req)
				if r.code != c.code {
					t.Errorf("mod %v: %+v, want %s", c.req, r, c.code)
				}
				if via == "api" && r.status != http.StatusBadRequest {
					t.Errorf("mod %v: HTTP %d, want 400", c.req, r.status)
				}
			}
			if via == "api" {
				for _, body := range []string{`{"room":"bad:1","action":`, `[1,2]`, `{"room":"bad:1","action":"delete","seq":"one"}`} {
					if r := modPost(t, e.srv, modAPIKey, body); r.code != "bad_request" || r.status != http.StatusBadRequest {
						t.Errorf("POST /api/mod %s: %+v, want 400 bad_request", body, r)
					}
				}
				if r := modPost(t, e.srv, "", map[string]any{"room": "bad:1", "action": "clear"}); r.status != http.StatusUnauthorized {
					t.Errorf("POST /api/mod without the key: %+v, want 401", r)
				}
				if r := modPost(t, e.srv, "wrong", map[string]any{"room": "bad:1", "action": "clear"}); r.status != http.StatusUnauthorized {
					t.Errorf("POST /api/mod with a wrong key: %+v, want 401", r)
				}
			} else {
				// Errors do not close the connection.
				mtBarrier(e.mod)
			}
			if after := mtModCounts(t, e.srv); !mapsEqual(before, after) {
				t.Errorf("refused actions were counted: %v -> %v", before, after)
			}
			if strings.Contains(e.log.String(), "msg=moderation ") {
				t.Errorf("refused actions were logged as moderation:\n%s", e.log.String())
			}
			// The message survived every refused action.
			j := mtHistory(t, e.srv, true, "bad:1", map[string]any{"history": 10})
			if got := seqsOf(j.list("history")); !slices.Equal(got, []int64{int64(seq)}) {
				t.Errorf("history after refused actions: %v", got)
			}
		})
	}
}

// TestModAPIWithoutKey: with no API key configured, /api/mod is off (403)
// and changes nothing.
func TestModAPIWithoutKey(t *testing.T) {
	srv := startRelay(t, nil)
	if _, err := srv.Hub().Publish("nokey", &shard.Message{From: "system", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	r := modPost(t, srv, "anything", map[string]any{"room": "nokey", "action": "clear"})
	if r.status != http.StatusForbidden {
		t.Errorf("POST /api/mod with no key configured: %+v, want 403", r)
	}
	if j := mtHistory(t, srv, false, "nokey", map[string]any{"history": 5}); len(j.list("history")) != 1 {
		t.Errorf("history after a refused clear: %v", j)
	}
}

// ---------------------------------------------------------------------------
// Metrics and the audit log.

// mtEveryAction runs each action once in room through e's path. The room
// must hold a message with seq.
func mtEveryAction(e *modEnv, room string, seq uint64) {
	e.t.Helper()
	e.do(map[string]any{"room": room, "action": "delete", "seq": seq})
	e.do(map[string]any{"room": room, "action": "timeout", "user": "tim", "secs": 60})
	e.do(map[string]any{"room": room, "action": "ban", "user": "bea"})
	e.do(map[string]any{"room": room, "action": "unban", "user": "bea"})
	e.do(map[string]any{"room": room, "action": "slow", "secs": 3})
	e.do(map[string]any{"room": room, "action": "clear"})
}

func TestModMetrics(t *testing.T) {
	e := newModEnv(t, "ws", nil)
	publish := func(room string) uint64 {
		seq, err := e.srv.Hub().Publish(room, &shard.Message{From: "system", Body: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	before := mtModCounts(t, e.srv)
	for a, v := range before {
		if v != 0 {
			t.Errorf("%s counted %v before any action", a, v)
		}
	}
	// Refused actions count nothing.
	e.try(map[string]any{"room": "m:1", "action": "delete", "seq": 42})
	e.try(map[string]any{"room": "m:1", "action": "nope"})
	viewer := dial(t, e.srv, dialOpts{})
	ref := 0
	modFrame(t, viewer, &ref, map[string]any{"room": "m:1", "action": "clear"})

	mtEveryAction(e, "m:1", publish("m:1"))
	check := func(want float64) {
		t.Helper()
		got := mtModCounts(t, e.srv)
		for a, v := range got {
			if v != want {
				t.Errorf("roomcast_moderation_actions_total{action=%q} = %v, want %v", a, v, want)
			}
		}
	}
	check(1)
	e.via = "api"
	mtEveryAction(e, "m:2", publish("m:2"))
	check(2)
}

// mtLogLine parses one line of slog's text handler into its keys.
func mtLogLine(line string) map[string]string {
	out := map[string]string{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		s = rest
	}
	return out
}

func TestModAuditLog(t *testing.T) {
	e := newModEnv(t, "ws", nil)
	const room = "audit:1"
	publish := func() uint64 {
		seq, err := e.srv.Hub().Publish(room, &shard.Message{From: "system", Body: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	mtEveryAction(e, room, publish())
	e.via = "api"
	mtEveryAction(e, room, publish())
	// A refused one adds no moderation line.
	e.try(map[string]any{"room": room, "action": "ban"})

	type key struct{ actor, action string }
	seen := map[key][]map[string]string{}
	for _, line := range strings.Split(e.log.String(), "\n") {
		kv := mtLogLine(line)
		if kv["msg"] != "moderation" {
			continue
		}
		if kv["room"] != room {
			t.Errorf("audit line with room %q: %s", kv["room"], line)
		}
		k := key{kv["actor"], kv["action"]}
		seen[k] = append(seen[k], kv)
	}
	total := 0
	for _, actor := range []string{"mia", "api"} {
		for _, action := range []string{"delete", "timeout", "ban", "unban", "slow", "clear"} {
			lines := seen[key{actor, action}]
			total += len(lines)
			if len(lines) != 1 {
				t.Errorf("actor %s action %s: %d audit lines, want 1", actor, action, len(lines))
				continue
			}
			kv := lines[0]
			switch action {
			case "timeout":
				if kv["user"] != "tim" || kv["secs"] != "60" {
					t.Errorf("timeout audit line %v: want user tim secs 60", kv)
				}
			case "ban", "unban":
				if kv["user"] != "bea" {
					t.Errorf("%s audit line %v: want user bea", action, kv)
				}
			case "delete":
				if kv["seq"] == "" || kv["seq"] == "0" {
					t.Errorf("delete audit line %v: want the seq", kv)
				}
			}
		}
	}
	var n int
	for _, v := range seen {
		n += len(v)
	}
	if n != total {
		t.Errorf("%d moderation audit lines, want %d:\n%s", n, total, e.log.String())
	}
}

// ---------------------------------------------------------------------------
// Server-Sent Events readers are members too.

type mtSSE struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// mtOpenSSE opens GET /sse?query on the public listener and returns the
// status and, for a 200, the event stream.
func mtOpenSSE(t testing.TB, srv *relay.Server, query string, headers ...string) (int, *mtSSE) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /sse?" + query + " HTTP/1.1\r\nHost: relay\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET /sse?%s: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return resp.StatusCode, nil
	}
	return resp.StatusCode, &mtSSE{t: t, conn: conn, br: bufio.NewReader(resp.Body)}
}

type mtEvent struct{ name, id, data string }

// read returns the next event other than presence.
func (s *mtSSE) read(timeout time.Duration) (mtEvent, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	var ev mtEvent
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name == "presence" || ev.name == "" && ev.data == "" {
				ev = mtEvent{}
				continue
			}
			return ev, nil
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
}

func (s *mtSSE) next() mtEvent {
	s.t.Helper()
	ev, err := s.read(5 * time.Second)
	if err != nil {
		s.t.Fatalf("SSE: %v", err)
	}
	return ev
}

// wantMsgs reads msg events and checks their ids.
func (s *mtSSE) wantMsgs(what string, ids ...int) {
	s.t.Helper()
	for _, id := range ids {
		if ev := s.next(); ev.name != "msg" || !isEventID(ev.id, uint64(id)) {
			s.t.Fatalf("%s: event %+v, want msg %d", what, ev, id)
		}
	}
}

func (s *mtSSE) wantFrame(what, name string, want map[string]any) {
	s.t.Helper()
	ev := s.next()
	var got map[string]any
	if ev.name != name || json.Unmarshal([]byte(ev.data), &got) != nil {
		s.t.Fatalf("%s: event %+v, want %s", what, ev, name)
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			s.t.Errorf("%s: %s data %s, want %s=%v", what, name, ev.data, k, v)
		}
	}
}

func TestModSSE(t *testing.T) {
	e := newModEnv(t, "api", nil)
	const room = "sse:1"
	alice := dial(t, e.srv, dialOpts{token: token(t, "alice", "Alice", "")})
	alice.join(room, 1)
	for i := 1; i <= 3; i++ {
		mtAck(alice, room, fmt.Sprint("m", i))
	}
	_, s1 := mtOpenSSE(t, e.srv, "room="+room+"&history=10")
	s1.wantMsgs("history", 1, 2, 3)

	e.do(map[string]any{"room": room, "action": "delete", "seq": 2})
	s1.wantFrame("after delete", "delete", map[string]any{"t": "delete", "room": room, "seq": 2})
	for _, q := range []string{"since=0", "history=10"} {
		_, s := mtOpenSSE(t, e.srv, "room="+room+"&"+q)
		s.wantMsgs(q+" after delete", 1, 3)
	}
	_, s2 := mtOpenSSE(t, e.srv, "room="+room, "Last-Event-ID: 1")
	mtAck(alice, room, "m4")
	s2.wantMsgs("Last-Event-ID 1 after delete", 3, 4)
	s1.wantMsgs("live", 4)

	e.do(map[string]any{"room": room, "action": "clear"})
	s1.wantFrame("after clear", "clear", map[string]any{"t": "clear", "room": room})
	_, s3 := mtOpenSSE(t, e.srv, "room="+room+"&since=0")
	mtAck(alice, room, "m5")
	s3.wantMsgs("since 0 after clear", 5)
	s1.wantMsgs("live after clear", 5)

	// A banned user's stream is kicked, and cannot come back.
	eveTok := token(t, "eve", "Eve", "")
	_, se := mtOpenSSE(t, e.srv, "room="+room+"&token="+eveTok)
	e.do(map[string]any{"room": room, "action": "ban", "user": "eve"})
	se.wantFrame("eve's stream after the ban", "kicked", map[string]any{"room": room})
	mtAck(alice, room, "m6")
	s1.wantMsgs("live after ban", 6)
	if ev, err := se.read(200 * time.Millisecond); err == nil && ev.name == "msg" {
		t.Errorf("eve's stream got %+v after the kick", ev)
	}
	if status, _ := mtOpenSSE(t, e.srv, "room="+room+"&token="+eveTok); status != http.StatusForbidden {
		t.Errorf("banned user's SSE: status %d, want 403", status)
	}
}

// TestModRoomsClaim: a mod whose token lists rooms moderates those only.
func TestModRoomsClaim(t *testing.T) {
	e := newModEnv(t, "ws", nil)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "rmod", "role": "mod",
		"rooms": []string{"stream:*"}, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, e.srv, dialOpts{token: tok})
	ref := 0
	if r := modFrame(t, c, &ref, map[string]any{"room": "stream:1", "action": "slow", "secs": 5}); r.code != "" {
		t.Errorf("mod in an allowed room: %+v", r)
	}
	if r := modFrame(t, c, &ref, map[string]any{"room": "lobby", "action": "ban", "user": "x"}); r.code != "forbidden" {
		t.Errorf("mod in a room outside the token's rooms: %+v, want forbidden", r)
	}
	if e.srv.Hub().Room("lobby").Banned("x") {
		t.Errorf("a forbidden ban took effect")
	}
}
