package relay

import (
	"errors"
	"strings"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// This file is users' inboxes (Config.InboxNamespace): the room
// "user:<sub>" is a room like any other (history, since/epoch resume,
// moderation), except that only the user sub may join it, and other users
// may send into it without joining (a whisper) while the namespace's
// policy has whispers on. The backend's admin API publish into it is a
// notification. The owner blocks a user with the mod action block, which
// is a ban of that user in the inbox: shared and durable like any ban.

// Moderation actions of the inbox owner (mod frames in their own inbox).
const (
	actBlock   = "block"
	actUnblock = "unblock"
)

var (
	errInboxJoin   = newCodeError(proto.CodeForbidden, "only its owner may join an inbox")
	errBlocked     = newCodeError(proto.CodeForbidden, "this user does not take your messages")
	errNoWhispers  = newCodeError(proto.CodeForbidden, "whispers are off: only the backend sends into inboxes")
	errNotYoursBox = newCodeError(proto.CodeForbidden, "block and unblock are for your own inbox")
)

// inboxOwner returns the user whose inbox room is, if room is one. It
// allocates nothing. Any goroutine.
func (s *Server) inboxOwner(room string) (string, bool) {
	ns := s.cfg.InboxNamespace
	if ns == "off" {
		return "", false
	}
	rest, ok := strings.CutPrefix(room, ns)
	if !ok || len(rest) < 2 || rest[0] != ':' {
		return "", false
	}
	return rest[1:], true
}

// mayRead reports whether id may join room (WebSocket join, /sse stream):
// anyone may join a room that is not an inbox; an inbox only its owner.
func (s *Server) mayRead(id *identity, room string) bool {
	owner, ok := s.inboxOwner(room)
	return !ok || !id.anon && owner == id.user
}

// whisperable reports whether a send into room, which the session has not
// joined, is a whisper: room is someone else's inbox. Called on the loop.
func (s *session) whisperable(room string) bool {
	owner, ok := s.srv().inboxOwner(room)
	return ok && owner != s.id.user && proto.ValidRoom(room)
}

// checkWhisper refuses a whisper of user into room when the namespace has
// whispers off or the owner blocked user. Any goroutine.
func (s *Server) checkWhisper(room, user string) error {
	if !s.policies.get(proto.Namespace(room)).whispers {
		return errNoWhispers
	}
	if r := s.hub.Lookup(room); r != nil && r.Banned(user) {
		return errBlocked
	}
	return nil
}

// whisperErr tells a blocked sender forbidden (a block is a ban in the
// inbox, which the shard answers with ErrBanned).
func whisperErr(err error) error {
	if errors.Is(err, shard.ErrBanned) {
		return errBlocked
	}
	return err
}

// chargeInbox charges a whisper into an inbox that does not exist yet to
// the sender's address like any room creation (Config.IPRoomRate); false
// if refused (answered). Called on the loop.
func (s *session) chargeInbox(c *proto.Command) bool {
	if s.srv().hub.Lookup(c.Room) != nil {
		return true
	}
	if create := s.srv().ips.roomCreator(s.addr()); create != nil {
		if err := create(); err != nil {
			s.refused(c, "room", err)
			return false
		}
	}
	return true
}

// whisper sequences a checked whisper without a hook. Called on the loop.
func (s *session) whisper(c *proto.Command, m *shard.Message) {
	if s.srv().bus != nil {
		ref, room, start := c.Ref, c.Room, s.lastRecv.time()
		s.srv().hub.Send(room, m, func(seq uint64, err error) { // a bus goroutine
			err = whisperErr(err)
			if err == nil {
				s.srv().events.message(room, seq, m)
			}
			_ = s.loop.Execute(sendDone{s: s, ref: ref, room: room, seq: seq, err: err, start: start})
		})
		return
	}
	seq, err := s.srv().hub.Publish(c.Room, m)
	s.published(c, m, seq, whisperErr(err))
}

// block runs the inbox owner's block and unblock: a ban or unban of user
// in the owner's own inbox. Called on the loop.
func (s *session) block(c *proto.Command) {
	owner, ok := s.srv().inboxOwner(c.Room)
	switch {
	case !ok || s.id.anon || owner != s.id.user:
		s.refused(c, "send", errNotYoursBox)
		return
	case c.User == "" || c.User == s.id.user:
		s.refused(c, "send", badMod(c.Action+" needs the user of someone else"))
		return
	}
	act := proto.ActBan
	if c.Action == actUnblock {
		act = proto.ActUnban
	}
	if err := s.srv().moderate(modRequest{Room: c.Room, Action: act, User: c.User}, s.id.user); err != nil {
		s.refused(c, "send", err)
		return
	}
	if c.Ref != 0 {
		s.reply(&proto.Ack{T: proto.TAck, Ref: c.Ref, Room: c.Room})
	}
}
