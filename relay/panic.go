package relay

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomcast/roomcast/relay/proto"
)

// panicSite names where a recovered panic happened: the label value of
// roomcast_panics_total.
type panicSite uint8

const (
	siteOpen    panicSite = iota // OnOpen
	siteTraffic                  // OnTraffic: handshake, frames, commands
	siteClose                    // OnClose
	siteTick                     // a session's tick
	siteDrain                    // a session's drain at shutdown
	siteTask                     // a task run for one session (kick, close)
	siteDeliver                  // room traffic written to a member
	siteFlush                    // a room's flush task outside any member (shard.Stats.Panics)
	numSites
)

var siteNames = [numSites]string{"open", "traffic", "close", "tick", "drain", "task", "deliver", "flush"}

// panicStats count recovered panics by site; the first of each site is
// logged with its stack, the others only counted.
type panicStats struct {
	count  [numSites]prometheus.Counter
	logged [numSites]atomic.Bool
	flush  int64 // shard.Stats.Panics already counted; owned by Server.tick
}

// syncFlush counts the panics the shard recovered in flush tasks since the
// last call (the shard counts them; it knows nothing of Prometheus).
// Server.tick calls it every second.
func (p *panicStats) syncFlush(total int64) {
	if d := total - p.flush; d > 0 {
		p.count[siteFlush].Add(float64(d))
		p.flush = total
	}
}

func newPanicStats(reg func(prometheus.Collector)) *panicStats {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_panics_total",
		Help: "Panics recovered in event-loop callbacks and tasks, by where; each closed only its connection (1011)."}, []string{"where"})
	reg(v)
	p := &panicStats{}
	for i, n := range siteNames {
		p.count[i] = v.WithLabelValues(n)
	}
	return p
}

// rescue, deferred in a callback or task of connection c, recovers a panic:
// it counts and logs it, and closes only c, with 1011 if it is a WebSocket.
// recover works here because rescue itself is the deferred call. Runs on
// c's loop.
func (s *Server) rescue(c gnet.Conn, site panicSite) {
	r := recover()
	if r == nil {
		return
	}
	p := s.metrics.panics
	p.count[site].Inc()
	if p.logged[site].CompareAndSwap(false, true) {
		s.cfg.Logger.Error("recovered a panic; closed its connection (later ones of this kind are only counted in roomcast_panics_total)",
			"where", siteNames[site], "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
	if ss, ok := c.Context().(*session); ok {
		ss.failed()
		return
	}
	_ = c.Close()
}

// failed ends a session whose callback panicked; its state may be half
// updated, so a second panic only closes the socket.
func (s *session) failed() {
	defer func() {
		if recover() != nil {
			_ = s.conn.Close()
		}
	}()
	switch s.state {
	case stateOpen:
		s.close(proto.CloseInternal, "internal error")
	case stateClosed:
	default:
		s.state = stateClosing
		s.since = stampOf(s.loop.now)
		_ = s.conn.Close()
	}
}

// commandHook, when set (by tests only), runs before every command.
var commandHook atomic.Pointer[func(*proto.Command)]
