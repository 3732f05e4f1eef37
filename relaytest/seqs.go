package relaytest

import (
	"slices"
	"sync"
	"testing"
)

// PublishAll runs workers goroutines at once, worker w calling pub(w, i) for i
// from 0 to per-1, and returns the seqs they were answered, sorted. An error fails
// the test (t.Error) and ends that worker. pub is called on the workers'
// goroutines.
func PublishAll(t testing.TB, workers, per int, pub func(w, i int) (uint64, error)) []uint64 {
	t.Helper()
	var (
		mu    sync.Mutex
		acked []uint64
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				seq, err := pub(w, i)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(acked)
	return acked
}
