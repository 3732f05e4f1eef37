package main

import (
	"flag"
	"testing"
	"time"

	"github.com/roomcast/roomcast/shard"
)

// -presence-window 0 turns the window off (shard.Config's zero would mean
// the default); left alone it is the default.
func TestPresenceWindowSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{{nil, shard.DefaultPresenceWindow}, {[]string{"-presence-window", "0"}, -1}, {[]string{"-presence-window", "20ms"}, 20 * time.Millisecond}} {
		cfg, _, err := load(flag.NewFlagSet("t", flag.ContinueOnError), tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Hub.PresenceWindow != tc.want {
			t.Errorf("%v: PresenceWindow %v, want %v", tc.args, cfg.Hub.PresenceWindow, tc.want)
		}
	}
}
