package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// maxMessage bounds a server message the client accepts (a joined with a
// long history is the largest).
const maxMessage = 64 << 20

// writeTimeout bounds one write to the relay.
const writeTimeout = 10 * time.Second

// conn is one WebSocket connection. Its reader goroutine (Client.read)
// alone reads; writes take wmu; pending is shared by requesters and the
// reader.
type conn struct {
	nc    net.Conn
	br    *bufio.Reader
	json  bool
	hello Hello

	wmu  sync.Mutex
	wbuf []byte

	mu      sync.Mutex
	pending map[uint64]chan *in
	dead    chan struct{} // closed by fail
	err     error

	frag []byte // reader only: a fragmented message being put together
}

// dialConn opens a connection and reads its hello.
func dialConn(ctx context.Context, url, token string, o *Options) (*conn, error) {
	h := http.Header{}
	for k, v := range o.Header {
		h[k] = v
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	sub := proto.SubprotocolMsgpack
	if o.JSON {
		sub = proto.SubprotocolJSON
	}
	var refusal []byte
	d := ws.Dialer{
		Timeout:   o.DialTimeout,
		Protocols: []string{sub},
		Header:    ws.HandshakeHeaderHTTP(h),
		NetDial:   o.NetDial,
		OnStatusError: func(status int, reason []byte, resp io.Reader) {
			b, _ := io.ReadAll(io.LimitReader(resp, 4096))
			refusal = b
		},
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, &Error{Code: CodeRefused, Status: int(se), Message: httpReason(refusal)}
		}
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 16<<10)
	} else {
		// gobwas hands back its handshake reader; keep reading through it.
		br = bufio.NewReaderSize(br, 16<<10)
	}
	cn := &conn{nc: nc, br: br, json: o.JSON, pending: map[uint64]chan *in{}, dead: make(chan struct{})}
	_ = nc.SetReadDeadline(time.Now().Add(o.DialTimeout))
	var f in
	if err := cn.next(&f); err != nil {
		nc.Close()
		return nil, fmt.Errorf("roomcast: reading hello: %w", err)
	}
	if f.T != proto.THello {
		nc.Close()
		return nil, fmt.Errorf("roomcast: first frame is %q, not hello", f.T)
	}
	cn.hello = Hello{User: f.User, Name: f.Name, Anon: f.Anon, Role: f.Role, Limits: f.Limits, Node: f.Node}
	return cn, nil
}

// httpReason returns the body of a plain-text refusal, without the
// headers gobwas hands over with it.
func httpReason(b []byte) string {
	s := string(b)
	for i := 0; i+3 < len(s); i++ {
		if s[i:i+4] == "\r\n\r\n" {
			s = s[i+4:]
			break
		}
	}
	if len(s) > 200 {
		s = s[:200]
	}
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// next reads the next data message and decodes it into f. Pings are
// answered, pongs skipped; a close frame is answered and returned as an
// *Error with Code "closed". Reader only.
func (cn *conn) next(f *in) error {
	for {
		op, p, err := cn.message()
		if err != nil {
			return err
		}
		switch op {
		case ws.OpPing:
			if err := cn.write(ws.OpPong, p); err != nil {
				return err
			}
		case ws.OpPong:
		case ws.OpClose:
			code, reason := 1005, ""
			if len(p) >= 2 {
				code, reason = int(binary.BigEndian.Uint16(p)), string(p[2:])
			}
			echo := p
			if len(p) < 2 {
				echo = nil
			}
			_ = cn.write(ws.OpClose, echo[:min(len(echo), 2)])
			return closeError(code, reason)
		default:
			if op == ws.OpText && !utf8.Valid(p) {
				return errMalformed
			}
			return decode(cn.json, p, f)
		}
	}
}

// message reads one control frame or whole data message.
func (cn *conn) message() (ws.OpCode, []byte, error) {
	for {
		h, err := proto.ReadHeader(cn.br)
		if err == nil {
			err = proto.CheckServerHeader(h)
		}
		if err != nil {
			return 0, nil, err
		}
		if h.Length > maxMessage || int64(len(cn.frag))+h.Length > maxMessage {
			return 0, nil, errors.New("roomcast: server message too large")
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(cn.br, p); err != nil {
			return 0, nil, err
		}
		switch {
		case h.OpCode.IsControl():
			return h.OpCode, p, nil
		case h.OpCode == ws.OpContinuation:
			if cn.frag == nil {
				return 0, nil, errors.New("roomcast: continuation without a fragmented message")
			}
			cn.frag = append(cn.frag, p...)
			if h.Fin {
				m := cn.frag[1:]
				op := ws.OpCode(cn.frag[0])
				cn.frag = nil
				return op, m, nil
			}
		case !h.Fin:
			cn.frag = append([]byte{byte(h.OpCode)}, p...)
		default:
			return h.OpCode, p, nil
		}
	}
}

// write sends one masked frame. Any goroutine.
func (cn *conn) write(op ws.OpCode, payload []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	cn.wbuf = proto.AppendClientFrame(cn.wbuf[:0], op, payload, mask)
	_ = cn.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := cn.nc.Write(cn.wbuf)
	if cap(cn.wbuf) > 64<<10 {
		cn.wbuf = nil
	}
	return err
}

// send encodes and writes one frame without waiting for a reply.
func (cn *conn) send(f *out) error {
	b, err := encode(cn.json, f)
	if err != nil {
		return err
	}
	op := ws.OpBinary
	if cn.json {
		op = ws.OpText
	}
	return cn.write(op, b)
}

// request sends f with ref and waits for the reply carrying it. An error
// reply is returned as *Error.
func (cn *conn) request(ctx context.Context, ref uint64, f *out) (*in, error) {
	f.Ref = ref
	ch := make(chan *in, 1)
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return nil, ErrDisconnected
	}
	cn.pending[ref] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, ref)
		cn.mu.Unlock()
	}()
	if err := cn.send(f); err != nil {
		cn.nc.Close() // a failed write leaves the stream unusable; the reader ends
		return nil, ErrDisconnected
	}
	select {
	case r := <-ch:
		if r.T == proto.TError {
			return nil, r.err()
		}
		return r, nil
	case <-cn.dead:
		return nil, ErrDisconnected
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reply hands f to the request waiting for its ref, if any. Reader only.
func (cn *conn) reply(f *in) {
	if f.Ref == 0 {
		return
	}
	cn.mu.Lock()
	ch := cn.pending[f.Ref]
	delete(cn.pending, f.Ref)
	cn.mu.Unlock()
	if ch != nil {
		ch <- f // buffered, one reply per ref
	}
}

// fail marks the connection dead: waiting requests get ErrDisconnected.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err == nil {
		cn.err = err
		close(cn.dead)
	}
}
