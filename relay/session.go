package relay

import (
	"time"
	"unique"

	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
)

type sessionState uint8

const (
	stateHTTP    sessionState = iota // reading the upgrade request
	stateOpen                        // a WebSocket
	stateClosing                     // close frame sent; input is discarded until the peer goes
	stateClosed                      // OnClose ran (gnet may close at once when a write fails)
)

// session is one connection. It is created in OnOpen and lives on the event
// loop that owns the connection; every field is owned by that loop.
//
// One is kept per connection, so it is laid out to fit 128 bytes (see
// TestSessionSize and BENCHMARKS.md, memory per connection): times are
// stamps, not time.Time (the join allowance too); the server is the loop's;
// the first room is inline and the others behind one pointer (roomSet);
// the address is 17 bytes (sessionIP); what only some connections need is
// in cold.
type session struct {
	// Set in OnOpen, then read-only. The server is the loop's (srv).
	loop *loop
	conn gnet.Conn

	// Set by the upgrade, then read-only (id is replaced by refresh).
	id *identity

	// Owned by the event loop.
	rooms    roomSet      // session_rooms.go
	joins    stampBucket  // joins (and refreshes) of this connection (session_clock.go)
	cold     *sessionCold // made when first needed (sessionCold)
	lastRecv stamp        // any bytes received
	// since is when the state began or last did its timed work: accepted
	// (stateHTTP, for the handshake timeout), the last ping sent (stateOpen;
	// the accept time until the first), the close or its linger begun
	// (stateClosing).
	since   stamp
	unread  int32 // bytes gnet still holds from the last OnTraffic (at most a frame)
	strikes int32 // rate_limited answers in a row
	slot    int32 // index in loop.sessions (session_set.go)

	ip sessionIP // the transport address from the first bytes (peerAddr), then the client's from the upgrade (addr, setAddr: session_ip.go)

	format     proto.Format // set by the upgrade
	ipCounted  bool         // counted by Server.ips; released in OnClose
	sse        bool         // an /sse stream, not a WebSocket
	compressed bool         // negotiated permessage-deflate: rooms send it compressed frames, it may send them
	state      sessionState
	flushing   bool // closing: the close frame waits behind queued bytes (see endClose)
	sseWaiting bool // an admitted /sse request waiting for its room to catch up with the bus (sseJoin): still stateHTTP, it reads nothing more
}

// sessionCold is the part of a session that few connections need: a
// fragmented message, joins waiting for the bus. Owned by the event loop.
type sessionCold struct {
	waiting map[string]*waitingJoin // joins waiting for their room to catch up with the bus (cluster.go); made on the first
	frag    []byte                  // a fragmented message being reassembled
	fragOp  byte                    // its opcode; 0 when none
	fragZ   bool                    // it is compressed (RSV1 on its first frame)
	ipZone  unique.Handle[string]   // the zone of the session's address, when it has one (sessionIP)
}

// srv returns the session's server: its loop's, not a field of its own (8
// bytes of every connection). Any goroutine: loop and loop.srv are set
// before the session is shared and never change.
func (s *session) srv() *Server { return s.loop.srv }

// coldPart returns the session's cold part, making it on the first call.
func (s *session) coldPart() *sessionCold {
	if s.cold == nil {
		s.cold = &sessionCold{}
	}
	return s.cold
}

// waitingJoin returns the join of room waiting for the bus, or nil.
func (s *session) waitingJoin(room string) *waitingJoin {
	if s.cold == nil {
		return nil
	}
	return s.cold.waiting[room]
}

// OnOpen creates the session of a new connection. gnet calls it on the
// connection's loop.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	defer s.rescue(c, siteOpen)
	if s.draining.Load() {
		return nil, gnet.Close
	}
	if s.atConnCap() {
		return refMaxConnsResponse, gnet.Close
	}
	l := s.loopOf(c)
	now := stampOf(time.Now())
	ss := &session{loop: l, conn: c, lastRecv: now, since: now}
	c.SetContext(ss)
	l.sessions.add(ss)
	l.conns.Add(1)
	s.conns.Add(1)
	s.metrics.accepted.Inc()
	return nil, gnet.None
}

// OnClose ends the session: it leaves every room. gnet calls it on the loop.
func (s *Server) OnClose(c gnet.Conn, _ error) gnet.Action {
	defer s.rescue(c, siteClose)
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	ss.state = stateClosed
	for ss.rooms.len() > 0 {
		ms := ss.rooms.at(ss.rooms.len() - 1)
		name := ms.Room().Name()
		ss.rooms.remove(name)
		ms.Leave()
		s.events.closed(name, ss) // webhooks (webhook.go)
	}
	switch {
	case ss.sse:
		s.metrics.openSSE.Dec()
		s.forget(ss)
	case ss.id != nil:
		s.metrics.open(ss.id.anon).Dec()
		if ss.compressed {
			s.metrics.openZ.Dec()
		}
		s.forget(ss)
	}
	if ss.ipCounted {
		s.ips.release(ss.addr())
	}
	ss.loop.sessions.remove(ss)
	ss.loop.conns.Add(-1)
	s.conns.Add(-1)
	return gnet.None
}

// OnTraffic consumes what the connection sent: the upgrade request, then
// frames. It never blocks; an incomplete request or frame waits for more
// bytes in gnet's inbound buffer. gnet calls it on the loop.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	defer s.rescue(c, siteTraffic)
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.Close // refused in OnOpen
	}
	buf, _ := c.Peek(-1)
	now := time.Now()
	ss.lastRecv = stampOf(now)
	ss.loop.bytesIn.Add(int64(len(buf) - int(ss.unread))) // bytes left from the last call were counted then
	used := 0
	if ss.state == stateHTTP && !ss.sseWaiting {
		used = ss.handshake(buf)
	}
	if ss.state == stateOpen && !ss.sse { // an event stream reads nothing after its request
		used += ss.frames(buf[used:])
	}
	if ss.state >= stateClosing || ss.sse || ss.sseWaiting {
		used = len(buf) // discard whatever else comes
	}
	if used > 0 { // Discard(0) would discard everything
		_, _ = c.Discard(used)
	}
	ss.unread = int32(len(buf) - used)
	ss.loop.busy.Add(int64(time.Since(now)))
	return gnet.None
}

// open turns the connection into a WebSocket session. Its hello went out
// with the upgrade's answer (upgradeWS, helloFrame).
func (s *session) open(id *identity, f proto.Format) {
	s.id, s.format, s.state = id, f, stateOpen
	s.srv().metrics.open(id.anon).Inc()
	if s.compressed {
		s.srv().metrics.openZ.Inc()
	}
	s.srv().metrics.handshakes.Inc()
	s.srv().metrics.handshake.Observe(time.Since(s.since.time()).Seconds())
	s.srv().remember(s)
}

// reply encodes one frame to this session.
func (s *session) reply(v any) {
	b, err := s.loop.enc.Frame(s.format, v)
	if err != nil {
		s.srv().cfg.Logger.Error("cannot encode reply", "err", err)
		return
	}
	s.write(b)
}

// Deliver writes a room's frames (shard.Member). Runs on the loop, once per
// member per flush: the deferred rescue is open-coded, so it costs no
// allocation.
func (s *session) Deliver(frame []byte) {
	defer s.srv().rescue(s.conn, siteDeliver)
	if s.state != stateOpen {
		return
	}
	s.write(frame)
}

// helloLimits are the limits hello announces: the send limits of the user's
// role in the default namespace (namespaces may set their own).
func (s *Server) helloLimits(id *identity) proto.Limits {
	l := proto.Limits{MaxBody: s.cfg.MaxBody, MaxRooms: s.cfg.MaxRooms, MaxFrame: s.cfg.MaxFrame}
	if !id.anon {
		r := s.policies.def.rates[roleIndex(id.role)]
		l.Rate, l.Burst = r.Rate, r.Burst
	}
	return l
}
