package bench

import (
	"strconv"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// frame handles one server data frame. Reader goroutine.
func (m *member) frame(p []byte, now time.Time) {
	fi := &m.fi
	if !m.scan.parseFrame(p, fi) {
		m.st.inc(cBadFrames)
		return
	}
	switch string(fi.t) {
	case proto.TBatch:
		m.batch(p, now)
	case proto.TAck:
		m.acked(fi)
	case proto.TJoined:
		m.joined(p, fi)
	case proto.THello:
		m.helloFrame(p)
	case proto.TError:
		m.errorFrame(fi)
	case proto.TPresence:
		m.st.inc(cPresence)
	}
}

// batch checks a batch's seqs and, for sampled members, times its messages.
func (m *member) batch(p []byte, now time.Time) {
	if m.track.next == 0 {
		return // batches come only after joined
	}
	m.st.inc(cFrames)
	before := m.track
	var ok bool
	if m.spec.sampled {
		ok = m.timeBatch(p, now)
	} else {
		ok = m.countBatch(p)
	}
	if !ok {
		m.st.inc(cBadFrames)
	}
	m.account(&before, now)
}

// countBatch walks the batch for its seqs only.
func (m *member) countBatch(p []byte) bool {
	seqs, ok := m.scan.seqs(p, m.fi.msgs, m.seqs[:0])
	m.seqs = seqs
	for _, s := range seqs {
		m.track.observe(s)
	}
	return ok
}

// timeBatch decodes every message in full and records the latency of
// those sent inside the window.
func (m *member) timeBatch(p []byte, now time.Time) bool {
	sc := &m.scan
	sc.Reset(p)
	sc.SetPos(m.fi.msgs)
	n := sc.ArrayLen()
	m.lats = m.lats[:0]
	for k := 0; k < n && !sc.Bad(); k++ {
		msg := &m.msg
		if !sc.message(msg) {
			break
		}
		if !m.track.observe(msg.seq) {
			continue
		}
		sent, err := strconv.ParseInt(string(msg.sent), 10, 64) // no allocation: the conversion does not escape
		if err != nil || len(msg.body) != m.w.cfg.MessageSize || msg.ts <= 0 || len(msg.from) == 0 {
			m.st.inc(cBadMessages)
			continue
		}
		if m.w.inWindow(sent) {
			m.lats = append(m.lats, (now.UnixNano()-sent)/1000)
		}
	}
	if len(m.lats) > 0 {
		m.st.latency.record(m.idx, m.lats)
	}
	return !sc.Bad()
}

// account adds what the tracker learned since before to the counters.
func (m *member) account(before *seqTracker, now time.Time) {
	st, t := m.st, &m.track
	if n := t.received - t.resumed - (before.received - before.resumed); n > 0 {
		st.add(cDeliveries, n)
		if m.w.inWindow(now.UnixNano()) {
			st.add(cDeliveriesWindow, n)
		}
	}
	addDelta(st, cResumed, t.resumed, before.resumed)
	addDelta(st, cLost, t.lost, before.lost)
	addDelta(st, cDups, t.dups, before.dups)
	addDelta(st, cGapMsgs, t.gapMsgs, before.gapMsgs)
	m.last.Store(t.last())
}

func addDelta(st *stats, k counter, now, before int64) {
	if now != before {
		st.add(k, now-before)
	}
}

// joined starts or resumes the member's stream.
func (m *member) joined(p []byte, fi *frameInfo) {
	if fi.ref == 0 || fi.ref != m.joinRef.Load() {
		return
	}
	seq, gap := fi.seq, fi.gap
	var hist []uint64
	if fi.msgs >= 0 {
		hist, _ = m.scan.seqs(p, fi.msgs, m.seqs[:0])
		m.seqs = hist
	}
	before := m.track
	m.track.joined(seq, gap, m.resume, hist)
	m.account(&before, time.Time{})
	if !m.resume {
		m.st.inc(cJoined)
	}
	m.reply(proto.TJoined)
}

func (m *member) helloFrame(p []byte) {
	if m.hello {
		return
	}
	m.hello = true
	m.st.add(cOpen, 1)
	if !m.resume {
		m.st.inc(cConnected)
	}
	if m.spec.publisher {
		m.w.noteHello(p)
	}
	m.reply(proto.THello)
}

// acked records an ack: the room's highest acknowledged seq, and for
// sends inside the window, the time to the ack.
func (m *member) acked(fi *frameInfo) {
	m.st.inc(cAcked)
	if m.spec.room >= 0 && fi.seq > 0 {
		m.w.noteAck(m.spec.room, fi.seq)
	}
	if len(m.acks) == 0 || fi.ref == m.joinRef.Load() {
		return
	}
	slot := &m.acks[fi.ref%uint64(len(m.acks))]
	if sent := slot.ts.Load(); slot.ref.Load() == fi.ref && m.w.inWindow(sent) {
		m.st.ack.record((time.Now().UnixNano() - sent) / 1000)
	}
}

func (m *member) errorFrame(fi *frameInfo) {
	code := string(fi.code)
	m.st.count(m.st.errors, code)
	if fi.ref != 0 && fi.ref == m.joinRef.Load() {
		m.reply("error:" + code)
	}
}

// reply tells connect what the reader saw; it never blocks.
func (m *member) reply(r string) {
	select {
	case m.replies <- r:
	default:
	}
}
