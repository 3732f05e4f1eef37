package relaytest_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relaytest"
)

// TestClockConcurrent: Now and Advance from many goroutines add up (and
// -race finds no race).
func TestClockConcurrent(t *testing.T) {
	c := relaytest.NewClock()
	start := c.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if got := c.Now().Sub(start); got != 800*time.Second {
		t.Fatalf("advanced %v, want 800s", got)
	}
}

// TestToken: tokens verify with the secret, carry the claims given, an
// hour's exp unless one is given, and leave empty name and role out.
func TestToken(t *testing.T) {
	parse := func(s string) jwt.MapClaims {
		c := jwt.MapClaims{}
		if _, err := jwt.ParseWithClaims(s, c, func(*jwt.Token) (any, error) { return []byte("k"), nil },
			jwt.WithValidMethods([]string{"HS256"})); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := parse(relaytest.Token(t, "k", "ann", "", "mod"))
	if c["sub"] != "ann" || c["role"] != "mod" {
		t.Errorf("claims %v", c)
	}
	if _, ok := c["name"]; ok {
		t.Errorf("empty name is a claim: %v", c)
	}
	if exp, _ := c.GetExpirationTime(); exp == nil || time.Until(exp.Time) < 59*time.Minute {
		t.Errorf("exp %v, want an hour from now", exp)
	}
	past := time.Now().Add(-time.Minute).Unix()
	if _, err := jwt.Parse(relaytest.Sign(t, "k", jwt.MapClaims{"sub": "a", "exp": past}),
		func(*jwt.Token) (any, error) { return []byte("k"), nil }); err == nil {
		t.Error("a given exp in the past was replaced")
	}
}

// TestMetrics reads values by name and labels from an exposition.
func TestMetrics(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# TYPE x_total counter\nx_total{code=\"a\",k=\"1\"} 2\nx_total{code=\"b\",k=\"1\"} 3\n# TYPE g gauge\ng 7\n"))
	}))
	defer ts.Close()
	m := relaytest.Metrics(t, ts.URL)
	if m[`x_total{code="a",k="1"}`] != 2 || m["g"] != 7 {
		t.Errorf("Metrics = %v", m)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   float64
		found  bool
	}{{nil, 5, true}, {map[string]string{"code": "b"}, 3, true}, {map[string]string{"code": "c"}, 0, false}} {
		if v, ok := relaytest.Metric(t, ts.URL, "x_total", tc.labels); v != tc.want || ok != tc.found {
			t.Errorf("Metric(x_total, %v) = %v, %v; want %v, %v", tc.labels, v, ok, tc.want, tc.found)
		}
	}
}
