package shard

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/relaytest"
)

// memBus is a Bus over an in-memory log per room: the log numbers messages,
// and watches are fed from it, like the JetStream bus of package natsbus.
type memBus struct {
	mu      sync.Mutex
	logs    map[string][]proto.Message
	feeds   map[string]map[*Feed]struct{}
	holdOff chan struct{} // if set, watches wait for it to close before syncing
}

func (b *memBus) Publish(room string, m *proto.Message, done func(uint64, error)) {
	msg := *m
	go func() {
		b.mu.Lock()
		msg.Seq = uint64(len(b.logs[room]) + 1)
		if b.logs == nil {
			b.logs = map[string][]proto.Message{}
		}
		b.logs[room] = append(b.logs[room], msg)
		for f := range b.feeds[room] {
			(*f).Ingest([]proto.Message{msg}) // under mu: in log order
		}
		b.mu.Unlock()
		done(msg.Seq, nil)
	}()
}

func (b *memBus) Moderate(string, Control, func(uint64, error)) {}

func (b *memBus) Watch(room string, f Feed) func() {
	key := &f
	go func() {
		if b.holdOff != nil {
			<-b.holdOff
		}
		b.mu.Lock()
		if b.feeds == nil {
			b.feeds = map[string]map[*Feed]struct{}{}
		}
		if b.feeds[room] == nil {
			b.feeds[room] = map[*Feed]struct{}{}
		}
		b.feeds[room][key] = struct{}{}
		f.Ingest(slices.Clone(b.logs[room]))
		b.mu.Unlock()
		f.Synced(nil)
	}()
	return func() {
		b.mu.Lock()
		delete(b.feeds[room], key)
		b.mu.Unlock()
	}
}

// joinWaiting joins like a relay does with a Bus: a join of a room still
// catching up waits for it and is made again.
func (e *testEnv) joinWaiting(t *testing.T, room string, li int, req JoinRequest) (*recMember, *Membership, JoinResult) {
	t.Helper()
	for range 3 {
		ready := make(chan error, 1)
		req.Wait = func(err error) { ready <- err }
		m, ms, res, err := e.tryJoin(t, room, li, req)
		if err == nil {
			return m, ms, res
		}
		if err != ErrSyncing {
			t.Fatalf("join %s: %v", room, err)
		}
		if err := <-ready; err != nil {
			t.Fatalf("join %s: waiting for the bus: %v", room, err)
		}
	}
	t.Fatalf("join %s: still syncing", room)
	return nil, nil, JoinResult{}
}

// With a Bus, the log numbers messages; members on every loop get them in
// the log's order, once, and each sender's answer is the seq members see.
func TestBusSequencesThroughTheLog(t *testing.T) {
	bus := &memBus{}
	e := newEnv(t, Config{Loops: 2, Bus: bus})
	const room = "bus:1"
	a, _, _ := e.joinWaiting(t, room, 0, JoinRequest{})
	b, _, _ := e.joinWaiting(t, room, 1, JoinRequest{Format: proto.JSON})
	acked := relaytest.PublishAll(t, 4, 50, func(p, _ int) (uint64, error) {
		return e.hub.Publish(room, &Message{From: fmt.Sprint("p", p), Body: "b"})
	})
	if !slices.Equal(acked, seqRange(1, 200)) {
		t.Errorf("acked seqs %v, want 1..200 once each", summarize(acked))
	}
	waitFor(t, "200 messages", func() bool { return e.hub.Room(room).Info().Seq == 200 })
	settle(t, e.hub)
	for _, m := range []*recMember{a, b} {
		if got := msgSeqs(batchMsgs(t, m.frames(t))); !slices.Equal(got, seqRange(1, 200)) {
			t.Errorf("%v member got %v, want 1..200 in order", m.format, summarize(got))
		}
	}
}

// A join of a room that is catching up with the log waits (ErrSyncing, then
// Wait) and is then answered with the log's seq and history; Send refuses
// a banned sender before the log sees it.
func TestJoinWaitsForBusSync(t *testing.T) {
	bus := &memBus{holdOff: make(chan struct{}), logs: map[string][]proto.Message{
		"bus:old": {{Seq: 1, Body: "one"}, {Seq: 2, Body: "two"}, {Seq: 3, Body: "three"}}}}
	e := newEnv(t, Config{Loops: 1, Bus: bus})
	ready := make(chan error, 1)
	_, _, _, err := e.tryJoin(t, "bus:old", 0, JoinRequest{History: -1, Wait: func(err error) { ready <- err }})
	if err != ErrSyncing {
		t.Fatalf("join before the sync: %v, want ErrSyncing", err)
	}
	select {
	case err := <-ready:
		t.Fatalf("Wait called before the room synced: %v", err)
	default:
	}
	close(bus.holdOff)
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	_, _, res := e.joinWaiting(t, "bus:old", 0, JoinRequest{History: -1})
	if got := msgSeqs(histMsgs(t, proto.Msgpack, res)); res.Seq != 3 || !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("joined seq %d history %v, want 3 and [1 2 3]", res.Seq, got)
	}
	e.hub.Room("bus:old").Ban("bad")
	done := make(chan error, 1)
	e.hub.Send("bus:old", &Message{From: "bad", Body: "x"}, func(_ uint64, err error) { done <- err })
	if err := <-done; err != ErrBanned {
		t.Errorf("send of a banned user: %v, want ErrBanned", err)
	}
	if n := len(bus.logs["bus:old"]); n != 3 {
		t.Errorf("log holds %d messages, want 3", n)
	}
}

// A resume from a seq of the room's epoch that this node has not received
// yet (another node delivered it first) waits for it instead of answering
// gap; a seq that never comes is answered as a gap after AheadWait.
func TestResumeAheadOfTheNodeWaits(t *testing.T) {
	bus := &memBus{logs: map[string][]proto.Message{"bus:ahead": {{Seq: 1}, {Seq: 2}, {Seq: 3}}}}
	e := newEnv(t, Config{Loops: 1, Bus: bus})
	_, _, res := e.joinWaiting(t, "bus:ahead", 0, JoinRequest{})
	epoch := res.Epoch
	ready := make(chan error, 1)
	req := JoinRequest{HasSince: true, Since: 5, Epoch: epoch, History: -1, Wait: func(err error) { ready <- err }}
	if _, _, _, err := e.tryJoin(t, "bus:ahead", 0, req); err != ErrSyncing {
		t.Fatalf("resume from seq 5 with the room at 3: %v, want ErrSyncing", err)
	}
	roomFeed{e.hub.Room("bus:ahead")}.Ingest([]proto.Message{{Seq: 4}})
	select {
	case <-ready:
		t.Fatal("woken before seq 5 came")
	case <-time.After(20 * time.Millisecond):
	}
	roomFeed{e.hub.Room("bus:ahead")}.Ingest([]proto.Message{{Seq: 5}, {Seq: 6}})
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	req.Wait = nil
	_, _, res = e.join(t, "bus:ahead", 0, req)
	if got := msgSeqs(histMsgs(t, proto.Msgpack, res)); res.Gap || !slices.Equal(got, []uint64{6}) {
		t.Errorf("resume from 5: gap %v history %v, want no gap and [6]", res.Gap, got)
	}

	defer func(d time.Duration) { AheadWait = d }(AheadWait)
	AheadWait = 30 * time.Millisecond
	req = JoinRequest{HasSince: true, Since: 100, Epoch: epoch, History: -1, Wait: func(err error) { ready <- err }}
	if _, _, _, err := e.tryJoin(t, "bus:ahead", 0, req); err != ErrSyncing {
		t.Fatalf("resume from seq 100: %v, want ErrSyncing", err)
	}
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	req.Wait = nil
	if _, _, res = e.join(t, "bus:ahead", 0, req); !res.Gap {
		t.Errorf("resume from a seq never given out: no gap")
	}
}
