package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
)

// syncBuffer is stderr for run: the relay's goroutines log into it while
// the test reads it.
type syncBuffer = relaytest.SyncBuffer

// clearEnv keeps the test's ROOMCAST_* settings out of run.
func clearEnv(t *testing.T) {
	for _, k := range []string{"ROOMCAST_JWT_SECRET", "ROOMCAST_API_KEY", "ROOMCAST_ADMIN", "ROOMCAST_LISTEN", "ROOMCAST_ANONYMOUS"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

// runRelay runs `roomcast args...` until its banner is out, and returns
// what it wrote so far and a stop that sends SIGINT (the banner is written
// after the handler is installed) and waits for run to return nil.
func runRelay(t *testing.T, args ...string) (banner string, stop func() string) {
	t.Helper()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(args, &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "\n  data ") {
		select {
		case err := <-done:
			t.Fatalf("run returned %v before its banner:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 10s:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out.String(), func() string {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run after SIGINT: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return 10s after SIGINT")
		}
		return out.String()
	}
}

// TestBannerAndSecretWarnings starts the relay as a deployment behind a
// proxy would, with secrets given (wrongly) as flags: both get a warning
// naming the environment variable, and the banner's addresses are the ones
// the relay serves.
func TestBannerAndSecretWarnings(t *testing.T) {
	clearEnv(t)
	out, stop := runRelay(t, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-loops", "1", "-jwt-secret", "s3cret",
		"-api-key", "k3y", "-trusted-proxies", "127.0.0.1/32", "-proxy-protocol", "-ip-exempt=")
	defer stop()
	for _, want := range []string{
		`-jwt-secret on the command line is visible`, "ROOMCAST_JWT_SECRET",
		`-api-key on the command line is visible`, "ROOMCAST_API_KEY",
		"127.0.0.1/32 name the client (PROXY protocol)",
		"API and /debug/pprof/ need the -api-key bearer key",
		"chat with tokens signed HS256 (-jwt-secret)",
		"without a token, read-only viewers",
		"data      memory: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	ws := regexp.MustCompile(`chat      ws://(127\.0\.0\.1:\d+)/ws`).FindStringSubmatch(out)
	admin := regexp.MustCompile(`admin     http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(out)
	if ws == nil || admin == nil {
		t.Fatalf("banner lacks the ws:// or admin address:\n%s", out)
	}
	if !strings.Contains(out, "overlay   http://"+ws[1]+"/overlay?room=ROOM") {
		t.Errorf("banner lacks the overlay URL on %s:\n%s", ws[1], out)
	}
	resp, err := http.Get("http://" + admin[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the banner's admin address answers /readyz with %s", resp.Status)
	}
}

// TestBannerAdminOffViewersOnly: no key and no admin listener, said as
// such; an API key from the environment is no command-line warning, but
// one with -admin off is.
func TestBannerAdminOffViewersOnly(t *testing.T) {
	clearEnv(t)
	t.Setenv("ROOMCAST_API_KEY", "k3y")
	out, stop := runRelay(t, "-listen", "127.0.0.1:0", "-admin", "off", "-loops", "1")
	out = stop()
	for _, want := range []string{
		"-api-key is set but -admin is off",
		"admin     admin API off",
		"everyone is a read-only viewer",
		"chat      ws://127.0.0.1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"on the command line", `admin=""`, "mint one"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
}

// TestRefusesNobodyCanConnect: -anonymous=false without a key would refuse
// every connection, so the relay does not start.
func TestRefusesNobodyCanConnect(t *testing.T) {
	clearEnv(t)
	var out syncBuffer
	err := run([]string{"-listen", "127.0.0.1:0", "-admin", "off", "-anonymous=false"}, &out)
	if err == nil || !strings.Contains(err.Error(), "no connection could ever be let in") {
		t.Fatalf("run = %v, want a refusal", err)
	}
	if strings.Contains(out.String(), "roomcast is running") {
		t.Fatalf("the relay started:\n%s", out.String())
	}
}

// TestTokenFlags mints tokens as `roomcast token` does: roles the relay
// refuses and -rooms that match nothing are refused; -rooms and -badges
// become claims.
func TestTokenFlags(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-role", "viewer"}, `-role "viewer": the relay accepts only user, mod, admin, bot`},
		{[]string{"-role", "Admin"}, `-role "Admin"`},
		{[]string{"-rooms", ""}, "-rooms is empty"},
		{[]string{"-rooms", "lobby,bad room"}, `-rooms "bad room" matches no room`},
		{[]string{"-rooms", ":x*"}, `-rooms ":x*" matches no room`},
		{[]string{"-ttl", "-1h"}, "-ttl -1h0m0s"},
	} {
		var out, errb bytes.Buffer
		err := mintToken(append([]string{"-jwt-secret", "s", "-sub", "a"}, tc.args...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("token %v: %v, want an error with %q", tc.args, err, tc.err)
		}
		if out.Len() > 0 {
			t.Errorf("token %v printed a token", tc.args)
		}
	}
	claims := mint(t, "-sub", "a", "-role", "mod", "-rooms", "lobby:*, match:7", "-badges", "vip,sub-12", "-ttl", "1h")
	if got := claims["rooms"]; !equalList(got, "lobby:*", "match:7") {
		t.Errorf("rooms claim %v", got)
	}
	if got := claims["badges"]; !equalList(got, "vip", "sub-12") {
		t.Errorf("badges claim %v", got)
	}
	if exp, _ := claims["exp"].(float64); exp < float64(time.Now().Add(59*time.Minute).Unix()) {
		t.Errorf("exp %v, want an hour from now", claims["exp"])
	}
	claims = mint(t, "-sub", "a")
	if _, ok := claims["rooms"]; ok {
		t.Errorf("rooms claim without -rooms: %v (absent means all rooms)", claims["rooms"])
	}
	if _, ok := claims["badges"]; ok {
		t.Errorf("badges claim without -badges: %v", claims["badges"])
	}
}

// TestTokenRolesRelayAccepts: every role `roomcast token` mints is one a
// real relay lets in with that role.
func TestTokenRolesRelayAccepts(t *testing.T) {
	clearEnv(t)
	t.Setenv("ROOMCAST_JWT_SECRET", "s3cret")
	out, stop := runRelay(t, "-listen", "127.0.0.1:0", "-admin", "off", "-loops", "1")
	defer stop()
	addr := regexp.MustCompile(`ws://(127\.0\.0\.1:\d+)/ws`).FindStringSubmatch(out)
	if addr == nil {
		t.Fatalf("no ws:// address in:\n%s", out)
	}
	for _, role := range tokenRoles {
		var tok, errb bytes.Buffer
		if err := mintToken([]string{"-sub", "u-" + role, "-role", role, "-rooms", "lobby:*"}, &tok, &errb); err != nil {
			t.Fatal(err)
		}
		conn, br, _, err := ws.Dialer{Protocols: []string{"roomcast.v1.json"}}.Dial(context.Background(),
			"ws://"+addr[1]+"/ws?token="+strings.TrimSpace(tok.String()))
		if err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		var r io.Reader = conn
		if br != nil {
			r = io.MultiReader(br, conn)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		hello, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{r, conn})
		conn.Close()
		if err != nil || !strings.Contains(string(hello), `"role":"`+role+`"`) {
			t.Errorf("role %s: hello %s, %v", role, hello, err)
		}
	}
}

// mint runs `roomcast token` with secret "s" and returns its claims.
func mint(t *testing.T, args ...string) jwt.MapClaims {
	t.Helper()
	var out, errb bytes.Buffer
	if err := mintToken(append([]string{"-jwt-secret", "s"}, args...), &out, &errb); err != nil {
		t.Fatalf("token %v: %v", args, err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), claims, func(*jwt.Token) (any, error) { return []byte("s"), nil }); err != nil {
		t.Fatal(err)
	}
	return claims
}

func equalList(v any, want ...string) bool {
	l, _ := v.([]any)
	if len(l) != len(want) {
		return false
	}
	for i := range l {
		if l[i] != want[i] {
			return false
		}
	}
	return true
}

func TestBannerDataMode(t *testing.T) {
	f := func(cfg relay.Config, want string) {
		t.Helper()
		if got := dataMode(cfg); !strings.HasPrefix(got, want) {
			t.Errorf("dataMode(nats %q, data-dir %q) = %q, want %q...", cfg.NATS, cfg.DataDir, got, want)
		}
	}
	f(relay.Config{}, "memory:")
	f(relay.Config{DataDir: "/var/lib/roomcast"}, "durable:")
	f(relay.Config{NATS: "nats://10.0.0.1:4222"}, "cluster:")
}
