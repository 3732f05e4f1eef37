package proto

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

func chat(n int) []byte {
	s := strings.Repeat("gg that was close lol nice shot, who is streaming next? ", n/50+1)
	return []byte(s[:n])
}

// A compressed frame is the same frame with RSV1 set and its payload
// deflated without context: wsflate (a client) reads it back.
func TestDeflaterAppendFrame(t *testing.T) {
	d := NewDeflater()
	for _, n := range []int{MinDeflate, 200, 5000, 70000} {
		payload := chat(n)
		frame := AppendFrame(nil, ws.OpText, payload)
		for round := range 2 { // no context: the same bytes each time
			z := d.AppendFrame([]byte("prefix"), frame)
			if string(z[:6]) != "prefix" {
				t.Fatal("dst not kept")
			}
			z = z[6:]
			h, hn, err := ParseHeader(z)
			if err != nil || !h.Fin || h.OpCode != ws.OpText || h.Rsv != 4 || int(h.Length) != len(z)-hn {
				t.Fatalf("n=%d: header %+v (%v)", n, h, err)
			}
			if len(z) >= len(frame) {
				t.Fatalf("n=%d: compressed %d >= plain %d", n, len(z), len(frame))
			}
			f, err := wsflate.DecompressFrame(ws.Frame{Header: h, Payload: z[hn:]})
			if err != nil || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("n=%d round %d: wsflate reads %d bytes (%v)", n, round, len(f.Payload), err)
			}
			in := NewInflater()
			got, err := in.Inflate(z[hn:], n)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("n=%d: Inflate %d bytes, %v", n, len(got), err)
			}
		}
	}
	// Left as they are: short, control, incompressible, not one frame.
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(i*7919>>3 ^ i*31)
	}
	for _, f := range [][]byte{AppendFrame(nil, ws.OpBinary, chat(MinDeflate-1)), AppendFrame(nil, ws.OpPing, chat(100)),
		AppendFrame(nil, ws.OpBinary, random[:200]), AppendFrame(nil, ws.OpBinary, chat(200))[:50], {0x82}} {
		if got := d.AppendFrame(nil, f); !bytes.Equal(got, f) {
			t.Errorf("frame % x... changed", f[:min(len(f), 4)])
		}
	}
}

// Inflate stops past the cap: a bomb costs at most max+1 bytes of output.
func TestInflaterCap(t *testing.T) {
	d := NewDeflater()
	payload := bytes.Repeat([]byte{'a'}, 1<<20)
	z := append([]byte(nil), d.Deflate(payload)...)
	in := NewInflater()
	if _, err := in.Inflate(z, 1<<20-1); err != ErrInflateTooLarge {
		t.Fatalf("cap-1: %v, want ErrInflateTooLarge", err)
	}
	if cap(in.out) > 4<<20 {
		t.Fatalf("inflater grew to %d bytes", cap(in.out))
	}
	if got, err := in.Inflate(z, 1<<20); err != nil || len(got) != 1<<20 {
		t.Fatalf("exactly the cap: %d bytes, %v", len(got), err)
	}
	if _, err := in.Inflate([]byte{0xff, 0xff, 0xff}, 100); err != ErrInflate {
		t.Fatalf("garbage: %v, want ErrInflate", err)
	}
	// A message whose sender ended the stream (BFINAL) inflates too.
	if got, err := in.Inflate([]byte{0x01, 0x02, 0x00, 0xfd, 0xff, 'h', 'i'}, 100); err != nil || string(got) != "hi" {
		t.Fatalf("final stored block: %q, %v", got, err)
	}
	in.Shrink(0)
	if in.out != nil {
		t.Fatal("Shrink kept the buffer")
	}
}

// Steady use allocates nothing.
func TestDeflateNoAllocs(t *testing.T) {
	d, in := NewDeflater(), NewInflater()
	frame := AppendFrame(nil, ws.OpBinary, chat(2000))
	var dst []byte
	allocs := testing.AllocsPerRun(50, func() {
		dst = d.AppendFrame(dst[:0], frame)
		h, hn, _ := ParseHeader(dst)
		if _, err := in.Inflate(dst[hn:hn+int(h.Length)], 4096); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}

// RSV1 is allowed on the first frame of a data message only.
func TestCheckClientHeaderDeflate(t *testing.T) {
	h := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Rsv: ws.Rsv(true, false, false)}
	if z, err := CheckClientHeaderDeflate(h); !z || err != nil {
		t.Errorf("text with RSV1: %v %v", z, err)
	}
	h.Rsv = 0
	if z, err := CheckClientHeaderDeflate(h); z || err != nil {
		t.Errorf("text without RSV1: %v %v", z, err)
	}
	for _, bad := range []ws.Header{
		{Fin: true, OpCode: ws.OpPing, Masked: true, Rsv: ws.Rsv(true, false, false)},
		{Fin: true, OpCode: ws.OpContinuation, Masked: true, Rsv: ws.Rsv(true, false, false)},
		{Fin: true, OpCode: ws.OpBinary, Masked: true, Rsv: ws.Rsv(true, true, false)},
		{Fin: true, OpCode: ws.OpBinary, Masked: false, Rsv: ws.Rsv(true, false, false)},
	} {
		if _, err := CheckClientHeaderDeflate(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := CheckClientHeader(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Rsv: ws.Rsv(true, false, false)}); err != ErrReserved {
		t.Errorf("RSV1 without the extension: %v", err)
	}
}
