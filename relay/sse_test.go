package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
)

// sseEvent is one dispatched Server-Sent Event, or one comment line.
type sseEvent struct {
	id        string
	hasID     bool
	event     string // "" means the default, "message"
	data      string
	dataLines int
	comment   string // set (with nothing else) for a ": ..." line
	isComment bool
}

// sseMsg is the data of a msg event.
type sseMsg struct {
	Seq    uint64            `json:"seq"`
	TS     int64             `json:"ts"`
	From   string            `json:"from"`
	Name   string            `json:"name"`
	Body   string            `json:"body"`
	Badges []string          `json:"badges"`
	Meta   map[string]string `json:"meta"`
}

// sseStream reads one event stream in a goroutine.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	events chan sseEvent
	ended  chan struct{} // closed when the stream ends
	err    error         // why it ended, once ended is closed
	retry  atomic.Int64  // the last retry: field, in ms
	quit   chan struct{}
}

// sseClient makes one connection per request: the relay closes each
// stream's connection anyway.
var sseClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// sseGet requests the public listener's path (with query), with headers
// given as name, value pairs. The caller closes the body.
func sseGet(t testing.TB, srv *relay.Server, pathQuery string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+srv.Addr()+pathQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := sseClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("GET %s: %v", pathQuery, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// openSSE opens /sse with query and checks the response head.
func openSSE(t testing.TB, srv *relay.Server, query string, headers ...string) *sseStream {
	t.Helper()
	resp := sseGet(t, srv, "/sse?"+query, headers...)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /sse?%s: status %d (%s), want 200", query, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("Cache-Control %q, want no-cache", cc)
	}
	return readSSE(t, resp.Body, resp)
}

// readSSE parses an event stream from r until it ends.
func readSSE(t testing.TB, r io.ReadCloser, resp *http.Response) *sseStream {
	s := &sseStream{t: t, resp: resp, events: make(chan sseEvent, 1<<16), ended: make(chan struct{}), quit: make(chan struct{})}
	t.Cleanup(func() { close(s.quit); r.Close() })
	go func() {
		defer close(s.ended)
		br := bufio.NewReader(r)
		var ev sseEvent
		var data []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				s.err = err // a partial line or event at the end is dropped, as browsers do
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if line == "" { // dispatch
				if len(data) > 0 {
					ev.data, ev.dataLines = strings.Join(data, "\n"), len(data)
					select {
					case s.events <- ev:
					case <-s.quit:
						return
					}
				}
				ev, data = sseEvent{}, nil
				continue
			}
			if strings.HasPrefix(line, ":") {
				select {
				case s.events <- sseEvent{comment: line[1:], isComment: true}:
				case <-s.quit:
					return
				}
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id, ev.hasID = value, true
			case "event":
				ev.event = value
			case "data":
				data = append(data, value)
			case "retry":
				if n, err := strconv.ParseInt(value, 10, 64); err == nil {
					s.retry.Store(n)
				}
			}
		}
	}()
	return s
}

// next returns the next event or comment, or false after d or at the end of
// the stream.
func (s *sseStream) next(d time.Duration) (sseEvent, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev := <-s.events:
		return ev, true
	case <-s.ended:
		select { // events parsed before the end come first
		case ev := <-s.events:
			return ev, true
		default:
			return sseEvent{}, false
		}
	case <-timer.C:
		return sseEvent{}, false
	}
}

// nextEvent returns the next event that is not a comment, skipping
// presence events unless skipPresence is false. It fails the test if none
// comes within 5 seconds.
func (s *sseStream) nextEvent(skipPresence bool) sseEvent {
	s.t.Helper()
	for {
		ev, ok := s.next(5 * time.Second)
		if !ok {
			s.t.Fatalf("no event within 5s (stream ended: %v)", s.isEnded())
		}
		if ev.isComment || (skipPresence && ev.event == "presence") {
			continue
		}
		return ev
	}
}

func (s *sseStream) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// msg reads the next event, which must be a well-formed msg event.
func (s *sseStream) msg() sseMsg {
	s.t.Helper()
	return checkMsgEvent(s.t, s.nextEvent(true))
}

func checkMsgEvent(t testing.TB, ev sseEvent) sseMsg {
	t.Helper()
	if ev.event != "msg" {
		t.Fatalf("got event %q (data %s), want msg", ev.event, ev.data)
	}
	if ev.dataLines != 1 {
		t.Fatalf("msg event with %d data lines, want 1", ev.dataLines)
	}
	var m sseMsg
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("msg data %q: %v", ev.data, err)
	}
	if !ev.hasID || !isEventID(ev.id, m.Seq) {
		t.Fatalf("msg event id %q (present %v), want <epoch>:%d", ev.id, ev.hasID, m.Seq)
	}
	if m.Seq == 0 || m.TS <= 0 || m.From == "" {
		t.Fatalf("msg %s lacks seq, ts or from", ev.data)
	}
	return m
}

// expectSeqs reads msg events, which must have exactly these seqs.
func (s *sseStream) expectSeqs(seqs ...uint64) []sseMsg {
	s.t.Helper()
	var out []sseMsg
	for _, want := range seqs {
		m := s.msg()
		if m.Seq != want {
			s.t.Fatalf("got msg seq %d, want %d (of %v)", m.Seq, want, seqs)
		}
		out = append(out, m)
	}
	return out
}

// expectQuiet checks that no event but comments and presence comes within d.
func (s *sseStream) expectQuiet(d time.Duration) {
	s.t.Helper()
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		ev, ok := s.next(left)
		if !ok {
			return
		}
		if !ev.isComment && ev.event != "presence" {
			s.t.Fatalf("unexpected event %q id %q: %s", ev.event, ev.id, ev.data)
		}
	}
}

// expectEnd checks that the relay ends the stream within 5 seconds.
func (s *sseStream) expectEnd() {
	s.t.Helper()
	select {
	case <-s.ended:
	case <-time.After(5 * time.Second):
		s.t.Fatal("the stream is still open")
	}
}

// ssePublish publishes through the admin API and returns the seq.
func ssePublish(t testing.TB, srv *relay.Server, room, body string) uint64 {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"room": room, "body": body})
	var out struct{ Seq uint64 }
	api(t, srv, "POST", "/api/publish", string(b), &out)
	return out.Seq
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// sseToken mints an HS256 token with extra claims.
func sseToken(t testing.TB, sub string, extra jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub}
	for k, v := range extra {
		c[k] = v
	}
	return relaytest.Sign(t, testSecret, c)
}

// TestSSEFormatAndHistory: the response head, the retry field, and
// history=n as the latest n messages, each as id/event msg/one data line.
func TestSSEFormatAndHistory(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const room = "sse:hist"
	for i := 1; i <= 5; i++ {
		if seq := ssePublish(t, srv, room, fmt.Sprintf("m%d", i)); seq != uint64(i) {
			t.Fatalf("publish %d got seq %d", i, seq)
		}
	}
	s := openSSE(t, srv, "room="+room+"&history=3")
	msgs := s.expectSeqs(3, 4, 5)
	for i, m := range msgs {
		if m.Body != fmt.Sprintf("m%d", i+3) || m.From != "system" {
			t.Fatalf("history message %+v", m)
		}
	}
	if r := s.retry.Load(); r <= 0 {
		t.Fatalf("no retry: field before the first event (got %d)", r)
	}
	// A body with characters that need escaping stays one data line.
	body := "line one\nline two\r\n\"quoted\" <b>tag</b> ünï 🎉"
	seq := ssePublish(t, srv, room, body)
	if m := s.expectSeqs(seq)[0]; m.Body != body {
		t.Fatalf("body %q, want %q", m.Body, body)
	}
	s.expectQuiet(200 * time.Millisecond)

	// No history asked: only live messages. history=0: the same.
	for _, q := range []string{"room=" + room, "room=" + room + "&history=0"} {
		s := openSSE(t, srv, q)
		s.expectQuiet(200 * time.Millisecond)
		seq := ssePublish(t, srv, room, "live")
		s.expectSeqs(seq)
	}
	// More than kept: all that is kept.
	s = openSSE(t, srv, "room="+room+"&history=1000")
	s.expectSeqs(seqRange(1, 8)...)
}

// TestSSEResume: since and Last-Event-ID resume with exactly the messages
// after it, then live ones, nothing twice; deleted messages are skipped;
// a resume point older than history gives the latest ones.
func TestSSEResume(t *testing.T) {
	srv := startAPIRelay(t, func(c *relay.Config) { c.History = 20 })
	const room = "sse:resume"
	for i := 1; i <= 10; i++ {
		ssePublish(t, srv, room, fmt.Sprintf("m%d", i))
	}

	// A reader sees 1..10 from history, goes away, misses 11..13.
	a := openSSE(t, srv, "room="+room+"&history=100")
	a.expectSeqs(seqRange(1, 10)...)
	a.resp.Body.Close()
	for i := 11; i <= 13; i++ {
		ssePublish(t, srv, room, fmt.Sprintf("m%d", i))
	}
	// The browser's reconnect: Last-Event-ID, and the page's history param.
	b := openSSE(t, srv, "room="+room+"&history=50", "Last-Event-ID", "10")
	b.expectSeqs(11, 12, 13)
	seq := ssePublish(t, srv, room, "m14")
	b.expectSeqs(seq)
	b.expectQuiet(200 * time.Millisecond)

	// since in the query.
	c := openSSE(t, srv, "room="+room+"&since=12")
	c.expectSeqs(13, 14)
	ssePublish(t, srv, room, "m15")
	c.expectSeqs(15)
	c.expectQuiet(200 * time.Millisecond)

	// Resuming at the latest: nothing until the next message.
	d := openSSE(t, srv, "room="+room, "Last-Event-ID", " 15 ")
	d.expectQuiet(200 * time.Millisecond)
	ssePublish(t, srv, room, "m16")
	d.expectSeqs(16)

	// A deleted message is never replayed.
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"delete","seq":14}`, nil)
	e := openSSE(t, srv, "room="+room, "Last-Event-ID", "12")
	e.expectSeqs(13, 15, 16)
	e.expectQuiet(200 * time.Millisecond)

	// Older than history (20 kept: 7..26): the latest ones, all kept
	// without history=, the latest n with it.
	for i := 17; i <= 26; i++ {
		ssePublish(t, srv, room, fmt.Sprintf("m%d", i))
	}
	f := openSSE(t, srv, "room="+room, "Last-Event-ID", "2")
	want := []uint64{7, 8, 9, 10, 11, 12, 13, 15}
	want = append(want, seqRange(16, 26)...)
	f.expectSeqs(want...)
	g := openSSE(t, srv, "room="+room+"&since=2&history=3")
	g.expectSeqs(24, 25, 26)
	g.expectQuiet(100 * time.Millisecond)
}

// TestSSELiveOrder: messages from the admin API and from WebSocket users
// arrive live, in seq order, with the sender's name and badges, the same
// as a WebSocket member sees them.
func TestSSELiveOrder(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const room = "sse:live"
	s := openSSE(t, srv, "room="+room)
	watcher := dial(t, srv, dialOpts{json: true})
	watcher.join(room, 1)

	alice := dial(t, srv, dialOpts{token: sseToken(t, "alice", jwt.MapClaims{"name": "Alice", "badges": []string{"mod", "vip"}}), json: true})
	alice.join(room, 1)
	bob := dial(t, srv, dialOpts{token: sseToken(t, "bob", jwt.MapClaims{"name": "Bob"})})
	bob.join(room, 1)

	const rounds = 30
	done := make(chan struct{})
	go func() { // the admin API publishes while the users send
		defer close(done)
		for i := 0; i < rounds; i++ {
			b, _ := json.Marshal(map[string]string{"room": room, "body": fmt.Sprintf("api %d", i), "from": "game", "name": "Game"})
			r := callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), string(b))
			if r.status != http.StatusOK {
				t.Errorf("publish: %d %s", r.status, r.body)
				return
			}
		}
	}()
	for i := 0; i < rounds; i++ {
		alice.send(map[string]any{"t": "send", "room": room, "body": fmt.Sprintf("alice %d", i)})
		bob.send(map[string]any{"t": "send", "room": room, "body": fmt.Sprintf("bob %d", i)})
	}
	<-done
	const total = 3 * rounds

	// The WebSocket watcher's view, in order.
	var wsView []string
	for len(wsView) < total {
		f := watcher.next()
		for _, m := range f.list("msgs") {
			mm := m.(map[string]any)
			wsView = append(wsView, fmt.Sprintf("%v %v", mm["seq"], mm["body"]))
		}
	}
	next := map[string]int{}
	for i := 1; i <= total; i++ {
		m := s.msg()
		if m.Seq != uint64(i) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		if got := fmt.Sprintf("%d %s", m.Seq, m.Body); got != wsView[i-1] {
			t.Fatalf("SSE saw %q where WebSocket saw %q", got, wsView[i-1])
		}
		who, n, _ := strings.Cut(m.Body, " ")
		if n != strconv.Itoa(next[who]) {
			t.Fatalf("%s's messages out of order: %q after %d", who, m.Body, next[who])
		}
		next[who]++
		switch who {
		case "alice":
			if m.From != "alice" || m.Name != "Alice" || strings.Join(m.Badges, ",") != "mod,vip" {
				t.Fatalf("alice's message %+v", m)
			}
		case "bob":
			if m.From != "bob" || m.Name != "Bob" || len(m.Badges) != 0 {
				t.Fatalf("bob's message %+v", m)
			}
		case "api":
			if m.From != "game" || m.Name != "Game" {
				t.Fatalf("API message %+v", m)
			}
		}
	}
	s.expectQuiet(200 * time.Millisecond)
}

// TestSSEModerationEvents: delete and clear arrive as events whose data is
// the whole frame; cleared messages are not replayed.
func TestSSEModerationEvents(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const room = "sse:mod"
	s := openSSE(t, srv, "room="+room)
	for i := 1; i <= 3; i++ {
		ssePublish(t, srv, room, fmt.Sprintf("m%d", i))
	}
	s.expectSeqs(1, 2, 3)

	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"delete","seq":2}`, nil)
	ev := s.nextEvent(true)
	if ev.event != "delete" || ev.hasID || ev.dataLines != 1 {
		t.Fatalf("got %+v, want a delete event without id", ev)
	}
	var del map[string]any
	if err := json.Unmarshal([]byte(ev.data), &del); err != nil {
		t.Fatal(err)
	}
	if del["t"] != "delete" || del["room"] != room || del["seq"] != float64(2) || len(del) != 3 {
		t.Fatalf("delete data %s, want {t:delete, room, seq:2}", ev.data)
	}

	seq := ssePublish(t, srv, room, "m4")
	s.expectSeqs(seq) // the stream goes on

	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"clear"}`, nil)
	ev = s.nextEvent(true)
	if ev.event != "clear" || ev.hasID {
		t.Fatalf("got %+v, want a clear event without id", ev)
	}
	var clr map[string]any
	if err := json.Unmarshal([]byte(ev.data), &clr); err != nil {
		t.Fatal(err)
	}
	if clr["t"] != "clear" || clr["room"] != room || len(clr) != 2 {
		t.Fatalf("clear data %s, want {t:clear, room}", ev.data)
	}

	// Nothing of before the clear comes back, by history or resume.
	for _, q := range []string{"room=" + room + "&history=100", "room=" + room + "&since=0"} {
		r := openSSE(t, srv, q)
		r.expectQuiet(100 * time.Millisecond)
	}
	seq = ssePublish(t, srv, room, "after")
	if seq != 5 {
		t.Fatalf("seq after clear %d, want 5", seq)
	}
	s.expectSeqs(5)
}

// TestSSEPresence: in a room that lists members, presence events carry the
// frame (t, room, count, joins/leaves); anonymous readers are counted, not
// listed; SSE readers with a token are listed like any member.
func TestSSEPresence(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const room = "sse:presence"
	s := openSSE(t, srv, "room="+room)

	nextPresence := func() map[string]any {
		t.Helper()
		ev := s.nextEvent(false)
		if ev.event != "presence" || ev.hasID {
			t.Fatalf("got %+v, want a presence event without id", ev)
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(ev.data), &p); err != nil {
			t.Fatal(err)
		}
		if p["t"] != "presence" || p["room"] != room {
			t.Fatalf("presence data %s", ev.data)
		}
		return p
	}

	carol := dial(t, srv, dialOpts{token: sseToken(t, "carol", jwt.MapClaims{"name": "Carol"}), json: true})
	carol.join(room, 1)
	p := nextPresence()
	joins, _ := p["joins"].([]any)
	if p["count"] != float64(2) || len(joins) != 1 || joins[0].(map[string]any)["id"] != "carol" || joins[0].(map[string]any)["name"] != "Carol" {
		t.Fatalf("presence after carol's join: %v", p)
	}

	// An SSE reader with a token is a listed member.
	openSSE(t, srv, "room="+room+"&token="+sseToken(t, "overlay-7", jwt.MapClaims{"name": "Overlay"}))
	p = nextPresence()
	joins, _ = p["joins"].([]any)
	if p["count"] != float64(3) || len(joins) != 1 || joins[0].(map[string]any)["id"] != "overlay-7" {
		t.Fatalf("presence after the overlay's join: %v", p)
	}

	// Another anonymous reader: counted only.
	openSSE(t, srv, "room="+room)
	p = nextPresence()
	if p["count"] != float64(4) || p["joins"] != nil {
		t.Fatalf("presence after an anonymous join: %v", p)
	}

	carol.conn.Close()
	p = nextPresence()
	leaves, _ := p["leaves"].([]any)
	if p["count"] != float64(3) || len(leaves) != 1 || leaves[0] != "carol" {
		t.Fatalf("presence after carol left: %v", p)
	}
}

// TestSSERefusals: malformed requests get a plain-text 400, bad tokens
// 401, closed rooms 403; a token opens what anonymous readers cannot.
func TestSSERefusals(t *testing.T) {
	closed := false
	srv := startAPIRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"vip": {AnonymousRead: &closed}}
	})
	expired := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()})
	expiredTok, _ := expired.SignedString([]byte(testSecret))
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x"}).SignedString([]byte("not-the-secret"))
	good := sseToken(t, "viewer-1", nil)
	limited := sseToken(t, "viewer-2", jwt.MapClaims{"rooms": []string{"team:*"}})

	cases := []struct {
		what    string
		query   string
		headers []string
		status  int
	}{
		{"no room", "", nil, 400},
		{"empty room", "room=", nil, 400},
		{"bad room", "room=" + url.QueryEscape("has space"), nil, 400},
		{"room starting with a dash", "room=-x", nil, 400},
		{"room too long", "room=" + strings.Repeat("a", 65), nil, 400},
		{"since not a number", "room=r&since=abc", nil, 400},
		{"negative since", "room=r&since=-1", nil, 400},
		{"history not a number", "room=r&history=ten", nil, 400},
		{"negative history", "room=r&history=-5", nil, 400},
		{"Last-Event-ID not a seq", "room=r", []string{"Last-Event-ID", "abc"}, 400},
		{"garbage token", "room=r&token=garbage", nil, 401},
		{"expired token", "room=r&token=" + expiredTok, nil, 401},
		{"token of another key", "room=r&token=" + wrongKey, nil, 401},
		{"garbage bearer header", "room=r", []string{"Authorization", "Bearer garbage"}, 401},
		{"anonymous in a closed namespace", "room=vip:lounge", nil, 403},
		{"token not allowing the room", "room=lobby&token=" + limited, nil, 403},
		{"not /sse", "room=r", nil, 404}, // path replaced below
	}
	for _, c := range cases {
		path := "/sse?" + c.query
		if c.status == 404 {
			path = "/ssex?" + c.query
		}
		resp := sseGet(t, srv, path, c.headers...)
		body, _ := io.ReadAll(resp.Body) // the relay closes after an error: this must not hang
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d (%s), want %d", c.what, resp.StatusCode, body, c.status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || len(body) == 0 {
			t.Errorf("%s: Content-Type %q body %q, want a plain-text reason", c.what, ct, body)
		}
	}

	// A token opens the closed namespace, in the query or as a header.
	openSSE(t, srv, "room=vip:lounge&token="+good)
	openSSE(t, srv, "room=vip:lounge", "Authorization", "Bearer "+good)
	openSSE(t, srv, "room=team:red&token="+limited)
	if m := metricsOf(t, srv); m[`roomcast_handshake_failures_total{reason="bad_request"}`] < 10 || m[`roomcast_handshake_failures_total{reason="auth"}`] < 5 {
		t.Errorf("refusals not counted: %v %v", m[`roomcast_handshake_failures_total{reason="bad_request"}`], m[`roomcast_handshake_failures_total{reason="auth"}`])
	}
}

// TestSSEKeepAlive: a comment line comes at least every PingInterval (and
// 15 s at most); a reader that sends nothing is not closed as idle.
func TestSSEKeepAlive(t *testing.T) {
	srv := startAPIRelay(t, func(c *relay.Config) {
		c.PingInterval = time.Second
		c.IdleTimeout = 2 * time.Second
	})
	s := openSSE(t, srv, "room=sse:quiet")
	start := time.Now()
	comments := 0
	for time.Since(start) < 3500*time.Millisecond {
		ev, ok := s.next(2500 * time.Millisecond)
		if !ok {
			t.Fatalf("no keep-alive within 2.5s (after %d comments; ended: %v)", comments, s.isEnded())
		}
		if !ev.isComment {
			t.Fatalf("unexpected event %+v", ev)
		}
		comments++
	}
	if comments < 2 {
		t.Fatalf("%d keep-alive comments in 3.5s", comments)
	}
	// Past the idle timeout, the stream still works.
	seq := ssePublish(t, srv, "sse:quiet", "still here")
	s.expectSeqs(seq)
}

// TestSSESlowReader: a reader that does not read is disconnected once its
// queue passes MaxOutbound, while a reading one gets every message; the
// slow one's stream is a clean prefix, and it resumes with Last-Event-ID.
func TestSSESlowReader(t *testing.T) {
	srv := startAPIRelay(t, func(c *relay.Config) { c.MaxOutbound = 64 << 10 })
	const room = "sse:slow"
	fast := openSSE(t, srv, "room="+room)

	nd := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := nd.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /sse?room="+room+" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both readers in the room", func() bool {
		return metricsOf(t, srv)[`roomcast_connections{anonymous="any",kind="sse"}`] == 2
	})

	body := strings.Repeat("x", 480)
	const n = 20000
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got.Load() < n {
			ev, ok := fast.next(10 * time.Second)
			if !ok {
				t.Errorf("fast reader: nothing for 10s after %d", got.Load())
				return
			}
			if ev.isComment || ev.event == "presence" {
				continue
			}
			if ev.event != "msg" || !isEventID(ev.id, uint64(got.Load()+1)) {
				t.Errorf("fast reader: got %q id %q after %d", ev.event, ev.id, got.Load())
				return
			}
			got.Add(1)
		}
	}()
	publishPaced(t, srv, room, body, n, &got)
	<-done
	if got.Load() != n {
		t.Fatalf("fast reader got %d of %d", got.Load(), n)
	}
	// The stream ends once the relay gives up on its queued bytes: 5 s
	// after its queue passed the cap when it reads nothing (outbound.go
	// slowCloseLimit), as long as eventually's own limit, so wait longer.
	eventuallyWithin(t, 15*time.Second, "the slow reader to be disconnected", func() bool {
		m := metricsOf(t, srv)
		return m["roomcast_slow_consumers_total"] == 1 && m[`roomcast_connections{anonymous="any",kind="sse"}`] == 1
	})

	// Reading now, the slow reader finds a prefix of the stream, then its end.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("slow reader's answer: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	slow := readSSE(t, resp.Body, resp)
	var last uint64
	for {
		ev, ok := slow.next(5 * time.Second)
		if !ok {
			break
		}
		if ev.isComment || ev.event == "presence" {
			continue
		}
		m := checkMsgEvent(t, ev)
		if m.Seq != last+1 {
			t.Fatalf("slow reader: seq %d after %d", m.Seq, last)
		}
		last = m.Seq
	}
	if !slow.isEnded() {
		t.Fatal("slow reader's stream still open")
	}
	if ne, ok := slow.err.(net.Error); ok && ne.Timeout() {
		t.Fatal("slow reader's stream timed out instead of ending")
	}
	if last == 0 || last >= n {
		t.Fatalf("slow reader got up to %d of %d before being dropped", last, n)
	}
	t.Logf("slow reader got %d of %d messages before being dropped", last, n)

	// It resumes with Last-Event-ID: what is still kept (100) after it.
	r := openSSE(t, srv, "room="+room, "Last-Event-ID", strconv.FormatUint(last, 10))
	r.expectSeqs(seqRange(max(last+1, n-99), n)...)
	r.expectQuiet(100 * time.Millisecond)
}

// TestSSEDisconnect: an SSE reader with a token is found by /api/disconnect
// by its user id, and its stream ends.
func TestSSEDisconnect(t *testing.T) {
	srv := startAPIRelay(t, nil)
	s := openSSE(t, srv, "room=sse:dc&token="+sseToken(t, "overlay-1", nil))
	var out struct{ Disconnected int }
	api(t, srv, "POST", "/api/disconnect", `{"user":"overlay-1"}`, &out)
	if out.Disconnected != 1 {
		t.Fatalf("disconnected %d, want 1", out.Disconnected)
	}
	s.expectEnd()
	eventually(t, "the disconnect counted", func() bool {
		m := metricsOf(t, srv)
		return m[`roomcast_disconnects_total{code="4003"}`] == 1 && m[`roomcast_connections{anonymous="any",kind="sse"}`] == 0
	})
}

// TestSSEConnectionsGauge: roomcast_connections{kind="sse"} follows open
// streams, apart from WebSocket connections.
func TestSSEConnectionsGauge(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const gauge = `roomcast_connections{anonymous="any",kind="sse"}`
	if v := metricsOf(t, srv)[gauge]; v != 0 {
		t.Fatalf("fresh relay: %s = %v", gauge, v)
	}
	a := openSSE(t, srv, "room=sse:gauge")
	b := openSSE(t, srv, "room=sse:gauge&token="+sseToken(t, "viewer", nil))
	dial(t, srv, dialOpts{}).join("sse:gauge", 1)
	eventually(t, "two SSE connections", func() bool { return metricsOf(t, srv)[gauge] == 2 })
	if m := metricsOf(t, srv); m[`roomcast_connections{anonymous="true",kind="ws"}`] != 1 {
		t.Fatalf("WebSocket gauge %v, want 1", m[`roomcast_connections{anonymous="true",kind="ws"}`])
	}
	a.resp.Body.Close()
	eventually(t, "one SSE connection", func() bool { return metricsOf(t, srv)[gauge] == 1 })
	b.resp.Body.Close()
	eventually(t, "no SSE connection", func() bool { return metricsOf(t, srv)[gauge] == 0 })
	// Refused streams never count.
	resp := sseGet(t, srv, "/sse?room=-bad")
	resp.Body.Close()
	if v := metricsOf(t, srv)[gauge]; v != 0 {
		t.Fatalf("after a refusal: %s = %v", gauge, v)
	}
}

// TestOverlayPage: /overlay serves the embedded, self-contained page (it
// imports the client library from the same relay).
func TestOverlayPage(t *testing.T) {
	srv := startRelay(t, nil)
	for _, q := range []string{"/overlay", "/overlay?room=stream:cat&theme=dark&fade=30"} {
		resp := sseGet(t, srv, q)
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", q, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Fatalf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
		}
		page := string(body)
		for _, want := range []string{"<!doctype html>", `from "./roomcast.js"`, "new Client(", "data-seq", "textContent"} {
			if !strings.Contains(page, want) {
				t.Fatalf("the page lacks %q", want)
			}
		}
		// Self-contained: nothing loaded from elsewhere, no markup from chat.
		for _, bad := range []string{"http://", "https://", "<link", "<script src", "@import", "innerHTML", "insertAdjacentHTML", "document.write"} {
			if strings.Contains(page, bad) {
				t.Fatalf("the page contains %q", bad)
			}
		}
	}
}

// TestSSEBan: a ban sends the reader's stream a kicked event and ends it
// (an SSE stream is one room: nothing more can come); reconnecting gets
// 403 until the unban.
func TestSSEBan(t *testing.T) {
	srv := startAPIRelay(t, nil)
	const room = "sse:ban"
	tok := sseToken(t, "overlay-9", nil)
	s := openSSE(t, srv, "room="+room+"&token="+tok)
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"ban","user":"overlay-9"}`, nil)
	ev := s.nextEvent(true)
	var k map[string]any
	if err := json.Unmarshal([]byte(ev.data), &k); ev.event != "kicked" || err != nil || k["t"] != "kicked" || k["room"] != room || k["reason"] != "banned" {
		t.Fatalf("got %+v, want a kicked event {t:kicked, room, reason:banned}", ev)
	}
	select {
	case <-s.ended:
	case <-time.After(2 * time.Second):
		t.Fatal("after a ban the stream is still open, with no room")
	}
	resp := sseGet(t, srv, "/sse?room="+room+"&token="+tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("banned reader reconnecting: status %d, want 403", resp.StatusCode)
	}
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"unban","user":"overlay-9"}`, nil)
	openSSE(t, srv, "room="+room+"&token="+tok)
}
