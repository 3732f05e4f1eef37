package relay

import (
	"testing"
	"time"
)

// flush_auto gives the room engine autoFlushPerMember with flush_interval
// as the budget; without it a room's window does not depend on its size.
func TestFlushAutoPolicy(t *testing.T) {
	on, budget := true, 100*time.Millisecond
	cfg := &Config{Namespaces: map[string]Namespace{
		"auto":  {FlushAuto: &on, FlushInterval: &budget},
		"fixed": {FlushInterval: &budget},
	}}
	cfg.setDefaults()
	ps, err := newPolicies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := ps.get("auto").shard; p.FlushInterval != budget || p.FlushPerMember != autoFlushPerMember {
		t.Errorf("auto: flush interval %v, per member %v; want %v, %v", p.FlushInterval, p.FlushPerMember, budget, autoFlushPerMember)
	}
	if p := ps.get("fixed").shard; p.FlushInterval != budget || p.FlushPerMember != 0 {
		t.Errorf("fixed: flush interval %v, per member %v; want %v, 0", p.FlushInterval, p.FlushPerMember, budget)
	}
}
