package relay

import (
	"context"
	"time"
)

// StopEngineForTest stops the gnet engine without Shutdown, as a failed
// accept would.
func StopEngineForTest(s *Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.eng.Stop(ctx)
}
