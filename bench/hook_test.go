package bench

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

// startHookedRelay runs a real relay whose stream namespace has a publish
// hook pointing at ln, where the bench's hook backend will serve.
func startHookedRelay(t *testing.T, ln net.Listener) *relay.Server {
	t.Helper()
	return testrelay.Start(t, testrelay.Config(testSecret), quiet, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{Stream: {PublishHook: &relay.PublishHook{
			URL: "http://" + ln.Addr().String() + "/", Timeout: 2 * time.Second, OnError: "deny"}}}
	})
}

// TestStreamWithHookBackend runs the stream scenario against a relay whose
// stream namespace asks the bench's own hook backend: every acked message
// was one call, answered after the delay, and nothing was lost.
func TestStreamWithHookBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := startHookedRelay(t, ln)
	cfg := smallConfig(srv, Stream)
	cfg.Connections, cfg.Publishers, cfg.Rate = 50, 4, 100
	cfg.HookListener, cfg.HookBackend, cfg.HookDelay = ln, ln.Addr().String(), time.Millisecond
	rep := runBench(t, srv, cfg)
	checkMessages(t, rep)
	h := rep.Hook
	if h == nil {
		t.Fatal("no hook stats in the report")
	}
	if h.Calls == 0 || h.Calls != rep.Messages.Acked || h.Bad != 0 {
		t.Errorf("hook backend: %d calls, %d bad; want one call per acked message (%d), none bad", h.Calls, h.Bad, rep.Messages.Acked)
	}
	if h.Answer.Count != h.Calls || h.Answer.P50 < 1 {
		t.Errorf("answer times %+v: want %d samples of at least the 1 ms delay", h.Answer, h.Calls)
	}
	if want := "http://" + ln.Addr().String() + "/"; h.URL != want || h.DelayMS != 1 {
		t.Errorf("hook url %q delay %v ms, want %q and 1", h.URL, h.DelayMS, want)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "hook backend") {
		t.Errorf("text report lacks the hook backend line (%v):\n%s", err, text.String())
	}
}
