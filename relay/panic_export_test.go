package relay

import "github.com/roomcast/roomcast/relay/proto"

// SetCommandHook makes f run before every command, so that tests can make a
// command panic; the returned func removes it.
func SetCommandHook(f func(*proto.Command)) (undo func()) {
	commandHook.Store(&f)
	return func() { commandHook.Store(nil) }
}
