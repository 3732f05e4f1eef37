package natsbus

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// presFeed records what presence hands a room.
type presFeed struct {
	*recFeed
	pmu     sync.Mutex
	n       int
	members []proto.Member
}

func (f *presFeed) Local() shard.LocalPresence {
	return shard.LocalPresence{Count: 1, Listed: true, Members: []proto.Member{{ID: "me", Name: "Me"}}}
}

func (f *presFeed) Remote(n int, members []proto.Member) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.n, f.members = n, slices.Clone(members)
}

func (f *presFeed) get() (int, []proto.Member) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	return f.n, f.members
}

// Another node's list reaches a room, malformed presence is ignored, and
// the list is dropped once its node stops repeating it for the TTL.
func TestPresenceListDroppedAfterTTL(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL(), PresenceTTL: 1500 * time.Millisecond})
	f := &presFeed{recFeed: newRecFeed()}
	stop := b.Watch("ttl:room", f)
	defer stop()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := presenceSubject("ttl:room")
	heard := make(chan struct{}, 1)
	own, err := nc.Subscribe(subj, func(m *nats.Msg) {
		var pm presenceMsg
		if msgpack.Unmarshal(m.Data, &pm) == nil && pm.Node == b.node && slices.Equal(pm.M, []proto.Member{{ID: "me", Name: "Me"}}) {
			select {
			case heard <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Unsubscribe()
	select {
	case <-heard: // the bus tells its own list
	case <-time.After(5 * time.Second):
		t.Fatal("the bus never told its members")
	}
	ghost, _ := msgpack.Marshal(&presenceMsg{V: presenceVersion, Node: "ghost", N: 2, Listed: true,
		M: []proto.Member{{ID: "g", Name: "G"}, {ID: ""}}})
	bad, _ := msgpack.Marshal(&presenceMsg{V: presenceVersion + 1, Node: "future", N: 5})
	for _, d := range [][]byte{[]byte("ghost 3"), bad, ghost} {
		if err := nc.Publish(subj, d); err != nil {
			t.Fatal(err)
		}
	}
	want := []proto.Member{{ID: "g", Name: "G"}}
	waitFor(t, "the ghost's list", func() bool { n, m := f.get(); return n == 2 && slices.Equal(m, want) })
	waitFor(t, "the ghost's list dropped", func() bool { n, m := f.get(); return n == 0 && len(m) == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Stopping a watch (a room dropped, on whatever goroutine drops it) while
// the presence goroutine tells the room's presence: what was last told is
// read by the stop and written by the tell, so both go through the
// presence's lock (-race fails otherwise), and nothing is told after the
// stop's "gone".
func TestPresenceStopWhileTelling(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL(), PresenceTTL: 30 * time.Millisecond}) // a tick every 10 ms
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := presenceSubject("stop:room")
	msgs := make(chan presenceMsg, 64)
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		var pm presenceMsg
		if msgpack.Unmarshal(m.Data, &pm) == nil && pm.Node == b.node {
			msgs <- pm
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := 0; i < 20; i++ {
		stop := b.Watch("stop:room", &presFeed{recFeed: newRecFeed()})
		select {
		case pm := <-msgs: // told by the presence goroutine
			if pm.N != 1 {
				t.Fatalf("told %d connections, want 1", pm.N)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the bus never told its presence")
		}
		time.Sleep(5 * time.Millisecond)
		stop()
	gone:
		for {
			select {
			case pm := <-msgs:
				if pm.N == 0 {
					break gone
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the stop never told the node is gone")
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // ticks after the last stop
	select {
	case pm := <-msgs:
		t.Fatalf("told %+v after the stop", pm)
	default:
	}
}
