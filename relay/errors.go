package relay

import (
	"errors"
	"net/http"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
	"github.com/roomcast/roomcast/shard"
)

// This file is the one table from internal errors to what clients see: a
// protocol code (error frames, admin API JSON), an HTTP status (admin API,
// /sse), a message and, for limits in time, when to retry. Every way that
// turns a shard or relay error into a client answer goes through classify.

// codeStatus is the HTTP status of each protocol code.
var codeStatus = map[proto.Code]int{
	proto.CodeBadRequest:   http.StatusBadRequest,
	proto.CodeUnknownType:  http.StatusBadRequest,
	proto.CodeBadRoom:      http.StatusBadRequest,
	proto.CodeForbidden:    http.StatusForbidden,
	proto.CodeNotJoined:    http.StatusConflict,
	proto.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	proto.CodeRateLimited:  http.StatusTooManyRequests,
	proto.CodeSlowMode:     http.StatusTooManyRequests,
	proto.CodeMuted:        http.StatusForbidden,
	proto.CodeBanned:       http.StatusForbidden,
	proto.CodeTooManyRooms: http.StatusTooManyRequests,
	proto.CodeRoomFull:     http.StatusServiceUnavailable,
	proto.CodeUnavailable:  http.StatusServiceUnavailable,
	proto.CodeInternal:     http.StatusInternalServerError,
	proto.CodeBadToken:     http.StatusUnauthorized,
}

// httpStatus returns the HTTP status of a protocol code (500 if unknown).
func httpStatus(c proto.Code) int {
	if st, ok := codeStatus[c]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// codeError is a request refused by the relay itself (not the shard): a
// protocol code and its message.
type codeError struct {
	code proto.Code
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func newCodeError(code proto.Code, msg string) error { return &codeError{code: code, msg: msg} }

var (
	// errTooLarge is a message that does not fit a frame.
	errTooLarge = newCodeError(proto.CodeTooLarge, "message does not fit a frame")
)

// roomRateError refuses a join that would create a room when the client's
// address created too many lately (Config.IPRoomRate).
type roomRateError struct{ retry time.Duration }

func (e *roomRateError) Error() string { return "relay: creating rooms too fast" }

// classify turns an error of the shard or the relay into what a client is
// told. nil gives code "" and status 200. An error not in the table is
// internal (500), its text kept from clients.
func classify(err error) (code proto.Code, status int, msg string, retry time.Duration) {
	code, msg, retry = classifyCode(err)
	if code == "" {
		return "", http.StatusOK, "", 0
	}
	return code, httpStatus(code), msg, retry
}

func classifyCode(err error) (proto.Code, string, time.Duration) {
	var (
		slow  *shard.SlowModeError
		muted *shard.MutedError
		ce    *codeError
		rr    *roomRateError
	)
	switch {
	case err == nil:
		return "", "", 0
	case errors.As(err, &ce):
		return ce.code, ce.msg, 0
	case errors.Is(err, shard.ErrRoomFull):
		return proto.CodeRoomFull, "room is full", 0
	case errors.Is(err, shard.ErrNoAnon):
		return proto.CodeForbidden, "this room is not open to anonymous viewers", 0
	case errors.Is(err, shard.ErrBanned):
		return proto.CodeBanned, "you are banned from this room", 0
	case errors.As(err, &slow):
		return proto.CodeSlowMode, "this room is in slow mode", slow.Retry
	case errors.As(err, &muted):
		return proto.CodeMuted, "you are timed out in this room", muted.Retry
	case errors.Is(err, shard.ErrRoomLimit):
		return proto.CodeUnavailable, "this relay cannot hold more rooms", 0
	case errors.As(err, &rr):
		return proto.CodeRateLimited, "creating rooms too fast from this address", rr.retry
	case errors.Is(err, shard.ErrUnavailable):
		return proto.CodeUnavailable, "messages cannot be stored now; retry", time.Second
	case errors.Is(err, shard.ErrTooLarge):
		return proto.CodeTooLarge, errTooLarge.Error(), 0
	}
	return proto.CodeInternal, "internal error", 0
}
