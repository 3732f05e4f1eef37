package relay_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/relay"
)

// publish calls POST /api/publish with body and returns the status and
// the error code ("" on success).
func publish(t testing.TB, srv *relay.Server, v map[string]any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(v)
	res := callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), string(b))
	var out struct {
		Error struct {
			Code    string `json:"code"`
			RetryMS int64  `json:"retry_ms"`
		} `json:"error"`
	}
	_ = json.Unmarshal(res.body, &out)
	return res.status, out.Error.Code
}

// TestAPIPublishSlowModeExempt: the API is not held by slow mode (it used
// to answer 413 too_large); a ban of `from` still holds.
func TestAPIPublishSlowModeExempt(t *testing.T) {
	srv := startAPIRelay(t, nil)
	mod := func(body string) {
		t.Helper()
		if r := callAPI(t, srv, "POST", "/api/mod", apiAuth(testAPIKey), body); r.status != 200 {
			t.Fatalf("mod %s: %d %s", body, r.status, r.body)
		}
	}
	mod(`{"room":"slow","action":"slow","secs":60}`)
	for i := 0; i < 3; i++ {
		if st, code := publish(t, srv, map[string]any{"room": "slow", "body": fmt.Sprint("hi ", i), "from": "bot"}); st != 200 {
			t.Fatalf("publish %d in slow mode: %d %s", i, st, code)
		}
	}
	mod(`{"room":"slow","action":"ban","user":"troll"}`)
	if st, code := publish(t, srv, map[string]any{"room": "slow", "body": "x", "from": "troll"}); st != 403 || code != "banned" {
		t.Fatalf("publish from a banned user: %d %s, want 403 banned", st, code)
	}
	mod(`{"room":"slow","action":"timeout","user":"loud","secs":60}`)
	r := callAPI(t, srv, "POST", "/api/publish", apiAuth(testAPIKey), `{"room":"slow","body":"x","from":"loud"}`)
	if r.status != 403 || !strings.Contains(string(r.body), `"muted"`) || r.header.Get("Retry-After") == "" {
		t.Fatalf("publish from a timed-out user: %d %s Retry-After=%q, want 403 muted with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
}

// TestMetaLimitsInBytes: meta keys are limited to 64 bytes, values to 256
// bytes and the whole to 1 KiB, whatever the characters.
func TestMetaLimitsInBytes(t *testing.T) {
	srv := startAPIRelay(t, nil)
	f := func(meta map[string]string, want int) {
		t.Helper()
		st, code := publish(t, srv, map[string]any{"room": "meta", "body": "x", "meta": meta})
		if st != want || (want == 413 && code != "too_large") {
			t.Fatalf("meta of %d entries: %d %s, want %d", len(meta), st, code, want)
		}
	}
	f(map[string]string{strings.Repeat("k", 64): strings.Repeat("v", 256)}, 200)
	f(map[string]string{strings.Repeat("k", 65): "v"}, 413)
	f(map[string]string{"k": strings.Repeat("v", 257)}, 413)
	f(map[string]string{"k": strings.Repeat("😀", 64)}, 200) // 256 bytes
	f(map[string]string{"k": strings.Repeat("😀", 65)}, 413) // 65 characters, 260 bytes
	big := map[string]string{}
	for i := 0; i < 4; i++ {
		big[fmt.Sprint("k", i)] = strings.Repeat("v", 250) // 4 * 252 = 1008 bytes
	}
	f(big, 200)
	big["k4"] = strings.Repeat("v", 20) // 1030 bytes
	f(big, 413)
}
