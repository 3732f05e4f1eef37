package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// metaTS is the meta key carrying a message's send time, Unix nanoseconds.
const metaTS = "bench_ts"

var errNoHello = errors.New("bench: no hello from the relay")

// member is one client connection and its membership of one room.
type member struct {
	// Static after newWorker.
	w    *worker
	idx  int
	node int    // index of its relay in Config.URL
	st   *stats // its relay's: the worker's totals are their sum
	spec memberSpec
	room string // "" without a room
	user string // token subject
	url  string // to dial, with the token

	// Set by connect before the reader starts; read-only while it runs.
	conn    net.Conn
	done    chan struct{} // closed when the reader exits
	replies chan string   // "hello", "joined", or "error:<code>", from the reader to connect
	resume  bool          // this connection's join carries since
	since   uint64        // ... this since: the last seq taken before

	// Owned by the reader goroutine (and by connect while no reader runs).
	in    frameReader
	track seqTracker
	scan  scanner
	fi    frameInfo
	seqs  []uint64 // scratch
	lats  []int64  // scratch, microseconds
	msg   message  // scratch of the sampled path
	hello bool

	// Atomic.
	last    atomic.Uint64 // track.last(), for the drain
	joinRef atomic.Uint64 // ref of the join in flight
	closing atomic.Bool   // the bench is closing this connection
	live    atomic.Bool   // connected (and joined, with a room) and not ended
	dropped atomic.Bool   // the connection ended without the bench closing it

	// Guarded by wmu.
	wmu  sync.Mutex
	wbuf []byte
	pbuf []byte
	rng  uint32
	ref  uint64
	acks []ackSlot // publishers: send times by ref
}

// ackSlot remembers when the send with ref was written.
type ackSlot struct {
	ref atomic.Uint64
	ts  atomic.Int64
}

// connect dials, waits for hello, and joins the member's room (with since
// if resume). It returns when the member is joined or has failed.
func (m *member) connect(ctx context.Context, resume bool) error {
	if err := m.handshake(ctx, resume); err != nil {
		return m.dialFailed(err, resume)
	}
	if m.spec.room >= 0 {
		if err := m.enter(ctx, resume); err != nil {
			m.abort()
			return m.joinFailed(err, resume)
		}
	}
	m.live.Store(true)
	return nil
}

// handshake opens the connection and waits for hello.
func (m *member) handshake(ctx context.Context, resume bool) error {
	hist := m.st.handshake
	if resume {
		hist = m.st.reHandshake
	} else {
		m.st.inc(cDialed)
	}
	t0 := time.Now()
	conn, br, err := m.w.dial(ctx, m)
	if err != nil {
		return err
	}
	hist.record(time.Since(t0).Microseconds())
	m.start(conn, br, resume)
	if err := m.await(ctx, "hello", m.w.cfg.DialTimeout); err != nil {
		m.abort()
		return err
	}
	return nil
}

// enter joins the member's room and waits for joined.
func (m *member) enter(ctx context.Context, resume bool) error {
	hist := m.st.join
	if resume {
		hist = m.st.reJoin
	}
	t0 := time.Now()
	if err := m.join(resume); err != nil {
		return err
	}
	if err := m.await(ctx, "joined", m.w.cfg.JoinTimeout); err != nil {
		return err
	}
	hist.record(time.Since(t0).Microseconds())
	return nil
}

// dialFailed and joinFailed count first connections only; the storm counts
// failed reconnects itself.
func (m *member) dialFailed(err error, resume bool) error {
	if !resume {
		m.st.inc(cDialFailed)
	}
	m.st.count(m.st.dialErrors, dialCause(err))
	return fmt.Errorf("cannot connect: %w", err)
}

func (m *member) joinFailed(err error, resume bool) error {
	if !resume {
		m.st.inc(cJoinFailed)
	}
	return fmt.Errorf("cannot join %s: %w", m.room, err)
}

// start runs the reader of a fresh connection.
func (m *member) start(conn net.Conn, br *bufio.Reader, resume bool) {
	m.conn, m.resume, m.since = conn, resume, m.track.last()
	m.in.reset(conn, br)
	m.in.z = m.w.cfg.Compress // dial made sure the relay agreed
	m.done, m.replies = make(chan struct{}), make(chan string, 4)
	m.hello = false
	m.closing.Store(false)
	m.dropped.Store(false)
	go m.read()
}

// await waits for the reader to report want.
func (m *member) await(ctx context.Context, want string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-m.replies:
		if r != want {
			return fmt.Errorf("got %s, want %s", r, want)
		}
		return nil
	case <-m.done:
		if want == "hello" {
			return errNoHello
		}
		return errors.New("connection closed")
	case <-t.C:
		return fmt.Errorf("no %s within %v: %w", want, timeout, errTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errTimeout is a net.Error, so that dialCause names it "timeout".
var errTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// abort closes a connection that failed during connect.
func (m *member) abort() {
	m.closing.Store(true)
	_ = m.conn.Close()
	<-m.done
}

// join writes the join frame: {t, ref, room, since?}.
func (m *member) join(resume bool) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.ref++
	m.joinRef.Store(m.ref)
	p := proto.AppendMapHeader(m.pbuf[:0], 3+b2i(resume))
	p = proto.AppendString(proto.AppendString(p, "t"), proto.TJoin)
	p = proto.AppendUint(proto.AppendString(p, "ref"), m.ref)
	p = proto.AppendString(proto.AppendString(p, "room"), m.room)
	if resume {
		p = proto.AppendUint(proto.AppendString(p, "since"), m.since)
	}
	m.pbuf = p
	return m.writeLocked(ws.OpBinary, p)
}

// publish writes one send frame stamped with now: {t, ref, room, body, meta}.
func (m *member) publish(now time.Time) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.ref++
	slot := &m.acks[m.ref%uint64(len(m.acks))]
	slot.ts.Store(now.UnixNano())
	slot.ref.Store(m.ref)
	p := proto.AppendMapHeader(m.pbuf[:0], 5)
	p = proto.AppendString(proto.AppendString(p, "t"), proto.TSend)
	p = proto.AppendUint(proto.AppendString(p, "ref"), m.ref)
	p = proto.AppendString(proto.AppendString(p, "room"), m.room)
	p = proto.AppendString(proto.AppendString(p, "body"), m.w.body)
	p = proto.AppendString(proto.AppendMapHeader(proto.AppendString(p, "meta"), 1), metaTS)
	n := len(p)
	p = strconv.AppendInt(append(p, 0), now.UnixNano(), 10)
	p[n] = 0xa0 | byte(len(p)-n-1) // fixstr header of the digits
	m.pbuf = p
	return m.writeLocked(ws.OpBinary, p)
}

// write sends one frame; any goroutine.
func (m *member) write(op ws.OpCode, payload []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	return m.writeLocked(op, payload)
}

func (m *member) writeLocked(op ws.OpCode, payload []byte) error {
	m.rng ^= m.rng << 13
	m.rng ^= m.rng >> 17
	m.rng ^= m.rng << 5
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], m.rng)
	m.wbuf = proto.AppendClientFrame(m.wbuf[:0], op, payload, mask)
	if _, err := m.conn.Write(m.wbuf); err != nil {
		return fmt.Errorf("cannot write: %w", err)
	}
	return nil
}

// close ends the connection the way a client does: a close frame, then the
// relay's answer (up to wait), then the socket. Call it with no other
// goroutine replacing the connection.
func (m *member) close(wait time.Duration) {
	if m.conn == nil {
		return
	}
	select {
	case <-m.done:
		return // already ended
	default:
	}
	m.closing.Store(true)
	_ = m.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	t := time.NewTimer(wait)
	select {
	case <-m.done:
	case <-t.C:
	}
	t.Stop()
	_ = m.conn.Close()
	<-m.done
}

// read is the connection's reader goroutine.
func (m *member) read() {
	defer close(m.done)
	defer m.ended()
	for {
		op, payload, err := m.in.next()
		if err == errBadDeflate {
			m.st.inc(cBadFrames)
			continue
		}
		if err != nil {
			if !m.closing.Load() && m.hello {
				m.st.count(m.st.closes, "eof")
			}
			return
		}
		now := time.Now()
		switch op {
		case ws.OpPing:
			_ = m.write(ws.OpPong, payload)
		case ws.OpClose:
			m.closeFrame(payload)
			return
		case ws.OpBinary, ws.OpText:
			m.countWire(payload, now.UnixNano())
			m.frame(payload, now)
		}
		if m.spec.stall && m.w.inWindow(now.UnixNano()) {
			m.st.inc(cStalled)
			<-m.w.stopRead
		}
	}
}

// ended accounts for a connection whose reader stopped.
func (m *member) ended() {
	m.live.Store(false)
	_ = m.conn.Close()
	if !m.hello {
		return
	}
	m.st.add(cOpen, -1)
	if !m.closing.Load() {
		m.dropped.Store(true)
		m.st.inc(cDropped)
	}
}

func (m *member) closeFrame(payload []byte) {
	if m.closing.Load() {
		return
	}
	code := "1005"
	if len(payload) >= 2 {
		code = strconv.Itoa(int(binary.BigEndian.Uint16(payload)))
	}
	m.st.count(m.st.closes, code)
	_ = m.write(ws.OpClose, payload[:min(len(payload), 2)])
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
