package relay_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/roomcast/roomcast/relay"
)

// getMetrics fetches /metrics with the given Accept-Encoding (none when
// ""), without the client's transparent decompression.
func getMetrics(t testing.TB, srv *relay.Server, acceptEncoding string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+srv.AdminAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", resp.StatusCode, b)
	}
	return resp, b
}

// metricNames parses a text exposition and returns its family names.
func metricNames(t testing.TB, body []byte) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, body)
	}
	names := map[string]bool{}
	for n := range fams {
		names[n] = true
	}
	return names
}

// /metrics is gzip-compressed exactly when the scraper accepts gzip, and
// the compressed body is the same exposition as the plain one.
func TestMetricsGzip(t *testing.T) {
	srv := startRelay(t, nil)
	resp, plain := getMetrics(t, srv, "")
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("no Accept-Encoding: Content-Encoding %q", ce)
	}
	want := metricNames(t, plain)
	if !want["roomcast_rooms"] || !want["go_goroutines"] {
		t.Fatalf("plain exposition lacks roomcast_rooms or go_goroutines: %v", want)
	}
	for _, ae := range []string{"gzip", "deflate, gzip;q=0.5", "br , GZIP ; q=1", "zstd, gzip"} {
		resp, body := getMetrics(t, srv, ae)
		if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, ce)
		}
		if v := strings.Join(resp.Header.Values("Vary"), ", "); !strings.Contains(v, "Accept-Encoding") {
			t.Fatalf("Accept-Encoding %q: Vary %q", ae, v)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("Accept-Encoding %q: not gzip: %v", ae, err)
		}
		text, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: bad gzip stream: %v", ae, err)
		}
		if len(body) >= len(text) {
			t.Fatalf("Accept-Encoding %q: %d compressed bytes for %d", ae, len(body), len(text))
		}
		got := metricNames(t, text)
		for n := range want {
			if !got[n] {
				t.Fatalf("Accept-Encoding %q: decompressed exposition lacks %s", ae, n)
			}
		}
	}
	for _, ae := range []string{"gzip;q=0", "identity", "deflate, br", "*"} { // zstd is not offered; "*" may be answered plain
		resp, body := getMetrics(t, srv, ae)
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, ce)
		}
		metricNames(t, body)
	}
}

// A compressed scrape leaves little memory behind: promhttp's own gzip
// kept a pooled compress/gzip writer of about 800 KB after each compressed
// scrape (held by the pool until two collections pass, that is for good
// when a scraper comes every 15 s). Measured as the heap still live after
// one collection (a pool's objects survive one), the least of three tries
// (other goroutines only add).
func TestMetricsGzipKeepsLittle(t *testing.T) {
	srv := startRelay(t, nil)
	getMetrics(t, srv, "gzip") // first-use allocations of the handlers
	const limit = 512 << 10
	least := uint64(1 << 62)
	for range 3 {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.GC() // pools emptied
		runtime.ReadMemStats(&m0)
		getMetrics(t, srv, "gzip")
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if m1.HeapAlloc > m0.HeapAlloc {
			least = min(least, m1.HeapAlloc-m0.HeapAlloc)
		} else {
			least = 0
		}
	}
	t.Logf("heap kept by a compressed scrape: %d B", least)
	if least > limit {
		t.Fatalf("a compressed /metrics scrape keeps %d B of heap, want at most %d", least, limit)
	}
}

// /debug/runtime answers every runtime/metrics value and the process's
// smaps_rollup, behind the API key.
func TestRuntimeDump(t *testing.T) {
	srv := startAPIRelay(t, nil)
	if r := callAPI(t, srv, "GET", "/debug/runtime", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("without the key: status %d, want 401", r.status)
	}
	if r := callAPI(t, srv, "GET", "/debug/runtime", apiAuth("wrong"), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("with a wrong key: status %d, want 401", r.status)
	}
	r := callAPI(t, srv, "GET", "/debug/runtime", apiAuth(testAPIKey), "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, re := range []string{
		`(?m)^/memory/classes/metadata/other:bytes [1-9][0-9]*$`,
		`(?m)^/memory/classes/heap/objects:bytes [1-9][0-9]*$`,
		`(?m)^/gc/heap/goal:bytes [1-9][0-9]*$`,
		`(?m)^/gc/pauses:seconds count=[0-9]+ median<=`,
		`(?m)^/gc/gogc:percent [0-9]+$`,
	} {
		if !regexp.MustCompile(re).Match(r.body) {
			t.Fatalf("answer lacks %s:\n%s", re, r.body)
		}
	}
	if _, err := os.Stat("/proc/self/smaps_rollup"); err == nil {
		if !regexp.MustCompile(`(?m)^Rss: +[1-9][0-9]* kB$`).Match(r.body) {
			t.Fatalf("answer lacks smaps_rollup's Rss:\n%s", r.body)
		}
	}
}
