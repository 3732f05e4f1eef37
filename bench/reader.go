package bench

import (
	"bufio"
	"errors"
	"net"
	"sync"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// maxFrame bounds a server message the client accepts.
const maxFrame = 16 << 20

var errFrameLarge = errors.New("bench: server frame too large")

// frameReader reads server frames with as few read calls as it can: one
// read takes whatever the socket holds, often several frames, into a buffer
// that grows to the largest frame seen. Owned by the member's reader.
type frameReader struct {
	conn  net.Conn
	buf   []byte // len(buf) is its capacity in use
	r, w  int    // buf[r:w] is read but not yet parsed
	small []byte // the connection's own buffer; buf is a pooled big one while a big frame passes

	msg    []byte    // a fragmented message being put together
	msgOp  ws.OpCode // ... its opcode
	inMsg  bool
	msgOut bool // msg was returned by the last next; clear it

	z    bool            // the connection negotiated permessage-deflate (-compress): RSV1 may mark a message's first frame
	msgZ bool            // the message being put together is compressed
	wire int             // bytes on the wire (headers and payloads) of the message next returned last
	infl *proto.Inflater // holds the message next returned last, if inflated; back to inflaters on the next call
}

// initialRead is the buffer a fresh connection starts with. Bigger frames
// borrow a buffer of bigRead from bigBufs, given back once it is drained,
// so that 10 000 members do not each keep the largest batch they saw.
const (
	initialRead = 2048
	bigRead     = 128 << 10
)

var bigBufs = sync.Pool{New: func() any { b := make([]byte, bigRead); return &b }}

// reset starts reading conn; bytes the dialer already buffered in br come
// first.
func (f *frameReader) reset(conn net.Conn, br *bufio.Reader) {
	f.conn, f.r, f.w, f.inMsg, f.msg = conn, 0, 0, false, nil
	f.release()
	f.giveBack()
	if len(f.small) == 0 {
		f.small = make([]byte, initialRead)
	}
	f.buf = f.small
	if br != nil && br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		f.ensure(len(b))
		f.w = copy(f.buf, b)
	}
}

// next returns the next control frame or whole data message. The payload
// is valid until the next call.
func (f *frameReader) next() (ws.OpCode, []byte, error) {
	if f.msgOut {
		f.msg, f.msgOut = f.msg[:0], false
	}
	f.release()
	for {
		fin, op, z, payload, err := f.frame()
		if err != nil {
			return 0, nil, err
		}
		if op.IsControl() {
			return op, payload, nil
		}
		if op != ws.OpContinuation {
			f.wire, f.msgZ = 0, z
		}
		f.wire += len(payload) + proto.HeaderSize(len(payload))
		if fin && !f.inMsg && op != ws.OpContinuation {
			return f.whole(op, payload)
		}
		if op != ws.OpContinuation {
			f.msgOp, f.msg = op, f.msg[:0]
		}
		if f.inMsg = !fin; len(f.msg)+len(payload) > maxFrame {
			return 0, nil, errFrameLarge
		}
		f.msg = append(f.msg, payload...)
		if fin {
			f.msgOut = true
			return f.whole(f.msgOp, f.msg)
		}
	}
}

// frame returns the next frame, reading until the buffer holds it whole;
// z: RSV1 is set.
func (f *frameReader) frame() (fin bool, op ws.OpCode, z bool, payload []byte, err error) {
	for {
		hdr, n, err := f.header()
		if err != nil {
			return false, 0, false, nil, err
		}
		if hdr > 0 && f.w-f.r >= hdr+n {
			b := f.buf[f.r : f.r+hdr+n]
			f.r += hdr + n
			return b[0]&0x80 != 0, ws.OpCode(b[0] & 0x0f), b[0]&0x40 != 0, b[hdr:], nil
		}
		if f.r == f.w {
			f.giveBack() // the frame returned last is no longer used
		}
		if err := f.fill(hdr + n); err != nil {
			return false, 0, false, nil, err
		}
	}
}

// header parses the header at buf[r:] with proto.ParseHeader: its size
// and the payload's, or hdr 0 if it is not all there yet.
func (f *frameReader) header() (hdr, n int, err error) {
	h, hdr, err := proto.ParseHeader(f.buf[f.r:f.w])
	switch {
	case err == proto.ErrNeedMore:
		return 0, 0, nil
	case err == nil:
		if f.z && h.Rsv == rsv1 && !h.OpCode.IsControl() && h.OpCode != ws.OpContinuation {
			h.Rsv = 0 // a compressed message's first frame (RFC 7692)
		}
		err = proto.CheckServerHeader(h)
	}
	if err != nil {
		return 0, 0, err
	}
	if h.Length > maxFrame {
		return 0, 0, errFrameLarge
	}
	return hdr, int(h.Length), nil
}

// fill reads once from the connection, first making room for a frame of
// need bytes (0: unknown) at buf[r:].
func (f *frameReader) fill(need int) error {
	f.ensure(max(need, f.w-f.r+512))
	n, err := f.conn.Read(f.buf[f.w:])
	f.w += n
	if n > 0 {
		return nil
	}
	return err
}

// ensure makes buf[r:] able to hold size bytes, moving the unparsed bytes
// to the front and switching to a bigger buffer as needed.
func (f *frameReader) ensure(size int) {
	if len(f.buf)-f.r >= size {
		return
	}
	if size <= len(f.buf) {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
		return
	}
	var nb []byte
	if size <= bigRead && len(f.buf) < bigRead {
		nb = *bigBufs.Get().(*[]byte)
	} else {
		nb = make([]byte, max(size, 2*len(f.buf)))
	}
	f.w = copy(nb, f.buf[f.r:f.w])
	f.buf, f.r = nb, 0
}

// giveBack returns to the connection's own buffer once a bigger one is
// drained; a borrowed one goes back to the pool.
func (f *frameReader) giveBack() {
	if len(f.buf) <= len(f.small) || f.r != f.w {
		return
	}
	if len(f.buf) == bigRead {
		b := f.buf
		bigBufs.Put(&b)
	}
	f.buf, f.r, f.w = f.small, 0, 0
}
