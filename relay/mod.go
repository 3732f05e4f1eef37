package relay

import (
	"context"
	"net/http"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
)

// modRequest is one moderation action, from a mod frame or POST /api/mod.
type modRequest struct {
	Room   string `json:"room"`
	Action string `json:"action"`
	User   string `json:"user"`
	Secs   int64  `json:"secs"`
	Seq    uint64 `json:"seq"`
}

// badMod is a refused moderation action (bad_request).
func badMod(msg string) error { return newCodeError(proto.CodeBadRequest, msg) }

// maxTimeout bounds timeout and slow mode durations.
const maxTimeout = 14 * 24 * 3600

// moderate runs one action on behalf of actor (a user id, or "api").
// Any goroutine.
func (s *Server) moderate(req modRequest, actor string) error {
	if !proto.ValidRoom(req.Room) {
		return newCodeError(proto.CodeBadRoom, "bad room name")
	}
	if req.Secs < 0 || req.Secs > maxTimeout {
		return badMod("secs must be between 0 and 14 days")
	}
	if err := checkMod(req); err != nil {
		return err
	}
	// Created if need be (a ban may come before the user does), within
	// the relay's room limit like every other way of making a room.
	room, err := s.hub.Open(req.Room)
	if err != nil {
		return err
	}
	switch req.Action {
	case proto.ActDelete:
		if !room.Delete(req.Seq) {
			return badMod("no such message in this room")
		}
	case proto.ActTimeout:
		room.Timeout(req.User, time.Duration(req.Secs)*time.Second)
	case proto.ActBan:
		room.Ban(req.User)
		s.kick(req.Room, req.User, "banned")
	case proto.ActUnban:
		room.Unban(req.User)
	case proto.ActSlow:
		room.SetSlowMode(time.Duration(req.Secs) * time.Second)
	case proto.ActClear:
		room.Clear()
	}
	s.shareMod(req) // cluster-wide and durable with a bus (cluster.go)
	s.metrics.modActions[req.Action].Inc()
	s.events.moderation(req, actor) // webhooks (webhook.go)
	s.cfg.Logger.Info("moderation", "actor", actor, "room", req.Room, "action", req.Action,
		"user", req.User, "secs", req.Secs, "seq", req.Seq)
	return nil
}

// checkMod checks that an action has the fields it needs.
func checkMod(req modRequest) error {
	switch req.Action {
	case proto.ActDelete:
		if req.Seq == 0 {
			return badMod("delete needs seq")
		}
	case proto.ActTimeout, proto.ActBan, proto.ActUnban:
		if req.User == "" {
			return badMod(req.Action + " needs user")
		}
		if req.Action == proto.ActTimeout && req.Secs == 0 {
			return badMod("timeout needs secs")
		}
	case proto.ActSlow, proto.ActClear:
	default:
		return badMod("unknown action: use delete, timeout, ban, unban, slow or clear")
	}
	return nil
}

// kick removes every connection of user from room, telling each with a
// kicked event. Any goroutine.
func (s *Server) kick(room, user, reason string) {
	s.onSessionsOf(user, func(ss *session) gnet.Runnable { return kickTask{ss, room, reason} })
}

type kickTask struct {
	s            *session
	room, reason string
}

func (t kickTask) Run(context.Context) error {
	defer t.s.srv().rescue(t.s.conn, siteTask)
	ms := t.s.rooms.get(t.room)
	if ms == nil || t.s.state != stateOpen {
		return nil
	}
	t.s.rooms.remove(t.room)
	ms.Leave()
	t.s.reply(&proto.Kicked{T: proto.TKicked, Room: t.room, Reason: t.reason})
	if t.s.sse {
		_ = t.s.conn.Close() // a stream is one room: nothing is left to read
	}
	return nil
}

// mod runs a mod frame.
func (s *session) mod(c *proto.Command) {
	if s.id.role != roleMod && s.id.role != roleAdmin {
		s.fail(c.Ref, proto.CodeForbidden, "moderation needs role mod or admin", c.Room)
		return
	}
	if !roomAllowed(s.id.rooms(), c.Room) {
		s.fail(c.Ref, proto.CodeForbidden, "your token does not allow this room", c.Room)
		return
	}
	err := s.srv().moderate(modRequest{Room: c.Room, Action: c.Action, User: c.User, Secs: c.Secs, Seq: c.Seq}, s.id.user)
	switch code, _, msg, _ := classify(err); {
	case err != nil:
		s.fail(c.Ref, code, msg, c.Room)
	case c.Ref != 0:
		s.reply(&proto.Ack{T: proto.TAck, Ref: c.Ref, Room: c.Room})
	}
}

func (s *Server) apiModerate(r *http.Request) (any, error) {
	var req modRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := s.moderate(req, "api"); err != nil {
		return nil, err // answered from the error table by apiHandler
	}
	return map[string]bool{"ok": true}, nil
}
