package relay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// deflatePage opens a plain WebSocket (JSON) to the relay, joins a room and
// counts the messages of its batches and the bytes of their (inflated)
// frames. Chromium always offers permessage-deflate.
const deflatePage = `<!doctype html>
<title>compressed batches</title>
<script>
const q = new URLSearchParams(location.search);
window.msgs = 0; window.bytes = 0; window.extensions = null;
const ws = new WebSocket("ws://" + q.get("relay") + "/ws?token=" + encodeURIComponent(q.get("token")), "roomcast.v1.json");
ws.onopen = () => { window.extensions = ws.extensions; };
ws.onmessage = (ev) => {
  const f = JSON.parse(ev.data);
  if (f.t === "hello") ws.send(JSON.stringify({t: "join", room: q.get("room"), ref: 1}));
  if (f.t === "joined") window.joined = true;
  if (f.t === "batch") { window.msgs += f.msgs.length; window.bytes += ev.data.length; }
};
ws.onclose = (ev) => { window.closed = ev.code; };
</script>`

// TestDeflateBrowser: headless Chromium negotiates permessage-deflate (the
// handshake response CDP sees and ws.extensions agree) and reads the room's
// batches, which the relay wrote compressed: fewer bytes went out than the
// page read.
func TestDeflateBrowser(t *testing.T) {
	ctx := startBrowser(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, deflatePage)
	}))
	defer page.Close()
	srv := startRelay(t, func(c *relay.Config) { c.AllowedOrigins = []string{page.URL} })

	var mu sync.Mutex
	var respExt, offered string
	header := func(h network.Headers) string {
		for k, v := range h {
			if strings.EqualFold(k, "Sec-WebSocket-Extensions") {
				return fmt.Sprint(v)
			}
		}
		return ""
	}
	if err := chromedp.Do(ctx); err != nil { // the tab, so the listener sees its first events
		t.Fatal(err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventWebSocketWillSendHandshakeRequest:
			if e.Request != nil {
				offered = header(e.Request.Headers)
			}
		case *network.EventWebSocketHandshakeResponseReceived:
			if e.Response != nil {
				respExt = header(e.Response.Headers)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	const room = "stream:deflate"
	tok := sseToken(t, "viewer-1", nil)
	u := page.URL + "/?relay=" + srv.Addr() + "&room=" + room + "&token=" + url.QueryEscape(tok)
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.joined === true || window.closed !== undefined`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page did not join: %v", err)
	}
	ext := evalString(t, ctx, `String(window.extensions)`)
	mu.Lock()
	gotResp, gotOffer := respExt, offered
	mu.Unlock()
	t.Logf("Chromium offered %q; the relay answered %q; ws.extensions %q", gotOffer, gotResp, ext)
	for _, s := range []string{gotResp, ext} {
		if !strings.Contains(s, "permessage-deflate") || !strings.Contains(s, "server_no_context_takeover") ||
			!strings.Contains(s, "client_no_context_takeover") {
			t.Fatalf("negotiated %q, want permessage-deflate with no context takeover", s)
		}
	}

	// Only the page is connected: what the relay writes from now on is its.
	before := metricsOf(t, srv)["roomcast_bytes_sent_total"]
	const n = 60
	for i := range n {
		if _, err := srv.Hub().Publish(room, &shard.Message{From: "bot", Name: "Bot", Body: chatText(i, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`window.msgs >= %d`, n),
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page read %s of %d messages: %v", evalString(t, ctx, `String(window.msgs)`), n, err)
	}
	var read float64
	read, err = chromedp.Run(ctx, chromedp.Evaluate[float64](`window.bytes`))
	if err != nil {
		t.Fatal(err)
	}
	sent := metricsOf(t, srv)["roomcast_bytes_sent_total"] - before
	t.Logf("the page read %.0f bytes of batches; the relay sent %.0f", read, sent)
	if sent <= 0 || sent > 0.6*read {
		t.Fatalf("the relay sent %.0f bytes for %.0f bytes of batches: not compressed", sent, read)
	}
}
