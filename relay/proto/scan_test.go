package proto

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"
)

// TestSkipValuesDepth: values nested MaxDepth deep pass, one more fails,
// and so do cut values.
func TestSkipValuesDepth(t *testing.T) {
	nest := func(d int) []byte {
		b := bytes.Repeat([]byte{0x91}, d) // d arrays of one item
		return append(b, 0x01)
	}
	if b := nest(MaxDepth); SkipValues(b, 0, 1) != len(b) {
		t.Errorf("depth %d refused", MaxDepth)
	}
	if b := nest(MaxDepth + 1); SkipValues(b, 0, 1) != -1 {
		t.Errorf("depth %d accepted", MaxDepth+1)
	}
	if b := append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x90); SkipValues(b, 0, 1) != len(b) {
		t.Errorf("empty array at depth %d refused", MaxDepth)
	}
	v := map[string]any{"a": []any{1, "x", map[string]any{"k": 1.5}}, "b": []byte{1, 2}, "c": int64(-1 << 40)}
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := SkipValues(b, 0, 1); got != len(b) {
		t.Errorf("SkipValues = %d, want %d", got, len(b))
	}
	for k := range len(b) {
		if SkipValues(b[:k], 0, 1) != -1 {
			t.Errorf("SkipValues accepts the first %d bytes of %d", k, len(b))
		}
	}
}

// TestClientFrameReadBack: a masked client frame reads back through
// ReadHeader and passes CheckClientHeader, for each length class.
func TestClientFrameReadBack(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte{'x'}, n)
		f := AppendClientFrame(nil, ws.OpText, p, [4]byte{9, 8, 7, 6})
		br := bufio.NewReaderSize(bytes.NewReader(f), 16)
		h, err := ReadHeader(br)
		if err != nil || CheckClientHeader(h) != nil || h.Length != int64(n) || CheckServerHeader(h) != ErrMasked {
			t.Fatalf("n=%d: %+v %v", n, h, err)
		}
		got := make([]byte, n)
		if _, err := br.Read(got); n > 0 && err != nil {
			t.Fatal(err)
		}
	}
	s := AppendFrame(nil, ws.OpBinary, []byte("hi"))
	h, err := ReadHeader(bufio.NewReader(bytes.NewReader(s)))
	if err != nil || CheckServerHeader(h) != nil || h.Length != 2 {
		t.Errorf("server frame: %+v %v", h, err)
	}
}
