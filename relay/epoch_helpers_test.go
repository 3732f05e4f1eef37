package relay_test

import (
	"strconv"
	"strings"
)

// isEventID reports whether an SSE message id is "<epoch>:<seq>" with a
// non-empty epoch and the given seq.
func isEventID(id string, seq uint64) bool {
	epoch, n, ok := strings.Cut(id, ":")
	return ok && epoch != "" && n == strconv.FormatUint(seq, 10)
}

// eventEpoch returns the epoch part of an SSE message id.
func eventEpoch(id string) string {
	epoch, _, _ := strings.Cut(id, ":")
	return epoch
}
