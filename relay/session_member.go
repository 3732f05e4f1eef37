package relay

import "github.com/roomcast/roomcast/shard"

// A session names its user to its rooms, which then keep no copy of it.
var _ shard.UserMember = (*session)(nil)

// MemberUser names the user the session is connected as (shard.UserMember),
// so its rooms keep no copy of the id. Called on the loop (by the room, at
// the session's joins and leaves).
//
// A session names the user it joined its rooms as for as long as it is in
// them: a refresh keeps the user (refresh.go), and s.id is never cleared. An
// /sse stream gets s.id only after its join (sseJoin), so it names no user
// at the join and its room keeps its own copy.
func (s *session) MemberUser() string {
	if s.id == nil {
		return ""
	}
	return s.id.user
}
