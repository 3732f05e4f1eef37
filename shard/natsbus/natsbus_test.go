package natsbus

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/shard"
)

// runServer starts a NATS server with JetStream stored in dir, on loopback.
func runServer(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	return relaytest.RunNATS(t, dir, port)
}

func open(t testing.TB, cfg Config) *Bus {
	t.Helper()
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// recFeed records what a watch feeds.
type recFeed struct {
	mu     sync.Mutex
	seqs   []uint64
	synced chan struct{}
	once   sync.Once
}

func newRecFeed() *recFeed { return &recFeed{synced: make(chan struct{})} }

func (f *recFeed) Ingest(msgs []proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.seqs = append(f.seqs, m.Seq)
	}
}

func (f *recFeed) Control(shard.Control) {}

func (f *recFeed) Local() shard.LocalPresence { return shard.LocalPresence{} }

func (f *recFeed) Remote(int, []proto.Member) {}

func (f *recFeed) Synced(err error) {
	if err == nil {
		f.once.Do(func() { close(f.synced) })
	}
}

func (f *recFeed) got() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seqs)
}

func publish(t testing.TB, b *Bus, room, body string) (uint64, error) {
	t.Helper()
	type res struct {
		seq uint64
		err error
	}
	ch := make(chan res, 1)
	b.Publish(room, &proto.Message{From: "u", Body: body}, func(seq uint64, err error) { ch <- res{seq, err} })
	select {
	case r := <-ch:
		return r.seq, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("publish got no answer")
		return 0, nil
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestSubjectRoundTrip(t *testing.T) {
	for _, room := range []string{"lobby", "ns:a.b.c", "a..b", "x-y_z:1"} {
		if got := Room(Subject(room)); got != room {
			t.Errorf("Room(Subject(%q)) = %q", room, got)
		}
	}
	if s := Subject("ns:a.b"); s != "roomcast.room.ns:a~b" {
		t.Errorf("subject %q", s)
	}
}

// Three buses (nodes) publishing to one room at once: every acked seq is
// unique, together they are 1..n, and a watch sees exactly 1..n in order.
func TestConcurrentPublishersOneOrder(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	var buses []*Bus
	for i := range 3 {
		buses = append(buses, open(t, Config{URL: ns.ClientURL(), Name: fmt.Sprint("n", i)}))
	}
	if buses[0].Epoch() != buses[2].Epoch() || buses[0].Epoch() == "" {
		t.Fatalf("epochs differ: %q %q", buses[0].Epoch(), buses[2].Epoch())
	}
	feed := newRecFeed()
	stop := buses[1].Watch("race.room", feed)
	defer stop()
	<-feed.synced
	const per = 40
	acked := relaytest.PublishAll(t, 2*len(buses), per, func(w, i int) (uint64, error) { // two per bus
		return publish(t, buses[w/2], "race.room", fmt.Sprint(i))
	})
	n := uint64(len(buses) * 2 * per)
	if !slices.Equal(acked, seqRange(1, n)) {
		t.Fatalf("acked %d seqs, not 1..%d once each: %v", len(acked), n, acked)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(feed.got()) < int(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := feed.got(); !slices.Equal(got, seqRange(1, n)) {
		t.Errorf("watch saw %v, want 1..%d", got, n)
	}
	var conflicts float64
	for _, b := range buses {
		conflicts += testCounter(b.m.conflicts)
	}
	t.Logf("conflicts: %v", conflicts)
}

// An embedded server on a data directory keeps the stream: a bus opened
// again on it has the same epoch, a watch gets the old messages, and new
// ones continue the seqs.
func TestDataDirRestart(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if seq, err := publish(t, b, "keep", fmt.Sprint(i)); err != nil || seq != uint64(i+1) {
			t.Fatalf("publish %d: seq %d err %v", i, seq, err)
		}
	}
	epoch := b.Epoch()
	b.Close()

	b = open(t, Config{DataDir: dir})
	if b.Epoch() != epoch {
		t.Errorf("epoch %q after restart, want %q", b.Epoch(), epoch)
	}
	feed := newRecFeed()
	defer b.Watch("keep", feed)()
	<-feed.synced
	if got := feed.got(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("after restart the watch got %v, want [1 2 3]", got)
	}
	if seq, err := publish(t, b, "keep", "4"); err != nil || seq != 4 {
		t.Errorf("publish after restart: seq %d err %v, want 4", seq, err)
	}
	other := open(t, Config{DataDir: t.TempDir()})
	if other.Epoch() == epoch {
		t.Errorf("a new store has the old epoch %q", epoch)
	}
}

// TestFollowsPastServerDefault: the stream this relay creates takes more
// consumers (followed rooms) than nats-server's default of 1 000 per stream.
func TestFollowsPastServerDefault(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL(), Name: "n0"})
	const rooms = 1100
	feeds := make([]*recFeed, rooms)
	for i := range feeds {
		feeds[i] = newRecFeed()
		stop := b.Watch(fmt.Sprintf("lobby:%d", i), feeds[i])
		defer stop()
	}
	for i, f := range feeds {
		select {
		case <-f.synced:
		case <-time.After(20 * time.Second):
			t.Fatalf("room %d of %d never caught up (consumer limit?)", i, rooms)
		}
	}
	if _, err := publish(t, b, "lobby:1099", "hi"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); len(feeds[rooms-1].got()) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the last room's message never came through its consumer")
		}
	}
}
