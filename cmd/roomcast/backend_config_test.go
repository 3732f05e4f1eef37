package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The YAML config carries webhooks, the inbox namespace and publish hooks.
func TestConfigFileBackend(t *testing.T) {
	file := filepath.Join(t.TempDir(), "roomcast.yaml")
	yml := `
max-body: 300
inbox_namespace: dm
namespaces:
  dm:
    whispers: false
  chat:
    publish_hook: {url: "http://127.0.0.1:7000/hook", timeout: 250ms, on_error: allow, max_inflight: 64}
webhooks:
  - url: http://127.0.0.1:7000/events
    secret: s3cret
    events: [message, moderation]
    rooms: ["stream:*"]
    batch_wait: 100ms
`
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("max-body", 500, "")
	doc, err := applyEnvAndFile(fs, file)
	if err != nil {
		t.Fatal(err)
	}
	h := doc.Namespaces["chat"].PublishHook
	if doc.InboxNamespace != "dm" || *doc.Namespaces["dm"].Whispers || h == nil || h.Timeout != 250*time.Millisecond ||
		h.OnError != "allow" || h.MaxInflight != 64 {
		t.Fatalf("got %+v, hook %+v", doc, h)
	}
	if len(doc.Webhooks) != 1 || doc.Webhooks[0].Secret != "s3cret" || doc.Webhooks[0].BatchWait != 100*time.Millisecond ||
		len(doc.Webhooks[0].Events) != 2 || doc.Webhooks[0].Rooms[0] != "stream:*" {
		t.Fatalf("webhooks %+v", doc.Webhooks)
	}
}
