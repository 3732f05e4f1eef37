package relay

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// loop is our state of one gnet event loop. Everything in it is owned by the
// loop's goroutine, except el and idx, which are static.
type loop struct {
	srv *Server
	el  gnet.EventLoop
	idx int

	// Atomic: written by the loop, read by metrics scrapes. Each loop has
	// its own, so the hot path shares no cache line with other loops.
	bytesIn, bytesOut atomic.Int64
	conns             atomic.Int64 // open connections
	busy              atomic.Int64 // nanoseconds spent in OnTraffic and flush tasks
	queued            atomic.Int64 // outbound bytes queued, summed each tick
	_                 [24]byte

	sessions sessionSet // every open connection of the loop (session_set.go)
	now      time.Time  // refreshed by each tick; coarse clock for idle checks
	dec      *proto.Decoder
	enc      *proto.Encoder
	cmd      proto.Command
	joined   proto.Joined    // the joined reply being encoded (commands.go joined); empty between replies
	scratch  []byte          // for control frames
	up       upgrade         // the handshake being parsed
	infl     *proto.Inflater // inflates compressed client messages; made on the first
}

func newLoop(s *Server, el gnet.EventLoop, idx int) *loop {
	l := &loop{srv: s, el: el, idx: idx, now: time.Now(),
		dec: proto.NewDecoder(), enc: proto.NewEncoder()}
	l.up.init(l)
	return l
}

// Execute runs r on the loop (shard.Loop). Any goroutine.
func (l *loop) Execute(r shard.Runnable) error {
	return l.el.Execute(context.Background(), r)
}

// tickTask runs once a second on each loop.
type tickTask struct {
	l   *loop
	now time.Time
}

var pingFrame = ws.MustCompileFrame(ws.NewPingFrame(nil))

func (t tickTask) Run(context.Context) error {
	l := t.l
	l.now = t.now
	var queued int64
	l.sessions.each(func(s *session) {
		queued += int64(s.conn.OutboundBuffered())
		s.tick(t.now)
	})
	l.queued.Store(queued)
	return nil
}

// tick does a session's timed work: closes, timeouts, pings, token expiry.
func (s *session) tick(now time.Time) {
	defer s.srv().rescue(s.conn, siteTick)
	cfg := &s.srv().cfg
	switch {
	case s.state == stateClosing:
		s.tickClosing(now)
	case s.state == stateHTTP:
		if s.since.age(now) > handshakeTimeout {
			s.srv().metrics.handshakeFail("timeout")
			_ = s.conn.Close()
		}
	case s.sse: // readers of a stream send nothing: keep it alive instead
		if s.since.age(now) >= min(cfg.PingInterval, sseKeepAlive) {
			s.since = stampOf(now)
			s.write(sseComment)
		}
	case s.state != stateOpen:
	case s.id.expired(now):
		s.close(proto.CloseTokenExpired, "token expired")
	case s.lastRecv.age(now) > cfg.IdleTimeout:
		s.close(proto.CloseIdle, "idle timeout")
	case s.since.age(now) >= cfg.PingInterval:
		s.since = stampOf(now)
		s.write(pingFrame)
	}
}

// drainTask closes every connection of the loop with 1001.
type drainTask struct{ l *loop }

func (t drainTask) Run(context.Context) error {
	t.l.sessions.each((*session).drain)
	return nil
}

func (s *session) drain() {
	defer s.srv().rescue(s.conn, siteDrain)
	if s.state == stateHTTP {
		_ = s.conn.Close()
		return
	}
	s.close(proto.CloseGoingAway, "server shutting down")
}

// upgrade is the scratch state of one HTTP upgrade, reused by the loop.
type upgrade struct {
	up        ws.Upgrader
	in        bytes.Reader
	out       bytes.Buffer
	path      string
	token     string
	offers    bool         // the client offered subprotocols
	format    proto.Format // the one chosen
	chosen    bool
	id        *identity
	why       string // metrics reason of a rejection
	origin    string
	ip        netip.Addr
	ipCounted bool              // ips.admit counted the connection
	ext       wsflate.Extension // permessage-deflate negotiation
}
