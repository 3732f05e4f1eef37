package natsbus

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// A watch that starts while another node keeps publishing in the room gets
// every message once, in order: the catch-up reads the records kept, the
// node's consumer of every room the ones stored meanwhile, and the handover
// neither skips nor repeats one. With pending capped at 2 the catch-up
// overflows and starts over again and again, and still converges.
func TestCatchUpWhilePublishing(t *testing.T) {
	for _, capped := range []bool{false, true} {
		t.Run(fmt.Sprint("capped=", capped), func(t *testing.T) {
			if capped {
				old := maxPending
				maxPending = 2
				t.Cleanup(func() { maxPending = old })
			}
			// Records stored between the catch-up's read of the room's last
			// record and its end are live's: the handover must feed them.
			afterTarget = func() { time.Sleep(30 * time.Millisecond) }
			t.Cleanup(func() { afterTarget = nil })
			ns := runServer(t, t.TempDir(), -1)
			pub := open(t, Config{URL: ns.ClientURL(), Name: "pub"})
			sub := open(t, Config{URL: ns.ClientURL(), Name: "sub"})
			const before, during = 200, 200
			for i := range before {
				if _, err := publish(t, pub, "catch:room", fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range during {
					if _, err := publish(t, pub, "catch:room", fmt.Sprint(i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			time.Sleep(5 * time.Millisecond) // start watching while the publishes run
			feed := newRecFeed()
			stop := sub.Watch("catch:room", feed)
			defer stop()
			select {
			case <-feed.synced:
			case <-time.After(10 * time.Second):
				t.Fatal("the watch never caught up")
			}
			wg.Wait()
			const n = before + during
			deadline := time.Now().Add(5 * time.Second)
			for len(feed.got()) < n && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // a repeat would come now
			if got := feed.got(); !slices.Equal(got, seqRange(1, n)) {
				t.Fatalf("watch saw %d seqs, want 1..%d once each in order: %v", len(got), n, got)
			}
		})
	}
}

// Records of rooms a node does not follow reach its consumer of every room
// but no feed, and a room followed later starts from its oldest record.
func TestLiveSkipsUnfollowedRooms(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	pub := open(t, Config{URL: ns.ClientURL(), Name: "pub"})
	sub := open(t, Config{URL: ns.ClientURL(), Name: "sub"})
	fa := newRecFeed()
	stopA := sub.Watch("live:a", fa)
	defer stopA()
	<-fa.synced
	for i := range 5 {
		for _, room := range []string{"live:a", "live:b"} {
			if _, err := publish(t, pub, room, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	fb := newRecFeed()
	stopB := sub.Watch("live:b", fb)
	defer stopB()
	<-fb.synced
	if _, err := publish(t, pub, "live:b", "last"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (len(fa.got()) < 5 || len(fb.got()) < 6) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if got := fa.got(); !slices.Equal(got, seqRange(1, 5)) {
		t.Errorf("room a: %v, want 1..5", got)
	}
	if got := fb.got(); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("room b: %v, want 1..6", got)
	}
}

// roomcast_bus_rooms_followed counts a room from Watch until its stop, not
// only while it catches up.
func TestRoomsFollowedGauge(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL()})
	followed := func() float64 {
		var m dto.Metric
		_ = b.m.watches.Write(&m)
		return m.GetGauge().GetValue()
	}
	f := newRecFeed()
	stop := b.Watch("gauge:a", f)
	<-f.synced
	time.Sleep(20 * time.Millisecond) // the catch-up goroutine has ended
	if got := followed(); got != 1 {
		t.Fatalf("rooms followed after the catch-up = %v, want 1", got)
	}
	stop()
	stop() // twice is once
	if got := followed(); got != 0 {
		t.Fatalf("rooms followed after stop = %v, want 0", got)
	}
}
