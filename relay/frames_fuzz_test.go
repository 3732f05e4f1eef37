package relay

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
		got, gn, err := parseHeader(b)
		if err != nil || gn != n || got != h {
			t.Errorf("parseHeader(% x) = %+v, %d, %v; want %+v, %d, nil", b, got, gn, err, h, n)
			return
		}
		if err := checkHeader(got); err != nil {
			t.Errorf("checkHeader(%+v) = %v, want nil", got, err)
		}
		for k := range n {
			if _, kn, err := parseHeader(b[:k]); err != errNeedMore || kn != 0 {
				t.Errorf("parseHeader(% x) (the first %d bytes of %d) = %d, %v; want errNeedMore", b[:k], k, n, kn, err)
			}
		}
	}
	// bad: a header that parses (to h, n bytes) but checkHeader refuses.
	bad := func(h ws.Header, n int, want error) {
		t.Helper()
		b := wsHeader(t, h)
		got, gn, err := parseHeader(b)
		if err != nil || gn != n || got != h {
			t.Errorf("parseHeader(% x) = %+v, %d, %v; want %+v, %d, nil", b, got, gn, err, h, n)
			return
		}
		if err := checkHeader(got); err != want {
			t.Errorf("checkHeader(%+v) = %v, want %v", got, err, want)
		}
	}
	// fail: bytes that parseHeader itself refuses.
	fail := func(b []byte, want error) {
		t.Helper()
		if _, n, err := parseHeader(b); err != want || n != 0 {
			t.Errorf("parseHeader(% x) = %d, %v; want 0, %v", b, n, err, want)
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
	if h, n, err := parseHeader(b); err != nil || n != 8 || h.Length != 5 || checkHeader(h) != nil {
		t.Errorf("non-minimal 16-bit length: %+v, %d, %v", h, n, err)
	}

	// Unmasked client frames parse, and are refused.
	bad(ws.Header{Fin: true, OpCode: ws.OpText, Length: 5}, 2, errUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 126}, 4, errUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 65536}, 10, errUnmasked)
	bad(ws.Header{Fin: true, OpCode: ws.OpPing}, 2, errUnmasked)
	bad(ws.Header{OpCode: ws.OpContinuation}, 2, errUnmasked)

	// RSV bits, checked first.
	for _, rsv := range []byte{1, 2, 4, 7} {
		bad(ws.Header{Fin: true, Rsv: rsv, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 1}, 6, errReserved)
		bad(ws.Header{Fin: true, Rsv: rsv, OpCode: ws.OpText, Length: 1}, 2, errReserved)
		bad(ws.Header{Rsv: rsv, OpCode: 0xb, Masked: true, Mask: mask, Length: 300}, 8, errReserved)
	}

	// Reserved opcodes.
	for op := ws.OpCode(3); op <= 7; op++ {
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, errOpcode)
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 1000}, 8, errOpcode)
	}
	for op := ws.OpCode(0xb); op <= 0xf; op++ {
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, errOpcode)
		// A reserved control opcode that is also fragmented or too long
		// gets errControl: either way the close code is 1002.
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 1}, 6, errControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 126}, 8, errControl)
	}

	// Control frames: fragmented, or over 125 bytes.
	for _, op := range []ws.OpCode{ws.OpClose, ws.OpPing, ws.OpPong} {
		bad(ws.Header{OpCode: op, Masked: true, Mask: mask, Length: 0}, 6, errControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 126}, 8, errControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 65535}, 8, errControl)
		bad(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: 65536}, 14, errControl)
	}

	// A 64-bit length with its most significant bit set.
	fail([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, errLengthMSB)
	fail([]byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, errLengthMSB)
	fail([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, errLengthMSB) // found before the mask is there

	// Too few bytes for the header.
	fail(nil, errNeedMore)
	fail([]byte{}, errNeedMore)
	fail([]byte{0x81}, errNeedMore)
	fail([]byte{0x81, 0x80}, errNeedMore)                                     // mask missing
	fail([]byte{0x81, 0x85, 1, 2, 3}, errNeedMore)                            // mask cut
	fail([]byte{0x81, 126, 0}, errNeedMore)                                   // 16-bit length cut
	fail([]byte{0x81, 0x80 | 126, 1, 0, 1, 2, 3}, errNeedMore)                // mask cut after 16-bit length
	fail([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1}, errNeedMore)                 // 64-bit length cut
	fail([]byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0}, errNeedMore)              // MSB set, but the length is not all there
	fail([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2}, errNeedMore) // mask cut after 64-bit length
}

// FuzzParseHeader checks parseHeader and checkHeader against gobwas/ws on
// any bytes. Seeds are in testdata/fuzz/FuzzParseHeader.
//
//	go test -run XXX -fuzz FuzzParseHeader -fuzztime 20s ./relay/
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1})
	f.Add([]byte{0x82, 0xfe, 0x01, 0x2c, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseHeader(b)
		switch err {
		case nil:
		case errNeedMore, errLengthMSB:
			if n != 0 {
				t.Fatalf("parseHeader(% x) = %d, %v: size with an error", b, n, err)
			}
			// gobwas cannot read it either.
			_, rerr := ws.ReadHeader(bytes.NewReader(b))
			if rerr == nil {
				t.Fatalf("parseHeader(% x) = %v, but ws.ReadHeader reads it", b, err)
			}
			if err == errNeedMore && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
				t.Fatalf("parseHeader(% x) = errNeedMore, but ws.ReadHeader says %v", b, rerr)
			}
			// A length with its MSB set stays refused, whatever follows.
			if err == errLengthMSB {
				if _, _, err2 := parseHeader(append(bytes.Clone(b), make([]byte, 14)...)); err2 != errLengthMSB {
					t.Fatalf("parseHeader(% x) = errLengthMSB, but with more bytes %v", b, err2)
				}
			}
			return
		default:
			t.Fatalf("parseHeader(% x): unexpected error %v", b, err)
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
			t.Fatalf("parseHeader(% x) = size %d, want %d", b, n, want)
		}
		// ... every shorter prefix needs more, ...
		for k := range n {
			if _, kn, err := parseHeader(b[:k]); err != errNeedMore || kn != 0 {
				t.Fatalf("parseHeader(% x) = %d, %v, but the whole header (%d bytes) parses; want errNeedMore", b[:k], kn, err, n)
			}
		}
		// ... what follows the header does not matter, ...
		h2, n2, err2 := parseHeader(append(bytes.Clone(b[:n]), 0xff, 0xff))
		if h2 != h || n2 != n || err2 != nil {
			t.Fatalf("parseHeader(% x) depends on the bytes after the header", b)
		}
		// ... and gobwas reads the same header from the same bytes.
		r := bytes.NewReader(b)
		wh, werr := ws.ReadHeader(r)
		if werr != nil {
			t.Fatalf("parseHeader(% x) = %+v, but ws.ReadHeader: %v", b, h, werr)
		}
		if wh.Fin != h.Fin || wh.Rsv != h.Rsv || wh.OpCode != h.OpCode || wh.Masked != h.Masked ||
			wh.Mask != h.Mask || wh.Length != h.Length {
			t.Fatalf("parseHeader(% x) = %+v, ws.ReadHeader = %+v", b, h, wh)
		}
		if used := len(b) - r.Len(); used != n {
			t.Fatalf("parseHeader(% x) used %d bytes, ws.ReadHeader %d", b, n, used)
		}
		if h.Length < 0 {
			t.Fatalf("parseHeader(% x): negative length %d", b, h.Length)
		}

		// checkHeader agrees with RFC 6455 as gobwas reads it for a
		// server: accepted iff ws.CheckHeader accepts it in one of the two
		// fragmentation states (continuations are the session's business).
		cerr := checkHeader(h)
		ours := map[error]bool{nil: true, errReserved: true, errUnmasked: true, errOpcode: true, errControl: true}
		if !ours[cerr] {
			t.Fatalf("checkHeader(%+v): unexpected error %v", h, cerr)
		}
		gerr1 := ws.CheckHeader(h, ws.StateServerSide)
		gerr2 := ws.CheckHeader(h, ws.StateServerSide|ws.StateFragmented)
		if gobwasOK := gerr1 == nil || gerr2 == nil; (cerr == nil) != gobwasOK {
			t.Fatalf("checkHeader(%+v) = %v, ws.CheckHeader = %v / %v (fragmented)", h, cerr, gerr1, gerr2)
		}
		if cerr == nil {
			switch {
			case h.Rsv != 0, !h.Masked,
				h.OpCode.IsControl() && (!h.Fin || h.Length > 125),
				h.OpCode.IsReserved():
				t.Fatalf("checkHeader accepts %+v", h)
			}
		}
		if errors.Is(cerr, errReserved) != (h.Rsv != 0) {
			t.Fatalf("checkHeader(%+v) = %v", h, cerr)
		}
	})
}
