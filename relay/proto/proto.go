// Package proto is roomcast's wire protocol, version 1: frame types, error
// and close codes, and the msgpack / JSON codecs. It imports nothing of the
// server, so the bench tool and any Go client can use it.
//
// The flow of one connection:
//
//	client                                   relay
//	GET /ws (Sec-WebSocket-Protocol, token) ->
//	                                      <- 101 Switching Protocols
//	                                      <- hello {user, role, limits, node}
//	join {ref, room, since?, history?}     ->
//	                                      <- joined {ref, room, seq, history, gap, count, members?}
//	send {ref, room, body, meta?}          ->
//	                                      <- ack {ref, room, seq}
//	                                      <- batch {room, msgs}      (to every member, the sender too)
//	                                      <- presence {room, count, joins?, leaves?}
//	ping {ref}                             -> <- pong {ref}
//	leave {ref, room}                      -> <- left {ref, room}
//
// A request that cannot be served gets an error frame (Error codes below); an
// error never closes the connection. Only the close codes below do.
//
// Every frame is one map with a string field "t". In the msgpack format
// (subprotocol roomcast.v1.msgpack, the default) frames are binary WebSocket
// frames; in the JSON format (roomcast.v1.json) they are text frames.
package proto

// Subprotocol names offered in Sec-WebSocket-Protocol.
const (
	SubprotocolMsgpack = "roomcast.v1.msgpack"
	SubprotocolJSON    = "roomcast.v1.json"
)

// Format is the encoding a connection negotiated.
type Format uint8

// The wire formats. SSE is the Server-Sent Events stream of /sse: one
// event per message ("id: <epoch>:<seq>", "event: msg", "data: <JSON>"), and the
// other frames as "event: <t>" with the JSON frame as data.
const (
	Msgpack Format = iota
	JSON
	SSE
	NumFormats
)

// String returns the subprotocol name of f.
func (f Format) String() string {
	switch f {
	case JSON:
		return SubprotocolJSON
	case SSE:
		return "sse"
	}
	return SubprotocolMsgpack
}

// Client-to-server frame types.
const (
	TJoin    = "join"
	TLeave   = "leave"
	TSend    = "send"
	TPing    = "ping"
	TMod     = "mod"
	TRefresh = "refresh" // v1.1: a fresh token for this connection
)

// Moderation actions of mod frames and POST /api/mod.
const (
	ActDelete  = "delete"
	ActTimeout = "timeout"
	ActBan     = "ban"
	ActUnban   = "unban"
	ActSlow    = "slow"
	ActClear   = "clear"
)

// AllActions lists the moderation actions.
var AllActions = []string{ActDelete, ActTimeout, ActBan, ActUnban, ActSlow, ActClear}

// Server-to-client frame types.
const (
	THello    = "hello"
	TJoined   = "joined"
	TLeft     = "left"
	TAck      = "ack"
	TPong     = "pong"
	TBatch    = "batch"
	TPresence = "presence"
	TDelete   = "delete"
	TClear    = "clear"
	TKicked   = "kicked"
	TError    = "error"
)

// Code is an error code carried by an error frame. Codes are reply errors:
// they never close the connection.
type Code string

// Error codes of PROTOCOL.md section 3.4.
const (
	CodeBadRequest   Code = "bad_request"
	CodeUnknownType  Code = "unknown_type"
	CodeBadRoom      Code = "bad_room"
	CodeForbidden    Code = "forbidden"
	CodeNotJoined    Code = "not_joined"
	CodeTooLarge     Code = "too_large"
	CodeRateLimited  Code = "rate_limited"
	CodeSlowMode     Code = "slow_mode"
	CodeMuted        Code = "muted"
	CodeBanned       Code = "banned"
	CodeTooManyRooms Code = "too_many_rooms"
	CodeRoomFull     Code = "room_full"
	CodeUnavailable  Code = "unavailable"
	CodeInternal     Code = "internal"
	CodeBadToken     Code = "bad_token" // v1.1: a refresh whose token does not verify or names another user
)

// AllCodes lists every error code, for metrics that are resolved up front.
var AllCodes = []Code{
	CodeBadRequest, CodeUnknownType, CodeBadRoom, CodeForbidden, CodeNotJoined,
	CodeTooLarge, CodeRateLimited, CodeSlowMode, CodeMuted, CodeBanned,
	CodeTooManyRooms, CodeRoomFull, CodeUnavailable, CodeInternal, CodeBadToken,
}

// CloseCode is a WebSocket close status. Close codes end the connection; they
// are a different kind of thing from reply errors.
type CloseCode uint16

// Close codes of PROTOCOL.md section 3.5.
const (
	CloseNormal       CloseCode = 1000
	CloseGoingAway    CloseCode = 1001 // server shutting down
	CloseProtocol     CloseCode = 1002 // unmasked frame, bad opcode, bad fragmentation
	CloseInvalidData  CloseCode = 1007 // invalid UTF-8, or a frame that does not decode
	ClosePolicy       CloseCode = 1008 // repeated abuse after rate_limited
	CloseTooBig       CloseCode = 1009 // frame or reassembled message over max_frame
	CloseInternal     CloseCode = 1011 // the relay failed on this connection (a recovered panic)
	CloseIdle         CloseCode = 4000 // nothing received within the idle timeout
	CloseOperator     CloseCode = 4003 // admin API /api/disconnect
	CloseSlowConsumer CloseCode = 4009 // outbound queue overflowed
	CloseTokenExpired CloseCode = 4010 // v1.1: the token expired and no refresh came
)

// AllCloseCodes lists the close codes the relay sends.
var AllCloseCodes = []CloseCode{
	CloseNormal, CloseGoingAway, CloseProtocol, CloseInvalidData, ClosePolicy,
	CloseTooBig, CloseInternal, CloseIdle, CloseOperator, CloseSlowConsumer, CloseTokenExpired,
}

// Message is one chat message of a room, as carried in batch and joined.
type Message struct {
	Seq    uint64            `msgpack:"seq" json:"seq"`
	TS     int64             `msgpack:"ts" json:"ts"`
	From   string            `msgpack:"from" json:"from"`
	Name   string            `msgpack:"name" json:"name"`
	Body   string            `msgpack:"body" json:"body"`
	Badges []string          `msgpack:"badges,omitempty" json:"badges,omitempty"`
	Meta   map[string]string `msgpack:"meta,omitempty" json:"meta,omitempty"`
}

// Member is one listed member of a room.
type Member struct {
	ID   string `msgpack:"id" json:"id"`
	Name string `msgpack:"name" json:"name"`
}

// Limits are the per-user limits announced in hello.
type Limits struct {
	Rate     float64 `msgpack:"rate" json:"rate"`
	Burst    int     `msgpack:"burst" json:"burst"`
	MaxBody  int     `msgpack:"max_body" json:"max_body"`
	MaxRooms int     `msgpack:"max_rooms" json:"max_rooms"`
	MaxFrame int     `msgpack:"max_frame" json:"max_frame"`
}

// Hello is the first frame the relay sends on a connection.
type Hello struct {
	T      string `msgpack:"t" json:"t"`
	V      int    `msgpack:"v" json:"v"`
	User   string `msgpack:"user" json:"user"`
	Name   string `msgpack:"name" json:"name"`
	Anon   bool   `msgpack:"anon" json:"anon"`
	Role   string `msgpack:"role" json:"role"`
	Limits Limits `msgpack:"limits" json:"limits"`
	Node   string `msgpack:"node" json:"node"`
}

// Joined answers a join. History holds pre-encoded messages of the
// connection's format (RawMessages), oldest first.
type Joined struct {
	T       string   `msgpack:"t" json:"t"`
	Ref     uint64   `msgpack:"ref,omitempty" json:"ref,omitempty"`
	Room    string   `msgpack:"room" json:"room"`
	Seq     uint64   `msgpack:"seq" json:"seq"`
	Epoch   string   `msgpack:"epoch,omitempty" json:"epoch,omitempty"` // v1.1: names the room's history; see PROTOCOL.md section 8
	History any      `msgpack:"history" json:"history"`
	Gap     bool     `msgpack:"gap" json:"gap"`
	Count   int      `msgpack:"count" json:"count"`
	Members []Member `msgpack:"members,omitempty" json:"members,omitempty"`
}

// Left answers a leave.
type Left struct {
	T    string `msgpack:"t" json:"t"`
	Ref  uint64 `msgpack:"ref,omitempty" json:"ref,omitempty"`
	Room string `msgpack:"room" json:"room"`
}

// Ack answers a send (or mod) that carried a ref.
type Ack struct {
	T    string `msgpack:"t" json:"t"`
	Ref  uint64 `msgpack:"ref" json:"ref"`
	Room string `msgpack:"room" json:"room"`
	Seq  uint64 `msgpack:"seq,omitempty" json:"seq,omitempty"`
}

// Pong answers a ping frame.
type Pong struct {
	T   string `msgpack:"t" json:"t"`
	Ref uint64 `msgpack:"ref,omitempty" json:"ref,omitempty"`
}

// Presence tells the members of a room who came and went.
type Presence struct {
	T      string   `msgpack:"t" json:"t"`
	Room   string   `msgpack:"room" json:"room"`
	Count  int      `msgpack:"count" json:"count"`
	Joins  []Member `msgpack:"joins,omitempty" json:"joins,omitempty"`
	Leaves []string `msgpack:"leaves,omitempty" json:"leaves,omitempty"`
}

// Kicked tells a connection it was removed from a room.
type Kicked struct {
	T      string `msgpack:"t" json:"t"`
	Room   string `msgpack:"room" json:"room"`
	Reason string `msgpack:"reason" json:"reason"`
}

// Delete tells members a message was removed by a moderator.
type Delete struct {
	T    string `msgpack:"t" json:"t"`
	Room string `msgpack:"room" json:"room"`
	Seq  uint64 `msgpack:"seq" json:"seq"`
}

// Clear tells members every message of the room was removed.
type Clear struct {
	T    string `msgpack:"t" json:"t"`
	Room string `msgpack:"room" json:"room"`
}

// Error is a reply error. It never closes the connection.
type Error struct {
	T       string `msgpack:"t" json:"t"`
	Ref     uint64 `msgpack:"ref,omitempty" json:"ref,omitempty"`
	Code    Code   `msgpack:"code" json:"code"`
	Message string `msgpack:"message" json:"message"`
	RetryMS int64  `msgpack:"retry_ms,omitempty" json:"retry_ms,omitempty"`
	Room    string `msgpack:"room,omitempty" json:"room,omitempty"`
}

// Command is one decoded client frame. Fields absent from the frame keep
// their zero value; HasSince and HasHistory tell absent from zero.
type Command struct {
	T          string
	Ref        uint64
	Room       string
	Body       string
	Meta       map[string]string
	Since      uint64
	HasSince   bool
	Epoch      string // join: the epoch since belongs to (v1.1); "" if absent
	Token      string // refresh: the fresh token (v1.1)
	History    int
	HasHistory bool
	Action     string
	User       string
	Secs       int64
	Seq        uint64
}

// ValidRoom reports whether name matches ^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == ':' || c == '.' || c == '_' || c == '-') {
			continue
		}
		return false
	}
	return true
}

// Namespace returns the part of a room name before its first ':' (the whole
// name if it has none).
func Namespace(room string) string {
	for i := 0; i < len(room); i++ {
		if room[i] == ':' {
			return room[:i]
		}
	}
	return room
}
