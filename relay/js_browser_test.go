package relay_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/relay"
)

// jsTestPage is a page of another origin than the relay's (a game's page)
// that imports the client library from the relay: module scripts of
// another origin need the relay's CORS headers, and the WebSocket passes
// the relay's Origin allow-list. It logs each message and gap.
const jsTestPage = `<!doctype html>
<title>roomcast.js in a page</title>
<script type="module">
const q = new URLSearchParams(location.search);
const relay = q.get("relay");
window.log = [];
window.states = [];
try {
  const { Client } = await import("http://" + relay + "/roomcast.js");
  const client = new Client("ws://" + relay + "/ws", { token: q.get("token"), minDelay: 100, maxDelay: 1000, maxFailures: 1000 });
  client.on("state", (s) => states.push(s.state + " " + s.code));
  const room = client.room("game:browser", { history: 10 });
  room.on("message", (m) => log.push(m.seq + " " + m.from + ": " + m.body + (m.meta ? " " + JSON.stringify(m.meta) : "")));
  room.on("gap", (g) => log.push("gap " + g.reason + " from " + g.from));
  window.send = (body) => room.send(body, { meta: { color: "red" } });
  window.room = room;
  await room.join();
  window.ready = true;
} catch (err) {
  window.failed = String(err);
}
</script>`

// TestJSClientBrowser: in headless Chromium, a page of another origin
// imports /roomcast.js, joins a room (history), receives every message
// once and in order, sends one (resolving with its seq), and survives a
// relay restart: one gap (reason epoch), then the new room's messages.
func TestJSClientBrowser(t *testing.T) {
	ctx := startBrowser(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, jsTestPage)
	}))
	defer page.Close()
	j := startJSRelay(t, func(c *relay.Config) { c.AllowedOrigins = []string{page.URL} })
	const room = "game:browser"
	var want []string
	publish := func(body string) {
		t.Helper()
		seq := ssePublish(t, j.server(), room, body)
		want = append(want, fmt.Sprintf("%d system: %s", seq, body))
	}
	for i := 1; i <= 3; i++ {
		publish(fmt.Sprintf("before %d", i))
	}
	tok := sseToken(t, "player-1", nil)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/?relay="+j.addr+"&token="+url.QueryEscape(tok))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.ready === true || window.failed !== undefined`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page did not join: %v", err)
	}
	if f := evalString(t, ctx, `String(window.failed || "")`); f != "" {
		t.Fatalf("the page failed: %s", f)
	}
	waitLog(t, ctx, "history", want)
	for i := 1; i <= 20; i++ {
		publish(fmt.Sprintf("live %d", i))
	}
	seq, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.send("from the page")`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("send from the page: %v", err)
	}
	want = append(want, fmt.Sprintf(`%d player-1: from the page {"color":"red"}`, seq))
	publish("after the page's")
	waitLog(t, ctx, "live messages", want)

	epoch := evalString(t, ctx, `window.room.epoch`)
	j.restart()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.room.state === "joined" && window.room.epoch !== `+fmt.Sprintf("%q", epoch),
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page did not rejoin after the restart: %v (states %s)", err, evalString(t, ctx, `JSON.stringify(window.states)`))
	}
	want = append(want, fmt.Sprintf("gap epoch from %d", len(want)+1))
	publish("after restart 1")
	publish("after restart 2")
	waitLog(t, ctx, "after the restart", want)
	if !strings.HasSuffix(want[len(want)-1], "2 system: after restart 2") {
		t.Fatalf("the new relay's seqs did not start over: %q", want)
	}
	states := evalString(t, ctx, `window.states.join(",")`)
	if !strings.Contains(states, "disconnected 1001") || strings.Count(states, "connected 0") != 2 {
		t.Errorf("states %s: want one 1001 and two connections", states)
	}
}

// waitLog polls the test page's log until it is exactly want.
func waitLog(t *testing.T, ctx context.Context, what string, want []string) {
	t.Helper()
	var got []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var err error
		got, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.log`))
		if err != nil {
			t.Fatalf("reading the log: %v", err)
		}
		if slices.Equal(got, want) {
			return
		}
	}
	t.Fatalf("%s: the page logged\n\t%s\nwant\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
}

// TestOverlayBrowserShowsWhyBlank: an overlay that cannot show anything
// says why in the page: a room closed to anonymous viewers, a token the
// relay refuses.
func TestOverlayBrowserShowsWhyBlank(t *testing.T) {
	ctx := startBrowser(t)
	closed := false
	srv := startAPIRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"vip": {AnonymousRead: &closed}}
	})
	status := func(what, want string) {
		t.Helper()
		var got string
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			got = evalString(t, ctx, `document.getElementById("status").hidden ? "" : document.getElementById("status").textContent`)
			if strings.Contains(got, want) {
				return
			}
		}
		t.Fatalf("%s: the page says %q, want it to say %q", what, got, want)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay?room=vip:lounge")); err != nil {
		t.Fatal(err)
	}
	status("anonymous overlay of a closed room", "closed to this overlay: add a token")
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay?room=stream:x&token=expired.or.bad")); err != nil {
		t.Fatal(err)
	}
	status("a refused token", "Is the token in this page's address still valid")
	// With a good token the message goes as soon as the page shows chat.
	tok := sseToken(t, "vip-overlay", nil)
	ssePublish(t, srv, "vip:lounge", "hello vips")
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.Addr()+"/overlay?room=vip:lounge&token="+tok)); err != nil {
		t.Fatal(err)
	}
	waitRows(t, ctx, "with a token", []string{"1 system: hello vips"})
	if s := evalString(t, ctx, `document.getElementById("status").hidden + " " + document.body.dataset.state`); s != "true open" {
		t.Fatalf("status hidden and page state: %q", s)
	}
}
