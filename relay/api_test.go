package relay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

const testAPIKey = "test-api-key"

// startAPIRelay runs a relay with the admin API key set.
func startAPIRelay(t testing.TB, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	return startRelay(t, func(c *relay.Config) {
		c.APIKey = testAPIKey
		if mod != nil {
			mod(c)
		}
	})
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// apiResult is one answered admin call.
type apiResult struct {
	status int
	header http.Header
	body   []byte
}

// apiAuth returns the value of an Authorization header carrying key.
func apiAuth(key string) string { return "Bearer " + key }

// callAPI makes one call on the admin listener. auth is the whole
// Authorization header ("" sends none); body "" sends no body.
func callAPI(t testing.TB, srv *relay.Server, method, path, auth, body string) apiResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+srv.AdminAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return apiResult{status: resp.StatusCode, header: resp.Header, body: b}
}

// api makes an authorized call and decodes a 200 answer into out.
func api(t testing.TB, srv *relay.Server, method, path, body string, out any) {
	t.Helper()
	r := callAPI(t, srv, method, path, apiAuth(testAPIKey), body)
	if r.status != http.StatusOK {
		t.Fatalf("%s %s %s: status %d, body %s", method, path, body, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: cannot decode %s: %v", method, path, r.body, err)
		}
	}
}

// wantError checks an error answer: the status, a JSON body of exactly the
// shape {error: {code, message}}, and the code.
func (r apiResult) wantError(t testing.TB, what string, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (body %s)", what, r.status, status, r.body)
		return
	}
	if got, ok := r.errorCode(t, what); ok && got != code {
		t.Errorf("%s: error code %q, want %q (body %s)", what, got, code, r.body)
	}
}

// errorCode checks that the answer is a JSON error, {error: {code,
// message}} with a message and nothing else, and returns its code.
func (r apiResult) errorCode(t testing.TB, what string) (string, bool) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var shape map[string]map[string]any
	if err := json.Unmarshal(r.body, &shape); err != nil || len(shape) != 1 || shape["error"] == nil {
		t.Errorf("%s: body %s is not {error: {code, message}} (%v)", what, r.body, err)
		return "", false
	}
	e := shape["error"]
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if len(e) != 2 || code == "" || msg == "" {
		t.Errorf("%s: error %v, want a code and a message, nothing else", what, e)
		return "", false
	}
	return code, true
}

// apiCalls are every admin call that needs the key, each with a body that
// would be accepted.
var apiCalls = []struct{ method, path, body string }{
	{"POST", "/api/publish", `{"room":"r","body":"hi"}`},
	{"GET", "/api/rooms", ""},
	{"GET", "/api/rooms?prefix=r", ""},
	{"GET", "/api/rooms/r", ""},
	{"POST", "/api/mod", `{"room":"r","action":"clear"}`},
	{"POST", "/api/disconnect", `{"user":"alice"}`},
	{"GET", "/api/xyz", ""},
	{"GET", "/debug/pprof/", ""},
	{"GET", "/debug/pprof/cmdline", ""},
}

// checkOpenEndpoints checks that scrapers and probes need no key.
func checkOpenEndpoints(t *testing.T, srv *relay.Server) {
	t.Helper()
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if r := callAPI(t, srv, "GET", path, "", ""); r.status != http.StatusOK {
			t.Errorf("GET %s without a key: status %d (%s), want 200", path, r.status, r.body)
		}
		if r := callAPI(t, srv, "GET", path, apiAuth("wrong"), ""); r.status != http.StatusOK {
			t.Errorf("GET %s with a wrong key: status %d (%s), want 200", path, r.status, r.body)
		}
	}
}

func TestAPIAuth(t *testing.T) {
	srv := startAPIRelay(t, nil)
	wrong := []string{
		"", // no header
		apiAuth("wrong-key"),
		apiAuth(testAPIKey + "x"),
		apiAuth(testAPIKey[:len(testAPIKey)-1]),
		apiAuth(""),
		"Basic " + testAPIKey,
		testAPIKey,
		"Bearer" + testAPIKey,
	}
	for _, c := range apiCalls {
		for _, auth := range wrong {
			r := callAPI(t, srv, c.method, c.path, auth, c.body)
			r.wantError(t, fmt.Sprintf("%s %s with Authorization %q", c.method, c.path, auth), http.StatusUnauthorized, "unauthorized")
			if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without a WWW-Authenticate: Bearer header", c.method, c.path)
			}
		}
	}
	// Nothing refused had an effect.
	callAPI(t, srv, "GET", "/api/rooms/r", apiAuth(testAPIKey), "").wantError(t, "room after refused publishes", http.StatusNotFound, "not_found")
	checkOpenEndpoints(t, srv)
}

func TestAPIBearerSchemeIsCaseInsensitive(t *testing.T) {
	srv := startAPIRelay(t, nil)
	r := callAPI(t, srv, "GET", "/api/rooms", "bearer "+testAPIKey, "")
	if r.status != http.StatusOK {
		t.Fatalf("admin API refuses %q (status %d): the auth scheme is case-insensitive (RFC 7235)", "bearer <key>", r.status)
	}
}

func TestAPIWithoutKeyConfigured(t *testing.T) {
	srv := startRelay(t, nil) // no APIKey
	for _, c := range apiCalls {
		for _, auth := range []string{"", apiAuth(""), apiAuth(testAPIKey), apiAuth("anything")} {
			r := callAPI(t, srv, c.method, c.path, auth, c.body)
			r.wantError(t, fmt.Sprintf("%s %s with Authorization %q on a relay without a key", c.method, c.path, auth), http.StatusForbidden, "forbidden")
		}
	}
	if room := srv.Hub().Lookup("r"); room != nil {
		t.Errorf("a refused publish created room r: %+v", room.Info())
	}
	checkOpenEndpoints(t, srv)
}

func TestAPIPublish(t *testing.T) {
	srv := startAPIRelay(t, nil)
	alice := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", ""), json: true})
	viewer := dial(t, srv, dialOpts{}) // anonymous, msgpack
	alice.join("lobby:eu-1", 1)
	viewer.join("lobby:eu-1", 1)

	var seqs []uint64
	for _, body := range []string{
		`{"room":"lobby:eu-1","body":"server restarts in 5 minutes"}`,
		`{"room":"lobby:eu-1","body":"quiz time","from":"bot:quiz","name":"Quiz Bot","meta":{"kind":"quiz","q":"7"}}`,
		`{"room":"lobby:eu-1","body":"héllo ✓","name":"Announcer"}`,
	} {
		var out map[string]any
		api(t, srv, "POST", "/api/publish", body, &out)
		seq, ok := out["seq"].(float64)
		if !ok || len(out) != 1 {
			t.Fatalf("publish answered %v, want {seq}", out)
		}
		seqs = append(seqs, uint64(seq))
	}
	if !reflect.DeepEqual(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("publish seqs %v, want [1 2 3]", seqs)
	}

	want := []map[string]any{
		{"seq": int64(1), "from": "system", "name": "", "body": "server restarts in 5 minutes", "meta": nil},
		{"seq": int64(2), "from": "bot:quiz", "name": "Quiz Bot", "body": "quiz time", "meta": map[string]any{"kind": "quiz", "q": "7"}},
		{"seq": int64(3), "from": "system", "name": "Announcer", "body": "héllo ✓", "meta": nil},
	}
	for _, c := range []*client{alice, viewer} {
		var got []map[string]any
		for len(got) < len(want) {
			b := c.expect("batch")
			if b.str("room") != "lobby:eu-1" {
				t.Fatalf("batch of room %q", b.str("room"))
			}
			for _, m := range b.list("msgs") {
				got = append(got, m.(map[string]any))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("json=%v: got %d messages, want %d: %v", c.json, len(got), len(want), got)
		}
		for i, m := range got {
			w := want[i]
			if toInt(m["seq"]) != w["seq"] || m["from"] != w["from"] || m["name"] != w["name"] || m["body"] != w["body"] || toInt(m["ts"]) <= 0 {
				t.Errorf("json=%v: message %d = %v, want %v", c.json, i, m, w)
			}
			if fmt.Sprint(m["meta"]) != fmt.Sprint(w["meta"]) {
				t.Errorf("json=%v: message %d meta = %v, want %v", c.json, i, m["meta"], w["meta"])
			}
		}
	}

	// A room nobody is in is created by a publish and keeps the message.
	var out map[string]uint64
	api(t, srv, "POST", "/api/publish", `{"room":"empty","body":"x"}`, &out)
	if out["seq"] != 1 {
		t.Fatalf("publish to a new room: %v, want seq 1", out)
	}
	late := dial(t, srv, dialOpts{json: true})
	late.send(map[string]any{"t": "join", "room": "empty", "ref": 1, "history": 10})
	j := late.expect("joined")
	if h := j.list("history"); len(h) != 1 || h[0].(map[string]any)["from"] != "system" {
		t.Fatalf("history of a published room = %v", h)
	}
}

func TestAPIPublishErrors(t *testing.T) {
	srv := startAPIRelay(t, nil)
	meta := map[string]string{}
	for i := 0; i < 17; i++ {
		meta[fmt.Sprint("k", i)] = "v"
	}
	manyMeta, _ := json.Marshal(meta)
	huge := `{"room":"r","body":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"bad room", `{"room":"bad room!","body":"x"}`, 400, "bad_room"},
		{"no room", `{"body":"x"}`, 400, "bad_room"},
		{"room too long", `{"room":"` + strings.Repeat("a", 65) + `","body":"x"}`, 400, "bad_room"},
		{"room starting with a dot", `{"room":".r","body":"x"}`, 400, "bad_room"},
		{"empty body field", `{"room":"r","body":""}`, 400, "bad_request"},
		{"no body field", `{"room":"r"}`, 400, "bad_request"},
		{"empty request", "", 400, "bad_request"},
		{"body over max_body", `{"room":"r","body":"` + strings.Repeat("é", 501) + `"}`, 413, "too_large"},
		{"too many meta entries", `{"room":"r","body":"x","meta":` + string(manyMeta) + `}`, 413, "too_large"},
		{"meta value too long", `{"room":"r","body":"x","meta":{"k":"` + strings.Repeat("v", 257) + `"}}`, 413, "too_large"},
		{"malformed JSON", `{"room":"r","body":`, 400, "bad_request"},
		{"not an object", `["r","x"]`, 400, "bad_request"},
		{"wrong type", `{"room":"r","body":7}`, 400, "bad_request"},
		{"request over 64 KiB", huge, 413, "too_large"},
	}
	for _, c := range cases {
		r := callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), c.body)
		r.wantError(t, c.name, c.status, c.code)
	}
	if room := srv.Hub().Lookup("r"); room != nil {
		t.Fatalf("a refused publish touched room r: %+v", room.Info())
	}
	// The limits are inclusive: max_body characters (not bytes) are fine.
	var out map[string]uint64
	api(t, srv, "POST", "/api/publish", `{"room":"r","body":"`+strings.Repeat("é", 500)+`"}`, &out)
	if out["seq"] != 1 {
		t.Fatalf("publish of max_body characters: %v", out)
	}
}

func TestAPIPublishTrailingGarbage(t *testing.T) {
	srv := startAPIRelay(t, nil)
	r := callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), `{"room":"r","body":"x"} {"room":"r","body":"y"}`)
	if r.status == http.StatusOK {
		t.Fatalf("POST /api/publish accepts a body that is not one JSON value; got %d %s", r.status, r.body)
	}
	r.wantError(t, "trailing data", 400, "bad_request")
}

type roomsAnswer struct {
	Rooms []struct {
		Room  string `json:"room"`
		Count int    `json:"count"`
		Seq   uint64 `json:"seq"`
	} `json:"rooms"`
}

func (a roomsAnswer) String() string {
	var b strings.Builder
	for _, r := range a.Rooms {
		fmt.Fprintf(&b, "%s:%d:%d ", r.Room, r.Count, r.Seq)
	}
	return strings.TrimSpace(b.String())
}

func TestAPIRooms(t *testing.T) {
	srv := startAPIRelay(t, nil)
	publish := func(room string, n int) {
		for i := 0; i < n; i++ {
			api(t, srv, "POST", "/api/publish", fmt.Sprintf(`{"room":%q,"body":"m%d"}`, room, i), nil)
		}
	}
	publish("game:1", 2)
	publish("game:10", 1)
	publish("lobby", 4)
	publish("gamex", 1)
	alice := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", "")})
	bob := dial(t, srv, dialOpts{token: token(t, "bob", "Bob", ""), json: true})
	viewer := dial(t, srv, dialOpts{})
	for _, c := range []*client{alice, bob, viewer} {
		c.join("game:2", 1)
	}
	alice.send(map[string]any{"t": "send", "room": "game:2", "body": "gg", "ref": 2})
	for seen := false; !seen; {
		seen = alice.expectMsgOrAck().str("t") == "ack"
	}

	f := func(query, want string) {
		t.Helper()
		var a roomsAnswer
		api(t, srv, "GET", "/api/rooms"+query, "", &a)
		if a.Rooms == nil {
			t.Errorf("GET /api/rooms%s: rooms is %s, want a list", query, "null or missing")
		}
		if got := a.String(); got != want {
			t.Errorf("GET /api/rooms%s = %q, want %q", query, got, want)
		}
	}
	f("?prefix=game:", "game:1:0:2 game:10:0:1 game:2:3:1")
	f("?prefix=game", "game:1:0:2 game:10:0:1 game:2:3:1 gamex:0:1")
	f("?prefix=game:1", "game:1:0:2 game:10:0:1")
	f("?prefix=lobby", "lobby:0:4")
	f("", "game:1:0:2 game:10:0:1 game:2:3:1 gamex:0:1 lobby:0:4")
	f("?prefix=", "game:1:0:2 game:10:0:1 game:2:3:1 gamex:0:1 lobby:0:4")
	f("?prefix=nope", "")
	f("?prefix=GAME", "")

	type member struct{ ID, Name string }
	var room struct {
		Room    string
		Count   int
		Seq     uint64
		Members []member
	}
	api(t, srv, "GET", "/api/rooms/game:2", "", &room)
	sort.Slice(room.Members, func(i, j int) bool { return room.Members[i].ID < room.Members[j].ID })
	if room.Room != "game:2" || room.Count != 3 || room.Seq != 1 ||
		!reflect.DeepEqual(room.Members, []member{{"alice", "Alice"}, {"bob", "Bob"}}) {
		t.Errorf("GET /api/rooms/game:2 = %+v, want 3 members (the anonymous one not listed), seq 1", room)
	}
	var lobby map[string]any
	api(t, srv, "GET", "/api/rooms/lobby", "", &lobby)
	if lobby["room"] != "lobby" || lobby["count"] != 0.0 || lobby["seq"] != 4.0 {
		t.Errorf("GET /api/rooms/lobby = %v", lobby)
	}
	for _, path := range []string{"/api/rooms/nope", "/api/rooms/game:", "/api/rooms/Lobby", "/api/rooms/bad%20room"} {
		callAPI(t, srv, "GET", path, apiAuth(testAPIKey), "").wantError(t, "GET "+path, http.StatusNotFound, "not_found")
	}
}

func TestAPIDisconnect(t *testing.T) {
	srv := startAPIRelay(t, func(c *relay.Config) { c.Loops = 2 })
	alice1 := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", "")})
	alice2 := dial(t, srv, dialOpts{token: token(t, "alice", "Alice", ""), json: true})
	bob := dial(t, srv, dialOpts{token: token(t, "bob", "Bob", "")})
	m := metricsOf(t, srv)
	if m[`roomcast_loop_connections{loop="0"}`] < 1 || m[`roomcast_loop_connections{loop="1"}`] < 1 {
		t.Fatalf("want connections on both loops, have %v and %v", m[`roomcast_loop_connections{loop="0"}`], m[`roomcast_loop_connections{loop="1"}`])
	}
	alice1.join("r", 1)
	alice2.join("r", 1)
	bob.join("r", 1)

	var out map[string]any
	api(t, srv, "POST", "/api/disconnect", `{"user":"alice"}`, &out)
	if out["disconnected"] != 2.0 || len(out) != 1 {
		t.Fatalf("disconnect answered %v, want {disconnected: 2}", out)
	}
	alice1.expectClose(4003)
	alice2.expectClose(4003)

	// Bob is still in the room and can talk.
	bob.send(map[string]any{"t": "send", "room": "r", "body": "still here", "ref": 5})
	for {
		f := bob.expectMsgOrAck()
		if f.str("t") == "ack" {
			if f.num("seq") != 1 {
				t.Fatalf("bob's ack = %v", f)
			}
			break
		}
	}
	if got := metricsOf(t, srv)[`roomcast_disconnects_total{code="4003"}`]; got != 2 {
		t.Fatalf(`roomcast_disconnects_total{code="4003"} = %v, want 2`, got)
	}

	// Once alice's sockets are gone she has nothing left to disconnect.
	alice1.conn.Close()
	alice2.conn.Close()
	eventually(t, "alice's connections to close", func() bool {
		var out map[string]int
		api(t, srv, "POST", "/api/disconnect", `{"user":"alice"}`, &out)
		return out["disconnected"] == 0
	})
	eventually(t, "room r to count bob only", func() bool {
		var room map[string]any
		api(t, srv, "GET", "/api/rooms/r", "", &room)
		return room["count"] == 1.0
	})
	api(t, srv, "POST", "/api/disconnect", `{"user":"nobody"}`, &out)
	if out["disconnected"] != 0.0 {
		t.Fatalf("disconnect of an unknown user answered %v", out)
	}
	for _, body := range []string{`{}`, `{"user":""}`, "", `{"user":`, `{"user":7}`} {
		callAPI(t, srv, "POST", "/api/disconnect", apiAuth(testAPIKey), body).wantError(t, "disconnect "+body, http.StatusBadRequest, "bad_request")
	}
	if got := metricsOf(t, srv)[`roomcast_disconnects_total{code="4003"}`]; got != 2 {
		t.Fatalf(`after the other calls roomcast_disconnects_total{code="4003"} = %v, want 2`, got)
	}
	bob.send(map[string]any{"t": "ping", "ref": 9})
	for {
		f := bob.next()
		if f.str("t") == "batch" || f.str("t") == "presence" {
			continue // his own message, and alice leaving
		}
		if f.str("t") != "pong" || f.num("ref") != 9 {
			t.Fatalf("bob got %v, want a pong", f)
		}
		break
	}
}

// TestAPIDisconnectAnonymous: anonymous viewers are not indexed by user id
// (their ids are per connection and appear nowhere; the index would cost
// memory per viewer in every big room), so disconnecting one finds nothing.
func TestAPIDisconnectAnonymous(t *testing.T) {
	srv := startAPIRelay(t, nil)
	viewer := dial(t, srv, dialOpts{json: true})
	user := viewer.hello.str("user")
	if user == "" {
		t.Fatalf("anonymous hello without a user: %v", viewer.hello)
	}
	var out map[string]int
	api(t, srv, "POST", "/api/disconnect", fmt.Sprintf(`{"user":%q}`, user), &out)
	if out["disconnected"] != 0 {
		t.Fatalf("disconnect %s answered %v, want 0", user, out)
	}
	viewer.send(map[string]any{"t": "ping", "ref": 1})
	viewer.expect("pong")
}

// TestAPIMod checks the shape of /api/mod answers only: until moderation
// lands every call answers 501 unavailable; after, refused actions are JSON
// errors with a 4xx status and a valid one succeeds.
func TestAPIMod(t *testing.T) {
	srv := startAPIRelay(t, nil)
	for _, body := range []string{
		`{"room":"bad room!","action":"clear"}`,
		`{"room":"r","action":"no-such-action","user":"bob","secs":60}`,
		`{"room":"r","action":"timeout","secs":60}`,
		`{"room":"r","action":`,
		"",
	} {
		what := "POST /api/mod " + body
		r := callAPI(t, srv, "POST", "/api/mod", apiAuth(testAPIKey), body)
		if r.status == http.StatusNotImplemented {
			r.wantError(t, what, http.StatusNotImplemented, "unavailable")
			continue
		}
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s: status %d, want 501 or a 4xx (body %s)", what, r.status, r.body)
			continue
		}
		r.errorCode(t, what)
	}
	what := "POST /api/mod clear"
	r := callAPI(t, srv, "POST", "/api/mod", apiAuth(testAPIKey), `{"room":"r","action":"clear"}`)
	switch r.status {
	case http.StatusNotImplemented:
		r.wantError(t, what, http.StatusNotImplemented, "unavailable")
	case http.StatusOK:
		var out map[string]any
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Errorf("%s: answer %s is not JSON: %v", what, r.body, err)
		}
	default:
		t.Errorf("%s: status %d (body %s), want 200, or 501 before moderation lands", what, r.status, r.body)
	}
}

func TestAPINotFound(t *testing.T) {
	srv := startAPIRelay(t, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/xyz"},
		{"POST", "/api/xyz"},
		{"GET", "/api/"},
		{"GET", "/api"},
		{"DELETE", "/api/rooms/r/x"},
	} {
		r := callAPI(t, srv, c.method, c.path, apiAuth(testAPIKey), "")
		if c.path == "/api" && r.status != http.StatusNotFound {
			// Outside /api/: the mux may redirect or 404 in plain text.
			continue
		}
		r.wantError(t, c.method+" "+c.path, http.StatusNotFound, "not_found")
	}
	// A known call with the wrong method is answered in JSON too.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/publish"},
		{"DELETE", "/api/rooms"},
		{"GET", "/api/disconnect"},
	} {
		r := callAPI(t, srv, c.method, c.path, apiAuth(testAPIKey), "")
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 404 or 405", c.method, c.path, r.status)
			continue
		}
		var shape map[string]map[string]any
		if err := json.Unmarshal(r.body, &shape); err != nil || shape["error"]["code"] == nil {
			t.Errorf("%s %s: body %s is not a JSON error", c.method, c.path, r.body)
		}
	}
}

func TestAPIPprof(t *testing.T) {
	srv := startAPIRelay(t, nil)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		r := callAPI(t, srv, "GET", path, apiAuth(testAPIKey), "")
		if r.status != http.StatusOK {
			t.Errorf("GET %s with the key: status %d", path, r.status)
		}
		if path != "/debug/pprof/cmdline" && !bytes.Contains(r.body, []byte("goroutine")) {
			t.Errorf("GET %s: body does not look like a profile page: %.200s", path, r.body)
		}
	}
}

// TestAPIWrongMethod: a known API path with another method is 405 with
// Allow (not 404); an unknown path stays 404.
func TestAPIWrongMethod(t *testing.T) {
	srv := startAPIRelay(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/api/publish", "POST"},
		{"PUT", "/api/mod", "POST"},
		{"GET", "/api/disconnect", "POST"},
		{"POST", "/api/rooms", "GET"},
		{"DELETE", "/api/rooms/lobby", "GET"},
	} {
		r := callAPI(t, srv, c.method, c.path, apiAuth(testAPIKey), "")
		r.wantError(t, c.method+" "+c.path, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
	callAPI(t, srv, "GET", "/api/nothing", apiAuth(testAPIKey), "").wantError(t, "GET /api/nothing", http.StatusNotFound, "not_found")
	callAPI(t, srv, "GET", "/api/publish", "", "").wantError(t, "GET /api/publish without a key", http.StatusUnauthorized, "unauthorized")
}
