package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gobwas/ws"
)

// counter names one of a worker's counters.
type counter int

const (
	cOpen             counter = iota // connections open now (hello received, not closed)
	cDialed                          // connection attempts
	cConnected                       // hellos received
	cDialFailed                      // attempts that did not reach hello
	cJoined                          // joined replies to our joins
	cJoinFailed                      // joins answered with an error, or not at all
	cDropped                         // connections that ended without the bench closing them
	cSent                            // send frames written
	cSentWindow                      // ... of which inside the window
	cSendFailed                      // send frames that could not be written
	cLate                            // sends more than lateAfter behind their schedule
	cAcked                           // acks received
	cDeliveries                      // messages received in batches, new ones only
	cDeliveriesWindow                // ... of which received inside the window
	cFrames                          // batch frames received
	cPresence                        // presence frames received
	cLost                            // acknowledged messages a member that stayed joined never received
	cDups                            // messages received again
	cGapMsgs                         // messages a resuming join could not return (aged out, joined.gap)
	cResumed                         // messages received in the history of a resuming join
	cBadFrames                       // frames that did not parse
	cBadMessages                     // sampled messages without a timestamp or with a body of the wrong size
	cReconnected                     // storm: members back in their room with since
	cReconnectFailed                 // storm: members that could not come back
	cStalled                         // members that stopped reading on purpose
	cLossMembers                     // members with any loss
	cWireBytes                       // bytes of server data frames received inside the window, headers included
	cInflatedBytes                   // ... their messages' bytes, inflated if compressed
	nCounters
)

// counts is a snapshot of a worker's counters, or a sum of several.
type counts [nCounters]int64

func (c *counts) add(o counts) {
	for i := range c {
		c[i] += o[i]
	}
}

// stats are one worker's measurements, recorded by many goroutines.
type stats struct {
	c [nCounters]atomic.Int64

	mu         sync.Mutex
	errors     map[string]int64 // error frames by code
	closes     map[string]int64 // close codes of connections the bench did not close
	dialErrors map[string]int64 // failed connection attempts by cause

	latency     *latencyHists // publish to delivery, sampled members, sent inside the window
	handshake   *lockedHist   // TCP connect and upgrade
	join        *lockedHist   // join to joined
	ack         *lockedHist   // send to ack, inside the window
	reHandshake *lockedHist   // storm: handshakes of the reconnect
	reJoin      *lockedHist   // storm: resuming joins
}

func newStats() *stats {
	return &stats{
		errors: map[string]int64{}, closes: map[string]int64{}, dialErrors: map[string]int64{},
		latency: newLatencyHists(), handshake: newLockedHist(), join: newLockedHist(), ack: newLockedHist(),
		reHandshake: newLockedHist(), reJoin: newLockedHist(),
	}
}

func (s *stats) add(k counter, n int64) { s.c[k].Add(n) }
func (s *stats) inc(k counter)          { s.c[k].Add(1) }

func (s *stats) snapshot() counts {
	var c counts
	for i := range c {
		c[i] = s.c[i].Load()
	}
	return c
}

func (s *stats) count(m map[string]int64, key string) {
	s.mu.Lock()
	m[key]++
	s.mu.Unlock()
}

// copyMaps returns copies of the keyed counts.
func (s *stats) copyMaps() (errs, closes, dials map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := func(m map[string]int64) map[string]int64 {
		out := make(map[string]int64, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(s.errors), cp(s.closes), cp(s.dialErrors)
}

func mergeMap(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// dialCause names the cause of a failed connection attempt for the report.
func dialCause(err error) string {
	var st ws.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &st):
		return fmt.Sprintf("http_%d", int(st))
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_source_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_files"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errNoHello):
		return "no_hello"
	case errors.Is(err, errNoDeflate):
		return "no_deflate"
	}
	return "other"
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
