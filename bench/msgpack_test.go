package bench

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

func TestAppenders(t *testing.T) {
	f := func(s string, u uint64, n int) {
		t.Helper()
		keys := make([]string, n)
		b := proto.AppendMapHeader(nil, n+2)
		b = proto.AppendString(proto.AppendString(b, "str"), s)
		b = proto.AppendUint(proto.AppendString(b, "u"), u)
		for i := range keys {
			keys[i] = string(rune('a'+i%26)) + string(rune('a'+i/26))
			b = proto.AppendUint(proto.AppendString(b, keys[i]), uint64(i))
		}
		var got map[string]any
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if got["str"] != s || toU64(got["u"]) != u || len(got) != n+2 {
			t.Errorf("got %v, want str=%q u=%d and %d keys", got, s, u, n+2)
		}
	}
	for _, n := range []int{0, 13, 40} {
		f("", 0, n)
		f("x", 127, n)
		f(string(make([]byte, 31)), 128, n)
		f(string(make([]byte, 200)), 255, n)
		f(string(make([]byte, 300)), 65535, n)
		f(string(make([]byte, 70000)), math.MaxUint32, n)
		f("y", math.MaxUint64, n)
	}
}

func toU64(v any) uint64 {
	switch x := v.(type) {
	case int8:
		return uint64(x)
	case int16:
		return uint64(x)
	case int32:
		return uint64(x)
	case int64:
		return uint64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint64:
		return x
	}
	return 1<<64 - 1
}

// TestScannerBatch parses batch and joined frames as the relay encodes them.
func TestScannerBatch(t *testing.T) {
	enc := proto.NewEncoder()
	var msgs [][]byte
	for _, seq := range []uint64{1, 127, 128, 70000, 1 << 33} {
		m := proto.Message{Seq: seq, TS: 1700000000000, From: "u", Name: "U", Body: "hi",
			Badges: []string{"b"}, Meta: map[string]string{metaTS: "123"}}
		p, err := enc.Payload(proto.Msgpack, &m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, append([]byte(nil), p...))
	}
	frame := enc.Batch(proto.Msgpack, "lobby:1", msgs)
	payload := frame[proto.HeaderSize(len(frame)-2):]
	if len(frame) > 127 {
		payload = frame[4:]
	}
	var s scanner
	var fi frameInfo
	if !s.parseFrame(payload, &fi) || string(fi.t) != "batch" || string(fi.room) != "lobby:1" || fi.msgs < 0 {
		t.Fatalf("parseFrame: %+v bad=%v", fi, s.Bad())
	}
	seqs, ok := s.seqs(payload, fi.msgs, nil)
	if !ok || len(seqs) != 5 || seqs[0] != 1 || seqs[3] != 70000 || seqs[4] != 1<<33 {
		t.Errorf("seqs %v ok=%v", seqs, ok)
	}
	joined, err := enc.Frame(proto.Msgpack, &proto.Joined{T: "joined", Ref: 300, Room: "r", Seq: 9, Gap: true, Count: 2,
		History: []msgpack.RawMessage{msgs[0]}, Members: []proto.Member{{ID: "a", Name: "A"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := joined[proto.HeaderSize(len(joined)-2):]
	if !s.parseFrame(p, &fi) || fi.ref != 300 || fi.seq != 9 || !fi.gap || fi.msgs < 0 {
		t.Fatalf("joined: %+v", fi)
	}
	if seqs, ok := s.seqs(p, fi.msgs, nil); !ok || len(seqs) != 1 || seqs[0] != 1 {
		t.Errorf("history seqs %v", seqs)
	}
}

func TestScannerRejects(t *testing.T) {
	var s scanner
	var fi frameInfo
	for _, b := range [][]byte{nil, {0x81}, {0x81, 0xa1, 't'}, {0x91, 0x01}, {0x81, 0xa1, 't', 0x01}, {0x82, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff}} {
		if s.parseFrame(b, &fi) {
			t.Errorf("parseFrame(%x) accepted %+v", b, fi)
		}
	}
	s.Reset([]byte{0xd0, 0xff}) // int8 -1
	if s.Uint(); !s.Bad() {
		t.Errorf("negative int read as uint")
	}
}

func TestClientFrame(t *testing.T) {
	payload := []byte("hello, relay")
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := make([]byte, n)
		copy(p, payload)
		f := proto.AppendClientFrame(nil, ws.OpBinary, p, [4]byte{1, 2, 3, 4})
		h, err := ws.ReadHeader(bytesReader(f))
		if err != nil || !h.Masked || !h.Fin || h.Length != int64(n) || h.OpCode != ws.OpBinary {
			t.Fatalf("n=%d: header %+v err %v", n, h, err)
		}
		body := f[len(f)-n:]
		ws.Cipher(body, h.Mask, 0)
		if string(body) != string(p) {
			t.Errorf("n=%d: payload does not unmask", n)
		}
	}
}

// TestSkipValues checks the skipper against values the msgpack library
// encodes, of every type it can meet.
func TestSkipValues(t *testing.T) {
	big := make([]byte, 70000)
	values := []any{
		nil, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, uint64(math.MaxUint64),
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, int64(math.MinInt64),
		float32(1.5), 2.5, "", "x", string(big[:31]), string(big[:32]), string(big[:255]), string(big[:256]), string(big),
		[]byte{}, []byte{1}, big[:300], big,
		[]any{}, []any{1, "a", nil}, make([]any, 20), make([]any, 70000),
		map[string]any{}, map[string]any{"a": 1, "b": []any{map[string]any{"c": "d"}}},
		msgpack.RawMessage{0xd4, 1, 2}, msgpack.RawMessage{0xc7, 3, 1, 1, 2, 3}, msgpack.RawMessage{0xd8, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	}
	m := map[string]any{}
	for i := 0; i < 20; i++ {
		m[strconv.Itoa(i)] = i
	}
	values = append(values, m)
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := proto.SkipValues(b, 0, 1); got != len(b) {
			t.Errorf("proto.SkipValues(%T %.20v) = %d, want %d", v, v, got, len(b))
		}
		if len(b) > 1 && proto.SkipValues(b[:len(b)-1], 0, 1) != -1 {
			t.Errorf("skipValues of truncated %T did not fail", v)
		}
	}
}

// FuzzScanner feeds arbitrary bytes to the frame scanner: it must never
// panic or read out of bounds, and agree with itself.
func FuzzScanner(f *testing.F) {
	enc := proto.NewEncoder()
	p, _ := enc.Payload(proto.Msgpack, &proto.Message{Seq: 3, Body: "x", Meta: map[string]string{"k": "v"}})
	fr := enc.Batch(proto.Msgpack, "r", [][]byte{p, p})
	f.Add(fr[2:])
	f.Add([]byte{0x81, 0xa1, 't', 0xa5, 'b', 'a', 't', 'c', 'h'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s scanner
		var fi frameInfo
		if s.parseFrame(b, &fi) && fi.msgs >= 0 {
			if fi.msgs > len(b) {
				t.Fatalf("msgs offset %d past %d bytes", fi.msgs, len(b))
			}
			s.seqs(b, fi.msgs, nil)
		}
		if n := proto.SkipValues(b, 0, 1); n > len(b) {
			t.Fatalf("skipValues = %d past %d bytes", n, len(b))
		}
	})
}

// TestBatchNoAlloc: a member counts, or decodes and times, a batch
// without allocating.
func TestBatchNoAlloc(t *testing.T) {
	frame := testBatch(t, 1, 32)
	for _, sampled := range []bool{false, true} {
		st := newStats()
		w := &worker{nodes: []*stats{st}, cfg: Config{MessageSize: 100}}
		w.winStart.Store(1)
		w.winEnd.Store(math.MaxInt64)
		m := &member{w: w, st: st, spec: memberSpec{sampled: sampled}}
		m.track.joined(0, false, false, nil)
		m.frame(frame, time.Now()) // scratch grows once
		allocs := testing.AllocsPerRun(100, func() {
			m.track.next = 1
			m.frame(frame, time.Now())
		})
		if allocs != 0 {
			t.Errorf("sampled=%v: %v allocations per batch, want 0", sampled, allocs)
		}
		if m.track.lost != 0 || m.track.received == 0 || st.c[cBadMessages].Load() != 0 || st.c[cBadFrames].Load() != 0 {
			t.Errorf("sampled=%v: tracker %+v, bad messages %d", sampled, m.track, st.c[cBadMessages].Load())
		}
	}
}

// TestMessageDecode decodes a message the relay's encoder wrote.
func TestMessageDecode(t *testing.T) {
	enc := proto.NewEncoder()
	p, err := enc.Payload(proto.Msgpack, &proto.Message{Seq: 70000, TS: 1700000000123, From: "u1", Name: "Üser",
		Body: "héllo", Badges: []string{"mod", "vip"}, Meta: map[string]string{"x": "y", metaTS: "42"}})
	if err != nil {
		t.Fatal(err)
	}
	var s scanner
	var m message
	s.Reset(p)
	if !s.message(&m) || s.Pos() != len(p) {
		t.Fatalf("message() failed at %d of %d", s.Pos(), len(p))
	}
	if m.seq != 70000 || m.ts != 1700000000123 || string(m.from) != "u1" || string(m.name) != "Üser" ||
		string(m.body) != "héllo" || m.badges != 2 || string(m.sent) != "42" {
		t.Errorf("decoded %+v", m)
	}
	p[len(p)-1] = 0xff // the last byte of "42": not UTF-8
	s.Reset(p)
	if s.message(&m) {
		t.Errorf("message with invalid UTF-8 in meta decoded")
	}
}

// testBatch returns the payload of a batch of n messages from seq first.
func testBatch(t testing.TB, first uint64, n int) []byte {
	enc := proto.NewEncoder()
	var msgs [][]byte
	for i := 0; i < n; i++ {
		m := proto.Message{Seq: first + uint64(i), TS: 1700000000000, From: "bench-p1", Name: "bench-p1",
			Body: filler(100), Meta: map[string]string{metaTS: strconv.FormatInt(time.Now().UnixNano(), 10)}}
		p, err := enc.Payload(proto.Msgpack, &m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, append([]byte(nil), p...))
	}
	fr := enc.Batch(proto.Msgpack, "stream:x-0", msgs)
	return append([]byte(nil), fr[proto.HeaderSize(len(fr)-4):]...)
}

// BenchmarkBatch measures the cost of one batch of 32 messages to a
// member, counted and sampled.
func BenchmarkBatch(b *testing.B) {
	frame := testBatch(b, 1, 32)
	for _, sampled := range []bool{false, true} {
		b.Run(fmt.Sprintf("sampled=%v", sampled), func(b *testing.B) {
			st := newStats()
			w := &worker{nodes: []*stats{st}, cfg: Config{MessageSize: 100}}
			m := &member{w: w, st: st, spec: memberSpec{sampled: sampled}}
			m.track.joined(0, false, false, nil)
			b.ReportAllocs()
			for b.Loop() {
				m.track.next = 1
				m.frame(frame, time.Now())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/msg")
		})
	}
}
