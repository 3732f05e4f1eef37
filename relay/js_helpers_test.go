package relay_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
)

// jsRelay is a relay the JavaScript tests (Node and browser) drive: it can
// be restarted on the same address (a new process would do the same: its
// rooms and epochs start over), and a control HTTP server lets a test
// written in JavaScript restart it, mint tokens and call the admin API.
type jsRelay struct {
	t    testing.TB
	mod  func(*relay.Config)
	mu   sync.Mutex
	srv  *relay.Server
	addr string // the public address, kept across restarts
	ctl  *httptest.Server
}

// jsNamespaces is the policy of the JavaScript tests: namespace "slow"
// lets a user send 2 messages, then 1 per 5 seconds (rate_limited tests);
// namespace "short" keeps 5 messages of history (gap tests).
func jsNamespaces() map[string]relay.Namespace {
	five := 5
	return map[string]relay.Namespace{
		"slow":  {RateLimits: map[string]relay.RateLimit{"user": {Rate: 0.2, Burst: 2}}},
		"short": {History: &five},
	}
}

func startJSRelay(t testing.TB, mod func(*relay.Config)) *jsRelay {
	t.Helper()
	j := &jsRelay{t: t, mod: mod}
	j.srv = j.start("127.0.0.1:0")
	j.addr = j.srv.Addr()
	t.Cleanup(func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.stop(j.srv)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/token", j.serveToken)
	mux.HandleFunc("/restart", func(w http.ResponseWriter, r *http.Request) {
		j.restart()
		w.Write([]byte("{}"))
	})
	mux.HandleFunc("/api/", j.proxyAPI)
	j.ctl = httptest.NewServer(mux)
	t.Cleanup(j.ctl.Close)
	return j
}

func (j *jsRelay) start(listen string) *relay.Server {
	j.t.Helper()
	cfg := relay.Config{Listen: listen, Admin: "127.0.0.1:0", Loops: 2, JWTSecret: testSecret, APIKey: testAPIKey,
		SendRate: 1000, SendBurst: 1000, NodeID: "test", Namespaces: jsNamespaces()}
	if j.mod != nil {
		j.mod(&cfg)
	}
	srv, err := relay.New(cfg)
	if err != nil {
		j.t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		j.t.Fatal(err)
	}
	return srv
}

func (j *jsRelay) stop(srv *relay.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		j.t.Logf("shutdown: %v", err)
	}
}

// server is the relay running now.
func (j *jsRelay) server() *relay.Server {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.srv
}

// restart shuts the relay down (clients get 1001) and starts a new one on
// the same address: every room has a new epoch, seqs start over.
func (j *jsRelay) restart() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stop(j.srv)
	j.srv = j.start(j.addr)
}

// serveToken mints an HS256 token: ?sub=&name=&role=&ttl= (seconds, default
// an hour; the exp claim has whole seconds).
func (j *jsRelay) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ttl, err := strconv.ParseFloat(q.Get("ttl"), 64)
	if err != nil {
		ttl = 3600
	}
	c := jwt.MapClaims{"sub": q.Get("sub"), "exp": time.Now().Add(time.Duration(ttl * float64(time.Second))).Unix()}
	for _, k := range []string{"name", "role"} {
		if v := q.Get(k); v != "" {
			c[k] = v
		}
	}
	if b := q.Get("badges"); b != "" {
		c["badges"] = strings.Split(b, ",")
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"token": s})
}

// proxyAPI passes /api/* to the admin API of the relay running now, with
// the API key.
func (j *jsRelay) proxyAPI(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequest(r.Method, "http://"+j.server().AdminAddr()+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), 502)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
