package relay

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/roomcast/roomcast/relay/proto"
)

// slowCloseLimit bounds how long a connection whose close frame waits behind
// queued bytes may take to read them; then the socket is closed.
const slowCloseLimit = 5 * time.Second

// write queues b on the connection (gnet copies it): every byte the relay
// sends goes through here, except the close frame (queueClose). gnet tries
// the socket first and keeps the rest; when what is still kept plus b would
// pass MaxOutbound, b is not queued and the connection is a slow consumer.
// A frame into an empty queue always goes, however large: so the queue is
// bounded by max(MaxOutbound, the largest frame) plus the close frame. It
// reports whether b was queued. Runs on the loop.
func (s *session) write(b []byte) bool {
	if s.state >= stateClosing {
		return false
	}
	if q := s.conn.OutboundBuffered(); q > 0 && q+len(b) > s.srv().cfg.MaxOutbound {
		s.slowConsumer()
		return false
	}
	return s.queue(b)
}

// queue hands b to gnet, unchecked.
func (s *session) queue(b []byte) bool {
	if _, err := s.conn.Write(b); err != nil {
		return false // gnet closed the connection
	}
	s.loop.bytesOut.Add(int64(len(b)))
	return true
}

// slowConsumer ends a connection whose queue is full: 4009 for a WebSocket,
// the end of the stream for SSE, a plain close before the upgrade.
func (s *session) slowConsumer() {
	s.srv().metrics.slowConsumers.Inc()
	if s.state == stateHTTP {
		s.abort()
		return
	}
	s.close(proto.CloseSlowConsumer, "slow consumer")
}

// close sends a close frame and ends the session. From now on nothing but
// the close frame is queued. The close frame goes behind whatever is queued;
// once all of it is written we shut down our side and wait (up to
// closeLinger) for the peer's FIN, so the frame is read before the socket
// goes rather than lost to a reset. A peer that does not read what is queued
// within slowCloseLimit is cut off. An event stream has no close frame: it
// ends once its queue is written.
func (s *session) close(code proto.CloseCode, reason string) {
	if s.state >= stateClosing {
		return
	}
	s.state = stateClosing
	s.since = stampOf(s.loop.now)
	s.srv().metrics.disconnect(code).Inc()
	if !s.sse && !s.queue(proto.CloseFrame(code, reason)) {
		return
	}
	if s.conn.OutboundBuffered() > 0 {
		s.flushing = true // the tick calls endClose once the queue is written
		return
	}
	s.endClose()
}

// endClose ends a closing connection whose queue is written: a WebSocket
// shuts down its side and lingers for the peer's FIN, a stream just closes.
func (s *session) endClose() {
	s.flushing = false
	if s.sse {
		_ = s.conn.Close()
		return
	}
	s.since = stampOf(s.loop.now)
	_ = unix.Shutdown(s.conn.Fd(), unix.SHUT_WR)
}

// tickClosing advances a closing connection at the tick: the end of its
// flush, or of its linger.
func (s *session) tickClosing(now time.Time) {
	switch {
	case s.flushing && s.conn.OutboundBuffered() == 0:
		s.endClose()
	case s.flushing && s.since.age(now) > slowCloseLimit:
		// It does not read: drop the queue, the kernel's too. A plain
		// close would leave the kernel sending what its send buffer holds
		// (up to -send-buffer, or 4 MiB autotuned) to a peer that does not
		// read; with SO_LINGER 0 the close discards it and resets.
		_ = unix.SetsockoptLinger(s.conn.Fd(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		_ = s.conn.Close()
	case !s.flushing && s.since.age(now) > closeLinger:
		_ = s.conn.Close()
	}
}
