package relay

import (
	"encoding/json"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/ratelimit"
	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// command runs one decoded client frame.
func (s *session) command(c *proto.Command) {
	if h := commandHook.Load(); h != nil {
		(*h)(c)
	}
	switch c.T {
	case proto.TJoin:
		s.join(c)
	case proto.TLeave:
		s.leave(c)
	case proto.TSend:
		s.send(c)
	case proto.TPing:
		s.reply(&proto.Pong{T: proto.TPong, Ref: c.Ref})
	case proto.TMod:
		if c.Action == actBlock || c.Action == actUnblock {
			s.block(c) // inbox owners (inbox.go)
		} else {
			s.mod(c)
		}
	case proto.TRefresh:
		s.refresh(c)
	default:
		s.fail(c.Ref, proto.CodeUnknownType, "unknown frame type "+quote(c.T), "")
	}
}

// fail answers with an error frame and counts it.
func (s *session) fail(ref uint64, code proto.Code, msg, room string) {
	s.srv().metrics.rejected(code).Inc()
	s.reply(&proto.Error{T: proto.TError, Ref: ref, Code: code, Message: msg, Room: room})
}

func (s *session) join(c *proto.Command) {
	if !proto.ValidRoom(c.Room) {
		s.fail(c.Ref, proto.CodeBadRoom, "room names match ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$", c.Room)
		return
	}
	if !roomAllowed(s.id.rooms(), c.Room) {
		s.fail(c.Ref, proto.CodeForbidden, "your token does not allow this room", c.Room)
		return
	}
	if !s.srv().mayRead(s.id, c.Room) {
		s.refused(c, "room", errInboxJoin)
		return
	}
	if ok, wait := s.joins.Take(ratelimit.Limits(s.srv().cfg.JoinRate), time.Now()); !ok {
		s.limited(c, "join", proto.CodeRateLimited, "joining too fast", wait)
		return
	}
	s.joinRoom(c, true)
}

// joinRoom joins a checked request. With a bus, a join may first wait for
// the room to catch up (wait), and is then made again without waiting.
func (s *session) joinRoom(c *proto.Command, wait bool) {
	req := shard.JoinRequest{LoopIndex: s.loop.idx, Loop: s.loop, Member: s, Format: s.format,
		User: s.id.user, Name: s.id.name, Anon: s.id.anon, Since: c.Since, HasSince: c.HasSince, Epoch: c.Epoch,
		Create: s.srv().ips.roomCreator(s.addr()), Compressed: s.compressed}
	switch {
	case c.HasHistory:
		req.History = c.History
	case c.HasSince:
		req.History = -1 // all that is kept after since
	}
	if ms := s.rooms.get(c.Room); ms != nil {
		s.joined(c, ms.Rejoin(&req))
		return
	}
	if s.rooms.len() >= s.srv().cfg.MaxRooms {
		s.fail(c.Ref, proto.CodeTooManyRooms, "this connection is in max_rooms rooms already", c.Room)
		return
	}
	if s.srv().bus != nil && wait {
		req.Wait = s.joinWait(c)
	}
	ms, res, err := s.srv().hub.Join(c.Room, &req)
	if err == shard.ErrSyncing {
		s.waitFor(c.Room) // answered by joinAgain once the room caught up
		return
	}
	if err != nil {
		s.refused(c, "room", err) // the only limit in time a join meets here: rooms created per IP
		return
	}
	s.rooms.add(ms)
	s.srv().events.member(evJoin, c.Room, s.id)
	s.joined(c, res)
}

// refused answers a join or send the shard (or a hook) refused, from the
// one error table (classify). Refusals in time count as strikes; kind names
// the rate limit for metrics.
func (s *session) refused(c *proto.Command, kind string, err error) {
	code, _, msg, retry := classify(err)
	switch code {
	case proto.CodeSlowMode:
		s.limited(c, "slow_mode", code, msg, retry)
	case proto.CodeRateLimited:
		s.limited(c, kind, code, msg, retry)
	default:
		s.srv().metrics.rejected(code).Inc()
		e := proto.Error{T: proto.TError, Ref: c.Ref, Code: code, Message: msg, Room: c.Room}
		if retry > 0 {
			e.RetryMS = ceilMS(retry)
		}
		s.reply(&e)
	}
}

// Empty histories of joined replies, boxed once.
var (
	noJSONHistory    any = []json.RawMessage{}
	noMsgpackHistory any = []msgpack.RawMessage{}
)

// joined answers a join. The reply is the loop's (l.joined): encoding it
// allocates nothing of its own, nor does an empty history.
func (s *session) joined(c *proto.Command, res shard.JoinResult) {
	j := &s.loop.joined
	*j = proto.Joined{T: proto.TJoined, Ref: c.Ref, Room: c.Room, Seq: res.Seq, Epoch: res.Epoch, Gap: res.Gap,
		Count: res.Count, Members: res.Members}
	switch {
	case s.format == proto.JSON && len(res.History) == 0:
		j.History = noJSONHistory
	case s.format == proto.JSON:
		h := make([]json.RawMessage, len(res.History))
		for i, m := range res.History {
			h[i] = m
		}
		j.History = h
	case len(res.History) == 0:
		j.History = noMsgpackHistory
	default:
		h := make([]msgpack.RawMessage, len(res.History))
		for i, m := range res.History {
			h[i] = m
		}
		j.History = h
	}
	s.reply(j)
	*j = proto.Joined{} // keeps no room's members or history past the reply
}

func (s *session) leave(c *proto.Command) {
	ms := s.rooms.get(c.Room)
	if w := s.waitingJoin(c.Room); ms == nil && w != nil {
		w.leave, w.leaveRef = true, c.Ref // answered after the join: joined, then left
		return
	}
	if ms == nil {
		s.fail(c.Ref, proto.CodeNotJoined, "not in this room", c.Room)
		return
	}
	s.rooms.remove(c.Room)
	ms.Leave()
	s.srv().events.member(evLeave, c.Room, s.id)
	s.reply(&proto.Left{T: proto.TLeft, Ref: c.Ref, Room: c.Room})
}

func (s *session) send(c *proto.Command) {
	if s.id.anon {
		s.fail(c.Ref, proto.CodeForbidden, "anonymous viewers cannot send", c.Room)
		return
	}
	whisper := false
	if s.rooms.get(c.Room) == nil {
		if whisper = s.whisperable(c.Room); !whisper {
			s.notMember(c)
			return
		}
		if err := s.srv().checkWhisper(c.Room, s.id.user); err != nil {
			s.refused(c, "send", err)
			return
		}
	}
	if msg, code := s.srv().checkMessage(c.Body, c.Meta); code != "" {
		s.fail(c.Ref, code, msg, c.Room)
		return
	}
	pol := s.srv().policies.get(proto.Namespace(c.Room))
	now := time.Now()
	if ok, wait := pol.limiter.Allow(s.id.user, pol.rates[roleIndex(s.id.role)], now); !ok {
		s.limited(c, "send", proto.CodeRateLimited, "sending too fast", wait)
		return
	}
	if whisper && !s.chargeInbox(c) {
		return
	}
	m := &shard.Message{From: s.id.user, Name: s.id.name,
		Body: c.Body, Badges: s.id.badges(), Meta: c.Meta, SlowExempt: s.id.role != roleUser}
	switch {
	case pol.hook != nil:
		s.sendHooked(c, m, pol.hook, whisper) // answered once the hook and the room did (hook.go)
	case whisper:
		s.whisper(c, m) // inbox.go
	case s.srv().bus != nil:
		s.sendBus(c, m) // answered once the bus stored it
	default:
		seq, err := s.srv().hub.Publish(c.Room, m)
		s.published(c, m, seq, err)
	}
}

// notMember answers a send into a room the session has not joined. A ban
// removes the membership, so the banned land here: tell them so. (A
// member's sends are checked for bans by Publish.)
func (s *session) notMember(c *proto.Command) {
	switch {
	case !proto.ValidRoom(c.Room):
		s.fail(c.Ref, proto.CodeBadRoom, "bad room name", c.Room)
	case s.srv().banned(c.Room, s.id.user):
		s.fail(c.Ref, proto.CodeBanned, "you are banned from this room", c.Room)
	default:
		s.fail(c.Ref, proto.CodeNotJoined, "join the room before sending", c.Room)
	}
}

// published answers a send sequenced in memory mode (seq) or refused (err).
// Called on the loop.
func (s *session) published(c *proto.Command, m *shard.Message, seq uint64, err error) {
	if err != nil {
		s.refused(c, "send", err)
		return
	}
	s.srv().events.message(c.Room, seq, m)
	s.strikes = 0
	s.srv().metrics.sendsAccepted.Inc()
	s.srv().metrics.acceptToSequenced.Observe(time.Since(s.lastRecv.time()).Seconds())
	if c.Ref != 0 {
		s.reply(&proto.Ack{T: proto.TAck, Ref: c.Ref, Room: c.Room, Seq: seq})
	}
}

// banned reports whether user is banned from room (false if there is no
// such room). Any goroutine.
func (s *Server) banned(room, user string) bool {
	r := s.hub.Lookup(room)
	return r != nil && r.Banned(user)
}

// limited answers a request refused by a rate limit of kind, with the
// time until it would pass. Too many refusals in a row close with 1008.
func (s *session) limited(c *proto.Command, kind string, code proto.Code, msg string, wait time.Duration) {
	s.srv().metrics.rateLimited[kind].Inc()
	if s.strikes++; int(s.strikes) > s.srv().cfg.AbuseStrikes {
		s.close(proto.ClosePolicy, "too many requests after rate_limited")
		return
	}
	s.srv().metrics.rejected(code).Inc()
	s.reply(&proto.Error{T: proto.TError, Ref: c.Ref, Code: code, Message: msg, RetryMS: ceilMS(wait), Room: c.Room})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ceilMS rounds d up to whole milliseconds, at least 1.
func ceilMS(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}
