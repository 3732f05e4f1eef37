package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
)

const chromiumPath = "/usr/bin/chromium"

// startBrowser starts headless Chromium with a fresh profile and returns a
// chromedp context of its first tab. The test is skipped when Chromium is
// missing, unless CI is set: CI installs it, so there it is a failure.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			skipLoud(t, fmt.Sprintf("browser test needs %s (Debian package chromium; .ci/run installs it): %v", chromiumPath, err))
		}
		t.Fatalf("CI is set but %s is missing: %v", chromiumPath, err)
	}
	profile := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(800, 480),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	// Cleanups run last first: the browser goes before its profile directory.
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// overlayRow is one message on the overlay page.
type overlayRow struct {
	Seq    string   `json:"seq"`
	Name   string   `json:"name"`
	Body   string   `json:"body"`
	Badges []string `json:"badges"`
	Color  string   `json:"color"`
}

const overlayRowsJS = `Array.from(document.querySelectorAll('#chat .msg')).map(e => ({
	seq: e.dataset.seq,
	name: e.querySelector('.name').textContent,
	body: e.querySelector('.body').textContent,
	badges: Array.from(e.querySelectorAll('.badge')).map(b => b.textContent),
	color: getComputedStyle(e.querySelector('.name')).color,
}))`

func overlayRows(t *testing.T, ctx context.Context) []overlayRow {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](overlayRowsJS))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	var rows []overlayRow
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return rows
}

// rowsText is "seq name: body" per row, to compare and to print.
func rowsText(rows []overlayRow) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %s: %s", r.Seq, r.Name, r.Body))
	}
	return out
}

// waitRows polls the page until its messages are exactly want, in order.
func waitRows(t *testing.T, ctx context.Context, what string, want []string) []overlayRow {
	t.Helper()
	var got []overlayRow
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		got = overlayRows(t, ctx)
		if slices.Equal(rowsText(got), want) {
			return got
		}
	}
	t.Fatalf("%s: the page shows\n\t%s\nwant\n\t%s", what, strings.Join(rowsText(got), "\n\t"), strings.Join(want, "\n\t"))
	return nil
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// pageWatch records a tab's WebSockets (their URLs, and the frames the
// page sent and received) and fails the test on any script error of the
// page.
type pageWatch struct {
	mu       sync.Mutex
	sockets  []string // URLs of the WebSockets opened, in order
	sent     []frame  // JSON frames the page sent, in order
	received []frame  // JSON frames the page received, in order
	errors   []string
}

func watchPage(t *testing.T, ctx context.Context) *pageWatch {
	t.Helper()
	w := &pageWatch{}
	decode := func(f *network.WebSocketFrame) frame {
		var m frame
		if f == nil || f.Opcode != 1 || json.Unmarshal(f.PayloadData, &m) != nil {
			return nil
		}
		return m
	}
	err := chromedp.Listen(ctx, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventWebSocketCreated:
			w.sockets = append(w.sockets, e.URL)
		case *network.EventWebSocketFrameSent:
			if m := decode(e.Response); m != nil {
				w.sent = append(w.sent, m)
			}
		case *network.EventWebSocketFrameReceived:
			if m := decode(e.Response); m != nil {
				w.received = append(w.received, m)
			}
		case *runtime.EventExceptionThrown:
			w.errors = append(w.errors, e.ExceptionDetails.Text)
			if e.ExceptionDetails.Exception != nil {
				w.errors = append(w.errors, e.ExceptionDetails.Exception.Description)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.errors) > 0 {
			t.Errorf("script errors on the page: %q", w.errors)
		}
	})
	return w
}

// joins returns the join frames the page sent.
func (w *pageWatch) joins() []frame {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []frame
	for _, f := range w.sent {
		if f.str("t") == "join" {
			out = append(out, f)
		}
	}
	return out
}

// errorCodes returns the codes of the error frames the page received.
func (w *pageWatch) errorCodes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, f := range w.received {
		if f.str("t") == "error" {
			out = append(out, f.str("code"))
		}
	}
	return out
}

func (w *pageWatch) socketURLs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sockets)
}

// TestOverlayBrowser opens the overlay in headless Chromium against a relay
// on loopback: messages from the admin API and from users appear in order
// with names and badges, chat markup stays text, a deleted message goes,
// and after the relay drops the page's connection (an operator's 4003) the
// page resumes by itself (join with since and epoch) and shows every
// message exactly once, in order.
func TestOverlayBrowser(t *testing.T) {
	ctx := startBrowser(t)
	srv := startAPIRelay(t, func(c *relay.Config) { c.Loops = 2 })
	const room = "stream:demo"

	watch := watchPage(t, ctx)

	var want []string
	publish := func(from, name, body string) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"room": room, "body": body, "from": from, "name": name})
		var out struct{ Seq uint64 }
		api(t, srv, "POST", "/api/publish", string(b), &out)
		want = append(want, fmt.Sprintf("%d %s: %s", out.Seq, name, body))
	}

	// Two messages before the page opens: they come from history.
	publish("streambot", "StreamBot", "Welcome to the stream! Be nice in chat.")
	publish("streambot", "StreamBot", "Today: speedrun practice, any% glitchless.")

	tok := sseToken(t, "overlay-1", jwt.MapClaims{"name": "Overlay"})
	pageURL := "http://" + srv.Addr() + "/overlay?room=" + room + "&theme=dark&size=20&token=" + tok
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(800, 450), chromedp.Navigate(pageURL)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.state === "open"`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page did not connect: %v (state %q)", err, evalString(t, ctx, "document.body.dataset.state"))
	}
	waitRows(t, ctx, "history", want)

	// Users with badges, and the admin API, live.
	userTok := func(sub, name string, badges ...string) string {
		return sseToken(t, sub, jwt.MapClaims{"name": name, "badges": badges})
	}
	users := map[string]*client{
		"Mia":     dial(t, srv, dialOpts{json: true, token: userTok("u-mia", "Mia", "mod")}),
		"Kenji":   dial(t, srv, dialOpts{json: true, token: userTok("u-kenji", "Kenji", "vip", "sub")}),
		"rosa_42": dial(t, srv, dialOpts{json: true, token: userTok("u-rosa", "rosa_42")}),
	}
	for _, u := range users {
		u.join(room, 1)
	}
	say := func(name, body string) {
		t.Helper()
		u := users[name]
		u.send(map[string]any{"t": "send", "room": room, "body": body, "ref": 7})
		for { // skip the room's batches and presence up to the ack
			f := u.next()
			if f.str("t") == "ack" && f.num("ref") == 7 {
				want = append(want, fmt.Sprintf("%d %s: %s", f.num("seq"), name, body))
				return
			}
			if f.str("t") == "error" {
				t.Fatalf("%s's send: %v", name, f)
			}
		}
	}
	say("Mia", "hi everyone o/")
	say("Kenji", "that last split was clean")
	publish("game", "Game", "Split 3: 4:12.8 (-1.3 s)")
	say("rosa_42", "PogChamp")
	// Chat cannot inject markup: this shows as text.
	const evil = `<img src=x onerror="document.title='pwned'"><b>bold?</b>`
	say("rosa_42", evil)
	rows := waitRows(t, ctx, "live messages", want)
	if n := evalString(t, ctx, `String(document.querySelectorAll('#chat img, #chat b').length) + " " + document.title`); n != "0 roomcast overlay" {
		t.Fatalf("chat markup was interpreted: elements and title %q", n)
	}
	for _, r := range rows {
		switch r.Name {
		case "Mia":
			if strings.Join(r.Badges, ",") != "mod" {
				t.Errorf("Mia's badges %v", r.Badges)
			}
		case "Kenji":
			if strings.Join(r.Badges, ",") != "vip,sub" {
				t.Errorf("Kenji's badges %v", r.Badges)
			}
		default:
			if len(r.Badges) != 0 {
				t.Errorf("%s's badges %v", r.Name, r.Badges)
			}
		}
	}
	// Name colours: stable per user, different between these users.
	colors := map[string]string{}
	for _, r := range rows {
		if c, ok := colors[r.Name]; ok && c != r.Color {
			t.Errorf("%s's name has colours %s and %s", r.Name, c, r.Color)
		}
		colors[r.Name] = r.Color
	}
	if colors["Mia"] == colors["Kenji"] || colors["Kenji"] == colors["rosa_42"] {
		t.Errorf("names share a colour: %v", colors)
	}

	// A moderator deletes the troll's message: it leaves the page.
	evilSeq := strings.Fields(want[len(want)-1])[0]
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"delete","seq":`+evilSeq+`}`, nil)
	want = want[:len(want)-1]
	waitRows(t, ctx, "after the delete", want)

	// The relay drops the page's connection; messages keep coming meanwhile.
	var dc struct{ Disconnected int }
	api(t, srv, "POST", "/api/disconnect", `{"user":"overlay-1"}`, &dc)
	if dc.Disconnected != 1 {
		t.Fatalf("/api/disconnect found %d connections of overlay-1, want 1", dc.Disconnected)
	}
	say("Kenji", "did the overlay just blink?")
	publish("game", "Game", "Split 4: 5:40.2 (+0.4 s)")
	say("Mia", "all good, it resumes by itself")
	eventually(t, "the page to reconnect", func() bool {
		return len(watch.joins()) == 2 && metricsOf(t, srv)[`roomcast_connections{anonymous="false",kind="ws"}`] == 4 &&
			metricsOf(t, srv)[`roomcast_disconnects_total{code="4003"}`] == 1
	})
	say("rosa_42", "GG! new PB incoming")
	publish("streambot", "StreamBot", "Follow for more runs this week")
	waitRows(t, ctx, "after the reconnect", want)
	// Nothing came twice, even briefly.
	time.Sleep(300 * time.Millisecond)
	waitRows(t, ctx, "a moment later", want)

	// The page connected twice, to /ws with its token, in the JSON format.
	// The first join asked for history; the rejoin resumed after the last
	// message seen before the drop (the deleted one), in the room's epoch.
	socks := watch.socketURLs()
	if len(socks) != 2 || socks[0] != socks[1] || !strings.HasPrefix(socks[0], "ws://"+srv.Addr()+"/ws?token=") {
		t.Fatalf("WebSockets opened: %q", socks)
	}
	joins := watch.joins()
	first, again := joins[0], joins[1]
	if first.str("room") != room || first.num("history") != 50 || first["since"] != nil || first["epoch"] != nil {
		t.Errorf("first join %v: want room %s, history 50, no since", first, room)
	}
	if fmt.Sprint(again.num("since")) != evilSeq || !regexp.MustCompile(`^[a-z2-7]{8}$`).MatchString(again.str("epoch")) || again.num("history") != 50 {
		t.Errorf("rejoin %v: want since %s, the room's epoch and history 50", again, evilSeq)
	}

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, shot)
}

// saveScreenshot keeps the page as a test artifact, and as the README's
// picture with ROOMCAST_UPDATE_DOCS=1.
func saveScreenshot(t *testing.T, png []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "overlay.png")
	if dir := os.Getenv("ROOMCAST_ARTIFACTS"); dir != "" {
		path = filepath.Join(dir, "overlay.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	if os.Getenv("ROOMCAST_UPDATE_DOCS") == "1" {
		if err := os.MkdirAll("../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../docs/overlay.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote docs/overlay.png")
	}
}

// TestOverlayBrowserStyle: the default page is transparent with outlined
// text; max keeps the newest messages; fade removes them after its time.
func TestOverlayBrowserStyle(t *testing.T) {
	ctx := startBrowser(t)
	srv := startAPIRelay(t, nil)
	const room = "stream:style"
	for i := 1; i <= 6; i++ {
		ssePublish(t, srv, room, fmt.Sprintf("message %d", i))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay?room="+room+"&max=3&fade=2&size=30")); err != nil {
		t.Fatal(err)
	}
	waitRows(t, ctx, "the latest max messages", []string{"4 system: message 4", "5 system: message 5", "6 system: message 6"})
	style := evalString(t, ctx, `(s => s.backgroundColor + " | " + (s.textShadow !== "none") + " | " + s.fontSize)(getComputedStyle(document.body))`)
	if style != "rgba(0, 0, 0, 0) | true | 30px" {
		t.Fatalf("default style %q, want a transparent background, a text shadow and the size asked", style)
	}
	ssePublish(t, srv, room, "message 7")
	waitRows(t, ctx, "max after a live message", []string{"5 system: message 5", "6 system: message 6", "7 system: message 7"})
	waitRows(t, ctx, "every message faded", nil)

	// No room: a hint rather than a blank page.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay")); err != nil {
		t.Fatal(err)
	}
	if s := evalString(t, ctx, `document.body.textContent`); !strings.Contains(s, "?room=") {
		t.Fatalf("page without a room says %q", s)
	}
}

// TestOverlayBrowserRelayRestart: when the relay restarts (its rooms and
// seqs start over), the page reconnects by itself and shows the new
// room's messages rather than waiting for seqs above the old ones.
func TestOverlayBrowserRelayRestart(t *testing.T) {
	ctx := startBrowser(t)
	start := func(listen string) *relay.Server {
		t.Helper()
		srv, err := relay.New(relay.Config{Listen: listen, Admin: "127.0.0.1:0", Loops: 2, APIKey: testAPIKey, NodeID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	stop := func(srv *relay.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	const room = "stream:restart"
	old := start("127.0.0.1:0")
	for i := 1; i <= 3; i++ {
		ssePublish(t, old, room, fmt.Sprintf("before %d", i))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+old.Addr()+"/overlay?room="+room)); err != nil {
		t.Fatal(err)
	}
	waitRows(t, ctx, "before the restart", []string{"1 system: before 1", "2 system: before 2", "3 system: before 3"})
	stop(old)

	srv := start(old.Addr())
	defer stop(srv)
	ssePublish(t, srv, room, "after 1")
	waitRows(t, ctx, "after the restart", []string{"1 system: after 1"})
	ssePublish(t, srv, room, "after 2")
	waitRows(t, ctx, "a live message after the restart", []string{"1 system: after 1", "2 system: after 2"})
}

// TestOverlayBrowserBan: when the page's user is banned from the room, the
// page is kicked and retries its join with back-off; the relay refuses it
// (banned) until the unban, and the page then resumes after the last
// message it showed (since and epoch), with nothing twice.
func TestOverlayBrowserBan(t *testing.T) {
	ctx := startBrowser(t)
	srv := startAPIRelay(t, nil)
	watch := watchPage(t, ctx)
	const room = "stream:ban"
	ssePublish(t, srv, room, "one")
	tok := sseToken(t, "overlay-2", nil)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay?room="+room+"&token="+tok)); err != nil {
		t.Fatal(err)
	}
	waitRows(t, ctx, "history", []string{"1 system: one"})
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"ban","user":"overlay-2"}`, nil)
	ssePublish(t, srv, room, "two")
	ssePublish(t, srv, room, "three")
	// Refused at least once (the first retry comes after 1 s).
	eventually(t, "a refused retry", func() bool { return slices.Contains(watch.errorCodes(), "banned") })
	if s := evalString(t, ctx, `document.body.dataset.state + " | " + document.getElementById("status").textContent`); !strings.HasPrefix(s, "reconnecting | ") {
		t.Errorf("page while banned: %q", s)
	}
	api(t, srv, "POST", "/api/mod", `{"room":"`+room+`","action":"unban","user":"overlay-2"}`, nil)
	want := []string{"1 system: one", "2 system: two", "3 system: three"}
	waitRows(t, ctx, "after the unban", want)
	ssePublish(t, srv, room, "four")
	waitRows(t, ctx, "live after the unban", append(want, "4 system: four"))
	joins := watch.joins()
	if len(joins) < 3 {
		t.Fatalf("joins %v: want the first, a refused one and the one after the unban", joins)
	}
	epoch := joins[1].str("epoch")
	for _, j := range joins[1:] {
		if j.num("since") != 1 || j.str("epoch") != epoch || epoch == "" {
			t.Errorf("retry %v does not resume with since 1 in the room's epoch", j)
		}
	}
	if n := len(watch.socketURLs()); n != 1 {
		t.Errorf("the page opened %d WebSockets: a ban is not a reason to reconnect", n)
	}
	t.Logf("joins: %d", len(joins))
}
