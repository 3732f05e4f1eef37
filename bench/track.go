package bench

// seqTracker checks one member's stream of a room for continuity. Within a
// room seq grows by exactly one per message, and the relay promises that a
// member which stays joined gets every message after its joined.seq exactly
// once. So a jump forward is loss, a seq seen again is a duplicate.
// Owned by the member's reader goroutine.
type seqTracker struct {
	next     uint64 // next seq expected; 0 until the first joined
	received int64  // messages taken in order (batches and resumed history)
	resumed  int64  // of which came in the history of a resuming join
	lost     int64  // messages skipped over while joined
	dups     int64  // messages at or below one already seen
	gapMsgs  int64  // messages a resuming join could not return (joined.gap: aged out of history)
}

// joined starts, or resumes, the stream at a joined reply. history are the
// seqs of its history; resume says the join carried since = next-1.
func (t *seqTracker) joined(seq uint64, gap, resume bool, history []uint64) {
	if !resume || t.next == 0 {
		t.next = seq + 1
		return
	}
	for i, h := range history {
		if h > seq {
			break // the relay sends these again in batches
		}
		if i == 0 && gap && h > t.next {
			t.gapMsgs += int64(h - t.next)
			t.next = h
		}
		if t.observe(h) {
			t.resumed++
		}
	}
	if t.next <= seq {
		missing := int64(seq + 1 - t.next)
		if gap {
			t.gapMsgs += missing
		} else {
			t.lost += missing
		}
		t.next = seq + 1
	}
}

// observe takes one message seq from a batch or a history; it reports
// whether the message was new.
func (t *seqTracker) observe(seq uint64) bool {
	switch {
	case t.next == 0:
		return false // not joined: the caller does not send these here
	case seq < t.next:
		t.dups++
		return false
	case seq > t.next:
		t.lost += int64(seq - t.next)
	}
	t.next = seq + 1
	t.received++
	return true
}

// last is the highest seq taken in order.
func (t *seqTracker) last() uint64 {
	if t.next == 0 {
		return 0
	}
	return t.next - 1
}
