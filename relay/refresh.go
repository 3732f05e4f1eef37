package relay

import (
	"time"

	"github.com/roomcast/roomcast/ratelimit"
	"github.com/roomcast/roomcast/relay/proto"
)

// refresh replaces the connection's token with c.Token (protocol v1.1): the
// new token must verify and name the same user; its role, rooms, badges and
// expiry apply from now on, and rooms its rooms claim no longer allows are
// left, each with kicked. A refused token leaves the connection as it was,
// old expiry included. Refreshes take from the connection's join allowance,
// so verifying tokens cannot be used to keep a loop busy.
func (s *session) refresh(c *proto.Command) {
	if s.id.anon {
		s.fail(c.Ref, proto.CodeBadToken, "anonymous connections have no token to refresh", "")
		return
	}
	if c.Token == "" {
		s.fail(c.Ref, proto.CodeBadToken, "refresh needs a token", "")
		return
	}
	if ok, wait := s.joins.Take(ratelimit.Limits(s.srv().cfg.JoinRate), time.Now()); !ok {
		s.limited(c, "refresh", proto.CodeRateLimited, "refreshing too fast", wait)
		return
	}
	id, err := s.srv().auth.identify(c.Token)
	switch {
	case err != nil:
		s.fail(c.Ref, proto.CodeBadToken, err.Error(), "")
		return
	case id.user != s.id.user:
		s.fail(c.Ref, proto.CodeBadToken, "the token names another user", "")
		return
	}
	if id.name != s.id.name { // members lists and messages keep the name of the upgrade
		g := *id.grant // the token's identity and grant are shared: make new ones
		g.name = s.id.name
		id = &identity{user: id.user, grant: &g}
	}
	s.srv().usersMu.Lock() // the user index reads ids under it (session_users.go)
	s.id = id
	s.srv().usersMu.Unlock()
	// remove moves the last one to i. A kicked reply whose write fails
	// makes gnet run OnClose at once, which empties s.rooms: then the rest
	// is skipped (the set shrank under the walk).
	for i := s.rooms.len() - 1; i >= 0; i-- {
		if i >= s.rooms.len() {
			continue
		}
		ms := s.rooms.at(i)
		if name := ms.Room().Name(); !roomAllowed(id.rooms(), name) {
			s.rooms.remove(name)
			ms.Leave()
			s.reply(&proto.Kicked{T: proto.TKicked, Room: name, Reason: "token"})
		}
	}
	s.reply(&proto.Ack{T: proto.TAck, Ref: c.Ref})
}
