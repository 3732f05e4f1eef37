package client

import "github.com/roomcast/roomcast/relay/proto"

// Event is one thing that happened in a room: *Message, *Gap, *Presence,
// *Deleted, *Cleared or *Kicked.
type Event interface{ isEvent() }

// Message is one chat message of a room. Epoch names the room's history
// the seq belongs to.
type Message struct {
	Room   string            `json:"room"`
	Seq    uint64            `json:"seq"`
	Epoch  string            `json:"epoch"`
	TS     int64             `json:"ts"` // the relay's receive time, Unix milliseconds
	From   string            `json:"from"`
	Name   string            `json:"name"`
	Body   string            `json:"body"`
	Badges []string          `json:"badges,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
}

// Gap reasons.
const (
	// GapAgedOut: messages From..To were dropped from the room's history
	// before the client could fetch them.
	GapAgedOut = "aged_out"
	// GapEpoch: the room's history was replaced (a restarted relay, a room
	// re-created); messages of the old epoch from From on are lost (To 0:
	// unknown), and seqs start again in the new Epoch.
	GapEpoch = "epoch"
)

// Gap tells of messages the relay could not hand over. It comes before
// the messages that follow the hole.
type Gap struct {
	Room   string `json:"room"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"` // 0 when unknown (GapEpoch)
	Reason string `json:"reason"`
	Epoch  string `json:"epoch"` // the epoch delivery continues in
}

// Presence tells who is in the room. Each (re)join starts with one
// carrying Count and, in rooms that list members, the whole Members list;
// later ones carry Count and the changes (Joins, Leaves).
type Presence struct {
	Room    string         `json:"room"`
	Count   int            `json:"count"`
	Members []proto.Member `json:"members,omitempty"`
	Joins   []proto.Member `json:"joins,omitempty"`
	Leaves  []string       `json:"leaves,omitempty"`
}

// Deleted: a moderator removed the message Seq.
type Deleted struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
}

// Cleared: a moderator removed every message of the room.
type Cleared struct {
	Room string `json:"room"`
}

// Kicked: the client was removed from the room (a ban, a refreshed token
// that no longer allows it). It is the room's last event; Err then
// returns an *Error with Code "kicked".
type Kicked struct {
	Room   string `json:"room"`
	Reason string `json:"reason"`
}

func (*Message) isEvent()  {}
func (*Gap) isEvent()      {}
func (*Presence) isEvent() {}
func (*Deleted) isEvent()  {}
func (*Cleared) isEvent()  {}
func (*Kicked) isEvent()   {}
