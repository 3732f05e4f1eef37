package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
	"github.com/roomcast/roomcast/shard/natsbus"
)

// This file is the relay's side of the cluster and durable modes
// (Config.NATS, Config.DataDir): the rooms' log is a NATS JetStream stream
// (package natsbus), sends are answered once the log stored them, and joins
// of a room this node does not follow yet wait until it caught up. See
// docs/cluster.md.

// openBus opens the bus of cfg, or returns nil in memory mode. Its history
// per room in NATS covers the largest history of any namespace.
func openBus(cfg *Config, pols *policies) (*natsbus.Bus, error) {
	switch {
	case cfg.NATS == "" && cfg.DataDir == "":
		return nil, nil
	case cfg.NATS != "" && cfg.DataDir != "":
		return nil, errors.New("set either a NATS URL or a data directory, not both (a cluster's durability is its NATS servers')")
	}
	keep := int64(max(1, maxHistory(pols)))
	b, err := natsbus.Open(natsbus.Config{URL: cfg.NATS, DataDir: cfg.DataDir, Stream: cfg.NATSStream,
		Replicas: cfg.NATSReplicas, MaxMsgsPerSubject: keep, Name: "roomcast " + cfg.NodeID, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("cannot open the NATS bus: %w", err)
	}
	return b, nil
}

// maxHistory is the largest number of messages a room of any namespace keeps.
func maxHistory(pols *policies) int {
	n := pols.def.shard.History
	for _, p := range pols.by {
		n = max(n, p.shard.History)
	}
	if n == 0 {
		n = 100 // shard's default
	}
	return n
}

// registerBus adds the bus's collectors to the relay's registry.
func (m *metrics) registerBus(b *natsbus.Bus) {
	for _, c := range b.Collectors() {
		m.reg.MustRegister(c)
	}
}

// busReady reports why the bus makes the relay unready ("" if it does not).
func (s *Server) busReady() string {
	if s.bus != nil && !s.bus.Connected() {
		return "NATS unreachable"
	}
	return ""
}

// sendBus hands a checked message to the room's log; the answer (ack or
// error) is written from the session's loop once the log answered.
// Called on the loop.
func (s *session) sendBus(c *proto.Command, m *shard.Message) {
	ref, room, start := c.Ref, c.Room, s.lastRecv.time()
	s.srv().hub.Send(room, m, func(seq uint64, err error) { // a bus goroutine, or at once
		if err == nil {
			s.srv().events.message(room, seq, m) // webhooks (webhook.go)
		}
		t := sendDone{s: s, ref: ref, room: room, seq: seq, err: err, start: start}
		if s.loop.Execute(t) != nil {
			return // the loop is gone (shutdown): so is the session
		}
	})
}

// sendDone answers a send on the sender's loop.
type sendDone struct {
	s     *session
	ref   uint64
	room  string
	seq   uint64
	err   error
	start time.Time
}

func (t sendDone) Run(context.Context) error {
	s := t.s
	defer s.srv().rescue(s.conn, siteTask)
	if s.state != stateOpen {
		return nil // closed meanwhile: the message is stored all the same
	}
	c := proto.Command{T: proto.TSend, Ref: t.ref, Room: t.room}
	if t.err != nil {
		s.refused(&c, "send", t.err)
		return nil
	}
	s.strikes = 0
	s.srv().metrics.sendsAccepted.Inc()
	s.srv().metrics.acceptToSequenced.Observe(time.Since(t.start).Seconds())
	if t.ref != 0 {
		s.reply(&proto.Ack{T: proto.TAck, Ref: t.ref, Room: t.room, Seq: t.seq})
	}
	return nil
}

// joinWait makes a join of a room still catching up with the bus wait:
// once it did, the join is made again on the session's loop. Called on
// the loop.
func (s *session) joinWait(c *proto.Command) func(error) {
	cmd := *c
	return func(err error) { // any goroutine
		_ = s.loop.Execute(joinAgain{s: s, c: cmd, err: err})
	}
}

// joinAgain retries a join that waited for its room to catch up.
type joinAgain struct {
	s   *session
	c   proto.Command
	err error
}

func (t joinAgain) Run(context.Context) error {
	s := t.s
	defer s.srv().rescue(s.conn, siteTask)
	w := s.waitingJoin(t.c.Room)
	if w != nil {
		delete(s.cold.waiting, t.c.Room)
	}
	switch {
	case s.state != stateOpen:
		return nil
	case t.err != nil:
		s.refused(&t.c, "room", t.err)
	default:
		s.joinRoom(&t.c, false)
	}
	if w != nil && w.leave { // a leave came while the join waited
		s.leave(&proto.Command{T: proto.TLeave, Ref: w.leaveRef, Room: t.c.Room})
	}
	return nil
}

// waitingJoin is a join waiting for its room to catch up, and a leave of
// that room that came meanwhile.
type waitingJoin struct {
	leave    bool
	leaveRef uint64
}

// waitFor records a join of room waiting for joinAgain. Called on the loop.
func (s *session) waitFor(room string) {
	c := s.coldPart()
	if c.waiting == nil {
		c.waiting = make(map[string]*waitingJoin, 1)
	}
	if c.waiting[room] == nil {
		c.waiting[room] = &waitingJoin{}
	}
}

// shareMod stores a ban, timeout or slow mode (already applied here) for
// every node and the next start; delete and clear go through the room's
// log instead (shard). Any goroutine.
func (s *Server) shareMod(req modRequest) {
	if s.bus == nil {
		return
	}
	e := natsbus.ModEvent{Room: req.Room, User: req.User}
	d := time.Duration(req.Secs) * time.Second
	switch req.Action {
	case proto.ActBan, proto.ActUnban:
		e.Kind, e.Set = natsbus.ModBan, req.Action == proto.ActBan
	case proto.ActTimeout:
		e.Kind, e.Set, e.Until = natsbus.ModMute, d > 0, time.Now().Add(d)
	case proto.ActSlow:
		e.Kind, e.Set, e.Slow = natsbus.ModSlow, d > 0, d
	default:
		return
	}
	s.bus.SetModeration(e)
}

// applyMod applies moderation stored by any node (this one included: it is
// applied again, to the same effect). Bus goroutine.
func (s *Server) applyMod(e natsbus.ModEvent) {
	if !proto.ValidRoom(e.Room) {
		return
	}
	room := s.hub.Room(e.Room)
	switch e.Kind {
	case natsbus.ModBan:
		if !e.Set {
			room.Unban(e.User)
			return
		}
		room.Ban(e.User)
		s.kick(e.Room, e.User, "banned")
	case natsbus.ModMute:
		d := time.Until(e.Until)
		if !e.Set {
			d = 0
		} else if d <= 0 {
			return // over already
		}
		room.Timeout(e.User, d)
	case natsbus.ModSlow:
		room.SetSlowMode(e.Slow)
	}
}
