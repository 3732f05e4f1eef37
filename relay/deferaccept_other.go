//go:build !linux

package relay

// setDeferAccept does nothing where there is no TCP_DEFER_ACCEPT: each
// connection costs one wake-up more. It reports want, as if all were set.
func (s *Server) setDeferAccept(want int) int { return want }
