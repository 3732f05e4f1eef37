package natsbus

import (
	"sync"
	"testing"
	"time"
)

// A message queued while the sweep runs is stored by the room's publisher
// in b.pubs, never by one the sweep dropped meanwhile (which would run
// beside the next one made for the room, storing the room's messages out of
// their order).
func TestEnqueueVersusSweep(t *testing.T) {
	ns := runServer(t, t.TempDir(), -1)
	b := open(t, Config{URL: ns.ClientURL()})
	ns.Shutdown() // every store fails at once: the publisher runs only the done below
	for b.Connected() {
		time.Sleep(time.Millisecond)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		far := time.Now().Add(time.Hour) // every idle publisher is dropped
		for {
			select {
			case <-stop:
				return
			default:
				b.sweepIdle(far)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 1000; i++ {
		release := make(chan struct{})
		b.Publish("sweep:room", nil, func(uint64, error) { <-release }) // busy until released
		b.mu.Lock()
		p := b.pubs["sweep:room"]
		b.mu.Unlock()
		if p == nil {
			close(release)
			t.Fatalf("round %d: the sweep dropped the publisher of a queued message", i)
		}
		close(release)
		for {
			p.mu.Lock()
			busy := p.busy
			p.mu.Unlock()
			if !busy {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
}
