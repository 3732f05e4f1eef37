package relay_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// needNode returns the path of node and of the ws package the Node tests
// use. Without them the test is skipped, loudly; with CI set (.ci/run
// installs both) it fails.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("js", "node_modules", "ws", "package.json"))
	}
	if err != nil {
		msg := "the JavaScript client tests need node (20+) and the ws package: cd relay/js && npm ci (.ci/run does it): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		skipLoud(t, msg)
	}
	return node
}

// TestJSClientNode runs the Node tests of roomcast.js (relay/js/test) with
// node --test against a real relay: join, history, order under load from
// a second client, resume after a dropped connection (no gap), relay
// restart (a gap with reason epoch, no duplicates), rate_limited errors,
// token refresh before exp and after 4010, 4003 ends reconnecting.
func TestJSClientNode(t *testing.T) {
	node := needNode(t)
	j := startJSRelay(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files, err := filepath.Glob(filepath.Join("js", "test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Node tests in js/test: %v", err)
	}
	cmd := exec.CommandContext(ctx, node, append([]string{"--test", "--test-reporter=spec", "--test-timeout=60000"}, files...)...)
	cmd.Env = append(os.Environ(),
		"ROOMCAST_WS=ws://"+j.addr+"/ws",
		"ROOMCAST_HTTP=http://"+j.addr,
		"ROOMCAST_CTL="+j.ctl.URL,
		"NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node --test: %v", err)
	}
}
