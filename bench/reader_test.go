package bench

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/roomcast/roomcast/relay/proto"
)

// TestFrameReader feeds frames of every size class, a ping between two
// fragments, and a frame bigger than the borrowed buffer, in odd-sized
// writes, and checks each message comes out whole.
func TestFrameReader(t *testing.T) {
	var stream []byte
	var want [][]byte
	add := func(n int) {
		p := bytes.Repeat([]byte{byte(n)}, n)
		stream = proto.AppendFrame(stream, ws.OpBinary, p)
		want = append(want, p)
	}
	for _, n := range []int{0, 5, 125, 126, 2000, 3000, 65535, 65536, 100, bigRead + 10, 7} {
		add(n)
	}
	frag := func(fin bool, op ws.OpCode, p []byte) {
		h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))}
		var b bytes.Buffer
		_ = ws.WriteHeader(&b, h)
		stream = append(append(stream, b.Bytes()...), p...)
	}
	frag(false, ws.OpText, []byte("hel"))
	frag(true, ws.OpPing, []byte("p"))
	frag(true, ws.OpContinuation, []byte("lo"))
	want = append(want, []byte("p"), []byte("hello"))
	add(9)

	client, server := net.Pipe()
	go func() {
		for b := stream; len(b) > 0; {
			n := min(len(b), 1000+len(b)%777)
			if _, err := server.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
		server.Close()
	}()
	var f frameReader
	f.reset(client, nil)
	for i, w := range want {
		_, p, err := f.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(p, w) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(p), len(w))
		}
	}
	if _, _, err := f.next(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
	if len(f.buf) != initialRead {
		t.Errorf("reader keeps a %d-byte buffer, want its own %d", len(f.buf), initialRead)
	}
}
