package relay_test

import (
	"bytes"
	"net/http"
	"os"
	"testing"
)

// TestPprofCmdlineRedacted: a secret given as a flag does not leave the
// process through /debug/pprof/cmdline; the other arguments do.
func TestPprofCmdlineRedacted(t *testing.T) {
	saved := os.Args
	os.Args = []string{"roomcast", "-jwt-secret", "hunter2", "-api-key=sesame", "-node", "eu-1"}
	t.Cleanup(func() { os.Args = saved })
	srv := startAPIRelay(t, nil)
	r := callAPI(t, srv, "GET", "/debug/pprof/cmdline", apiAuth(testAPIKey), "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	want := []byte("roomcast\x00-jwt-secret\x00REDACTED\x00-api-key=REDACTED\x00-node\x00eu-1")
	if !bytes.Equal(r.body, want) {
		t.Fatalf("cmdline %q, want %q", r.body, want)
	}
}
