package proto

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// wsHeader is h as ws.WriteHeader writes it, followed by extra.
func wsHeader(t testing.TB, h ws.Header, extra ...byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ws.WriteHeader(&buf, h); err != nil {
		t.Fatalf("ws.WriteHeader(%+v): %v", h, err)
	}
	return append(buf.Bytes(), extra...)
}

func TestParseHeader(t *testing.T) {
	mask := [4]byte{0xde, 0xad, 0xbe, 0xef}
	// ok: a header that parses and passes checkHeader, with its size.
	ok := func(h ws.Header, n int, extra ...byte) {
		t.Helper()
		b := wsHeader(t, h, extra...)
		got, gn, err := ParseHeader(b)
		if err != nil || gn != n || got != h {
			t.Errorf("ParseHeader(% x) = %+v, %d, %v; want %+v, %d, nil", b, got, gn, err, h, n)
			return
		}
		if err := CheckClientHeader(got); err != nil {
			t.Errorf("CheckClientHeader(%+v) = %v, want nil", got, err)
		}
		for k := range n {
			if _, kn, err := ParseHeader(b[:k]); err != ErrNeedMore || kn != 0 {
				t.Errorf("ParseHeader(% x) (the first %d bytes of %d) = %d, %v; want ErrNeedMore", b[:k], k, n, kn, err)
			}
		}
	}
	// bad: a header that parses (to h, n bytes) but CheckClientHeader refuses.
	bad := func(h ws.Header, n int, want error) {
		t.Helper()
		b := wsHeader(t, h)
		got, gn, err := ParseHeader(b)
		if err != nil || gn != n || got != h {
			t.Errorf("ParseHeader(% x) = %+v, %d, %v; want %+v, %d, nil", b, got, gn, err, h, n)
			return
		}
		if err := CheckClientHeader(got); err != want {
			t.Errorf("CheckClientHeader(%+v) = %v, want %v", got, err, want)
		}
	}
	// fail: bytes that ParseHeader itself refuses.
	fail := func(b []byte, want error) {
		t.Helper()
		if _, n, err := ParseHeader(b); err != want || n != 0 {
			t.Errorf("ParseHeader(% x) = %d, %v; want 0, %v", b, n, err, want)
		}
	}

	// Every length class, masked, each data and control opcode.
	for _, op := range []ws.OpCode{ws.OpContinuation, ws.OpText, ws.OpBinary} {
		for _, fin := range []bool{true, false} {
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 0}, 6)
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 125}, 6)
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 126}, 8)
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 65535}, 8)
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 65536}, 14)
			ok(ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: 1<<63 - 1}, 14)
		}
	}
	for _, op := range []ws.OpCode{ws.OpClose, ws.OpPing, ws.OpPong} {
		ok(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 0}, 6)
		ok(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 125}, 6)
	}
	// The payload after the header is not the header's business.
	ok(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 3}, 6, 1, 2, 3, 4, 5)
	ok(ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{}, Length: 300}, 8, make([]byte, 300)...)
	// A length in more bytes than needed is accepted, as gobwas does.
	b := []byte{0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4}
	if h, n, err := ParseHeader(b); err != nil || n != 8 || h.Length != 5 || CheckClientHeader(h) != nil {
		t.Errorf("non-minimal 16-bit length: %+v, %d, %v", h, n, err)
	}

	// Unmasked client frames parse, and are refused.
	bad(ws.Header{Fin: true, OpCode: ws.OpText, Length: 5}, 2, ErrUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 126}, 4, ErrUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 65536}, 10, ErrUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpPing}, 2, ErrUnmasked)
	bad(ws.Header{OpCode: ws.OpContinuation}, 2, ErrUnmasked)

	// RSV bits, checked first.
	for _, rsv := range []byte{1, 2, 4, 7} {
		bad(ws.Header{Fin: true, Rsv: rsv, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 1}, 6, ErrReserved)
		bad(ws.Header{Fin: true, Rsv: rsv, OpCode: ws.OpText, Length: 1}, 2, ErrReserved)
		bad(ws.Header{Rsv: rsv, OpCode: 0xb, Masked: true, Mask: mask, Length: 300}, 8, ErrReserved)
	}

	// Reserved opcodes.
	for op := ws.OpCode(3); op <= 7; op++ {
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, ErrOpcode)
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 1000}, 8, ErrOpcode)
	}
	for op := ws.OpCode(0xb); op <= 0xf; op++ {
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, ErrOpcode)
		// A reserved control opcode that is also fragmented or too long
		// gets ErrControl: either way the close code is 1002.
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, ErrControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 126}, 8, ErrControl)
	}

	// Control frames: fragmented, or over 125 bytes.
	for _, op := range []ws.OpCode{ws.OpClose, ws.OpPing, ws.OpPong} {
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 0}, 6, ErrControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 126}, 8, ErrControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 65535}, 8, ErrControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 65536}, 14, ErrControl)
	}

	// A 64-bit length with its most significant bit set.
	fail([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, ErrLengthMSB)
	fail([]byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrLengthMSB)
	fail([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrLengthMSB) // found before the mask is there

	// Too few bytes for the header.
	fail(nil, ErrNeedMore)
	fail([]byte{}, ErrNeedMore)
	fail([]byte{0x81}, ErrNeedMore)
	fail([]byte{0x81, 0x80}, ErrNeedMore)                                     // mask missing
	fail([]byte{0x81, 0x85, 1, 2, 3}, ErrNeedMore)                            // mask cut
	fail([]byte{0x81, 126, 0}, ErrNeedMore)                                   // 16-bit length cut
	fail([]byte{0x81, 0x80 | 126, 1, 0, 1, 2, 3}, ErrNeedMore)                // mask cut after 16-bit length
	fail([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1}, ErrNeedMore)                 // 64-bit length cut
	fail([]byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0}, ErrNeedMore)              // MSB set, but the length is not all there
	fail([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2}, ErrNeedMore) // mask cut after 64-bit length
}

// FuzzParseHeader checks ParseHeader and CheckClientHeader against gobwas/ws on
// any bytes. Seeds are in testdata/fuzz/FuzzParseHeader.
//
//	go test -run XXX -fuzz FuzzParseHeader -fuzztime 20s ./relay/proto/
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1})
	f.Add([]byte{0x82, 0xfe, 0x01, 0x2c, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		switch err {
		case nil:
		case ErrNeedMore, ErrLengthMSB:
			if n != 0 {
				t.Fatalf("ParseHeader(% x) = %d, %v: size with an error", b, n, err)
			}
			// gobwas cannot read it either.
			_, rerr := ws.ReadHeader(bytes.NewReader(b))
			if rerr == nil {
				t.Fatalf("ParseHeader(% x) = %v, but ws.ReadHeader reads it", b, err)
			}
			if err == ErrNeedMore && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
				t.Fatalf("ParseHeader(% x) = ErrNeedMore, but ws.ReadHeader says %v", b, rerr)
			}
			// A length with its MSB set stays refused, whatever follows.
			if err == ErrLengthMSB {
				if _, _, err2 := ParseHeader(append(bytes.Clone(b), make([]byte, 14)...)); err2 != ErrLengthMSB {
					t.Fatalf("ParseHeader(% x) = ErrLengthMSB, but with more bytes %v", b, err2)
				}
			}
			return
		default:
			t.Fatalf("ParseHeader(% x): unexpected error %v", b, err)
		}

		// Success: the size is right for the second byte, ...
		want := 2
		switch b[1] & 0x7f {
		case 126:
			want = 4
		case 127:
			want = 10
		}
		if b[1]&0x80 != 0 {
			want += 4
		}
		if n != want || n > len(b) {
			t.Fatalf("ParseHeader(% x) = size %d, want %d", b, n, want)
		}
		// ... every shorter prefix needs more, ...
		for k := range n {
			if _, kn, err := ParseHeader(b[:k]); err != ErrNeedMore || kn != 0 {
				t.Fatalf("ParseHeader(% x) = %d, %v, but the whole header (%d bytes) parses; want ErrNeedMore", b[:k], kn, err, n)
			}
		}
		// ... what follows the header does not matter, ...
		h2, n2, err2 := ParseHeader(append(bytes.Clone(b[:n]), 0xff, 0xff))
		if h2 != h || n2 != n || err2 != nil {
			t.Fatalf("ParseHeader(% x) depends on the bytes after the header", b)
		}
		// ... and gobwas reads the same header from the same bytes.
		r := bytes.NewReader(b)
		wh, werr := ws.ReadHeader(r)
		if werr != nil {
			t.Fatalf("ParseHeader(% x) = %+v, but ws.ReadHeader: %v", b, h, werr)
		}
		if wh.Fin != h.Fin || wh.Rsv != h.Rsv || wh.OpCode != h.OpCode || wh.Masked != h.Masked ||
			wh.Mask != h.Mask || wh.Length != h.Length {
			t.Fatalf("ParseHeader(% x) = %+v, ws.ReadHeader = %+v", b, h, wh)
		}
		if used := len(b) - r.Len(); used != n {
			t.Fatalf("ParseHeader(% x) used %d bytes, ws.ReadHeader %d", b, n, used)
		}
		if h.Length < 0 {
			t.Fatalf("ParseHeader(% x): negative length %d", b, h.Length)
		}

		// CheckClientHeader agrees with RFC 6455 as gobwas reads it for a
		// server: accepted iff ws.CheckHeader accepts it in one of the two
		// fragmentation states (continuations are the session's business).
		cerr := CheckClientHeader(h)
		ours := map[error]bool{nil: true, ErrReserved: true, ErrUnmasked: true, ErrOpcode: true, ErrControl: true}
		if !ours[cerr] {
			t.Fatalf("CheckClientHeader(%+v): unexpected error %v", h, cerr)
		}
		gerr1 := ws.CheckHeader(h, ws.StateServerSide)
		gerr2 := ws.CheckHeader(h, ws.StateServerSide|ws.StateFragmented)
		if gobwasOK := gerr1 == nil || gerr2 == nil; (cerr == nil) != gobwasOK {
			t.Fatalf("CheckClientHeader(%+v) = %v, ws.CheckHeader = %v / %v (fragmented)", h, cerr, gerr1, gerr2)
		}
		if cerr == nil {
			switch {
			case h.Rsv != 0, !h.Masked,
				h.OpCode.IsControl() && (!h.Fin || h.Length > 125),
				h.OpCode.IsReserved():
				t.Fatalf("CheckClientHeader accepts %+v", h)
			}
		}
		if errors.Is(cerr, ErrReserved) != (h.Rsv != 0) {
			t.Fatalf("CheckClientHeader(%+v) = %v", h, cerr)
		}
		// CheckServerHeader, what a client applies, agrees with gobwas
		// reading as a client.
		serr := CheckServerHeader(h)
		gerr1 = ws.CheckHeader(h, ws.StateClientSide)
		gerr2 = ws.CheckHeader(h, ws.StateClientSide|ws.StateFragmented)
		if gobwasOK := gerr1 == nil || gerr2 == nil; (serr == nil) != gobwasOK {
			t.Fatalf("CheckServerHeader(%+v) = %v, ws.CheckHeader = %v / %v (fragmented)", h, serr, gerr1, gerr2)
		}
		if serr == nil && h.Masked {
			t.Fatalf("CheckServerHeader accepts masked %+v", h)
		}
	})
}
