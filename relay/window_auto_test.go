package relay_test

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roomcast/roomcast/relay"
)

// flush_auto comes from YAML and needs flush_interval (its budget).
func TestFlushAutoConfig(t *testing.T) {
	var ns map[string]relay.Namespace
	if err := yaml.Unmarshal([]byte("stream: {flush_auto: true, flush_interval: 1s}\n"), &ns); err != nil {
		t.Fatal(err)
	}
	if a := ns["stream"].FlushAuto; a == nil || !*a {
		t.Fatalf("flush_auto = %v, want true", a)
	}
	if _, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Namespaces: ns}); err != nil {
		t.Fatalf("flush_auto with flush_interval refused: %v", err)
	}
	on := true
	bad := relay.Config{Listen: "127.0.0.1:0", Namespaces: map[string]relay.Namespace{"stream": {FlushAuto: &on}}}
	if _, err := relay.New(bad); err == nil {
		t.Error("flush_auto without flush_interval accepted")
	}
}
