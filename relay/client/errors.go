package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gobwas/ws"
)

// Error is an error answered or signalled by the relay.
//
//   - An error frame: Code is the protocol code (rate_limited, forbidden,
//     ...; see proto.Code), RetryMS set for rate_limited, slow_mode, muted.
//   - A close that ends the client or a room: Code is "closed" (Close set)
//     or "kicked" (Message is the relay's reason).
//   - An HTTP refusal of the upgrade: Code is "refused", Status the status.
//   - ErrDisconnected: the connection dropped before the reply.
type Error struct {
	Code    string
	Message string
	RetryMS int64
	Room    string
	Close   int // close code, for Code "closed"
	Status  int // HTTP status, for Code "refused"
}

// Codes the client adds to the protocol's error codes.
const (
	CodeClosed       = "closed"
	CodeKicked       = "kicked"
	CodeRefused      = "refused"
	CodeDisconnected = "disconnected"
)

func (e *Error) Error() string {
	switch {
	case e.Code == CodeClosed:
		return fmt.Sprintf("roomcast: closed by the relay with %d %s", e.Close, e.Message)
	case e.Code == CodeRefused:
		return fmt.Sprintf("roomcast: upgrade refused: HTTP %d %s", e.Status, e.Message)
	case e.RetryMS > 0:
		return fmt.Sprintf("roomcast: %s: %s (retry in %d ms)", e.Code, e.Message, e.RetryMS)
	}
	return fmt.Sprintf("roomcast: %s: %s", e.Code, e.Message)
}

var (
	// ErrDisconnected: the connection dropped before the relay's reply.
	ErrDisconnected = &Error{Code: CodeDisconnected, Message: "connection lost before the reply"}
	// ErrClosed: the application closed the client.
	ErrClosed = errors.New("roomcast: client closed")
	// ErrJoined: Join of a room the client is in already.
	ErrJoined = errors.New("roomcast: room joined already")
)

// closeError is a close frame received from the relay.
func closeError(code int, reason string) *Error {
	return &Error{Code: CodeClosed, Close: code, Message: reason}
}

// fatal reports whether err ends the client instead of a reconnect.
func fatal(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case CodeClosed:
			switch e.Close {
			case 4003, 1002, 1007, 1008, 1009:
				return true
			}
		case CodeRefused:
			return e.Status != http.StatusTooManyRequests && e.Status < 500
		}
		return false
	}
	var se ws.StatusError
	if errors.As(err, &se) {
		return int(se) != http.StatusTooManyRequests && int(se) < 500
	}
	return false
}

// closeCode returns the close code of err, or 0.
func closeCode(err error) int {
	var e *Error
	if errors.As(err, &e) && e.Code == CodeClosed {
		return e.Close
	}
	return 0
}
