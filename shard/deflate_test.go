package shard

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// zMember records what it is given, compressed or not, and where the bytes
// lay (to tell shared bytes from copies). Deliver runs on its loop.
type zMember struct {
	format proto.Format
	mu     sync.Mutex
	calls  [][]byte
	ptrs   []*byte // &frame[0] of each call
}

func (m *zMember) Deliver(frame []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, bytes.Clone(frame))
	m.ptrs = append(m.ptrs, &frame[0])
}

// zFrame is one server frame as a client reads it.
type zFrame struct {
	op         byte
	compressed bool
	payload    []byte // inflated
}

// frames parses every frame m got, inflating compressed ones with
// compress/flate as RFC 7692 says (the tail appended, no context).
func (m *zMember) frames(t testing.TB) []zFrame {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []zFrame
	for _, b := range m.calls {
		for len(b) > 0 {
			h, hn, err := proto.ParseHeader(b)
			if err != nil || !h.Fin || h.Masked || h.Rsv&^4 != 0 || int64(len(b)-hn) < h.Length {
				t.Fatalf("bad frame % x: %v", b[:min(len(b), 16)], err)
			}
			p := b[hn : hn+int(h.Length)]
			b = b[hn+int(h.Length):]
			f := zFrame{op: byte(h.OpCode), compressed: h.Rsv == 4, payload: p}
			if f.compressed {
				r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
				if f.payload, err = io.ReadAll(r); err != nil {
					t.Fatalf("compressed frame does not inflate: %v", err)
				}
			}
			out = append(out, f)
		}
	}
	return out
}

// batchesOf decodes the batch frames among fs.
func batchesOf(t testing.TB, f proto.Format, fs []zFrame) [][]proto.Message {
	t.Helper()
	var out [][]proto.Message
	for _, fr := range fs {
		var w wire
		decodePayload(t, f, fr.payload, &w)
		if w.T == proto.TBatch {
			out = append(out, w.Msgs)
		}
	}
	return out
}

// chatBody is chat-like text of n bytes: words of stream chat in an order
// that varies with i.
func chatBody(i, n int) string {
	words := strings.Fields(`gg wp lol pog kekw that was close no way nice shot who is streaming next again what
		a play did you see it clip that haha he missed the jump hello from Berlin first time here love the stream
		can you play the song from yesterday the boss fight is so hard today we need more healing chat is moving
		fast how many hours in this game already great music choice rip the run maybe next time hype <3 xD omg`)
	r := rand.New(rand.NewPCG(uint64(i), 7))
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

// Members that negotiated compression get the flight compressed, the same
// bytes for all of them (built once per format), and read the same messages
// as plain members; SSE members are never compressed; a room without
// compressed members builds no compressed frames.
func TestCompressedFlightSharedByMembers(t *testing.T) {
	e := newEnv(t, Config{Loops: 2})
	const room = "z:1"
	type joiner struct {
		f    proto.Format
		z    bool
		loop int
	}
	joiners := []joiner{{proto.Msgpack, false, 0}, {proto.Msgpack, true, 0}, {proto.Msgpack, true, 1}, {proto.Msgpack, true, 1},
		{proto.JSON, false, 1}, {proto.JSON, true, 0}, {proto.JSON, true, 1}, {proto.SSE, true, 0}}
	members := make([]*zMember, len(joiners))
	for i, j := range joiners {
		members[i] = &zMember{format: j.f}
		e.loops[j.loop].do(t, func() {
			if _, _, err := e.hub.Join(room, &JoinRequest{LoopIndex: j.loop, Loop: e.loops[j.loop], Member: members[i],
				Format: j.f, User: fmt.Sprint("u", i), Compressed: j.z}); err != nil {
				t.Error(err)
			}
		})
	}
	settle(t, e.hub)
	for _, m := range members {
		m.mu.Lock()
		m.calls, m.ptrs = nil, nil // presence of the joins
		m.mu.Unlock()
	}
	// One flight: a loop blocked while the room's messages queue.
	b := e.loops[0].block(t)
	const n = 20
	for i := range n {
		e.publish(t, room, Message{From: "x", Name: "X", Body: chatBody(i, 100)})
	}
	b.release()
	settle(t, e.hub)

	plain := map[proto.Format][][]proto.Message{}
	var bytesPlain, bytesZ [proto.NumFormats]int
	for i, j := range joiners {
		if j.f == proto.SSE {
			if sse := string(bytes.Join(members[i].calls, nil)); !strings.Contains(sse, "event: msg\ndata: {") {
				t.Errorf("SSE member got %q", sse)
			}
			continue
		}
		fs := members[i].frames(t)
		for _, fr := range fs {
			if fr.compressed && (!j.z || j.f == proto.SSE) {
				t.Fatalf("member %d (%v, compressed %v) got a compressed frame", i, j.f, j.z)
			}
		}
		got := batchesOf(t, j.f, fs)
		if n := len(got); n == 0 {
			t.Fatalf("member %d got no batch", i)
		}
		if !j.z {
			plain[j.f] = got
			bytesPlain[j.f] = len(bytes.Join(members[i].calls, nil))
			continue
		}
		if !fs[len(fs)-1].compressed {
			t.Errorf("member %d (%v) negotiated compression; its batch came uncompressed", i, j.f)
		}
		bytesZ[j.f] = len(bytes.Join(members[i].calls, nil))
		if fmt.Sprint(got) != fmt.Sprint(plain[j.f]) {
			t.Errorf("member %d (%v compressed) read %v, plain members %v", i, j.f, got, plain[j.f])
		}
	}
	for f := proto.Msgpack; f < proto.SSE; f++ {
		t.Logf("%v: %d bytes plain, %d compressed", f, bytesPlain[f], bytesZ[f])
		if bytesZ[f] == 0 || bytesZ[f] >= bytesPlain[f] {
			t.Errorf("%v: %d bytes compressed, %d plain", f, bytesZ[f], bytesPlain[f])
		}
	}
	// The same bytes for every compressed member of a format: one deflate.
	for _, group := range [][]int{{1, 2, 3}, {5, 6}} {
		first := members[group[0]]
		for _, i := range group[1:] {
			m := members[i]
			if len(m.ptrs) != len(first.ptrs) || m.ptrs[len(m.ptrs)-1] != first.ptrs[len(first.ptrs)-1] {
				t.Errorf("member %d got other bytes than member %d: compressed per member", i, group[0])
			}
		}
	}

	// Without compressed members a flight compresses nothing.
	plainRoom := "z:2"
	pm := &zMember{format: proto.Msgpack}
	e.loops[0].do(t, func() {
		if _, _, err := e.hub.Join(plainRoom, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: pm, User: "p"}); err != nil {
			t.Error(err)
		}
	})
	e.publish(t, plainRoom, Message{From: "x", Body: chatBody(0, 100)})
	settle(t, e.hub)
	pr := e.hub.Lookup(plainRoom)
	if w := wireOf(proto.Msgpack, true); len(pr.fl.all[w]) != 0 || pr.fl.formats[w] {
		t.Errorf("a room without compressed members built %d compressed bytes", len(pr.fl.all[w]))
	}
}

// countRoomZ is countRoom with members that negotiated compression and a
// chat-like message that compresses.
func countRoomZ(t testing.TB, n int) (*Room, []*countMember) {
	t.Helper()
	// No count-only presence flight may replace the one under test.
	e := newEnv(t, Config{Loops: 1, PresenceInterval: time.Hour})
	const room = "allocz:1"
	members := make([]*countMember, n)
	var err error
	e.loops[0].do(t, func() {
		for i := range members {
			members[i] = &countMember{}
			_, _, err = e.hub.Join(room, &JoinRequest{LoopIndex: 0, Loop: e.loops[0], Member: members[i],
				User: fmt.Sprint("u", i), Name: "N", Compressed: true})
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	e.stopHousekeeper() // the tests write its flight again, long after it went out
	e.publish(t, room, Message{From: "x", Name: "X", Body: chatBody(0, 300)})
	settle(t, e.hub)
	return e.hub.Lookup(room), members
}

// Writing a compressed flight to its members allocates nothing, as a plain
// one: the compressed frames are built once, before the loops write them.
func TestDeliverCompressedFlightNoAllocs(t *testing.T) {
	const n = 1000
	r, members := countRoomZ(t, n)
	lr := r.loops[0]
	w := wireOf(proto.Msgpack, true)
	if len(lr.members) != n || r.fl.msgs != 1 || len(r.fl.all[w]) == 0 {
		t.Fatalf("%d members, flight of %d messages, %d compressed bytes", len(lr.members), r.fl.msgs, len(r.fl.all[w]))
	}
	for _, pt := range r.fl.parts { // the flight may also hold a (small, plain) presence frame
		if pt.msgs > 0 && r.fl.all[w][pt.off[w]]&0x40 == 0 {
			t.Fatalf("the batch frame of the compressed wire has RSV1 clear: % x", r.fl.all[w][pt.off[w]:min(pt.end[w], pt.off[w]+8)])
		}
	}
	if z, p := len(r.fl.all[w]), len(r.fl.all[proto.Msgpack]); z >= p {
		t.Fatalf("compressed flight %d bytes, plain %d", z, p)
	}
	const runs = 20
	before := members[n-1].bytes
	allocs := testing.AllocsPerRun(runs, func() {
		for _, ms := range lr.members {
			ms.deliver(r.fl)
		}
	})
	if allocs != 0 {
		t.Errorf("deliver compressed to %d members: %v allocations per flight, want 0", n, allocs)
	}
	ctx := context.Background()
	allocs = testing.AllocsPerRun(runs, func() {
		r.remaining.Store(1)
		_ = lr.Run(ctx)
	})
	if allocs != 0 {
		t.Errorf("loopRoom.Run compressed for %d members: %v allocations, want 0", n, allocs)
	}
	last := lr.members[len(lr.members)-1]
	if got, want := members[n-1].bytes-before, int64(2*runs+2)*flightBytesFor(last, r.fl, w); got != want {
		t.Errorf("last member got %d bytes, want %d (its part of the compressed flight each time)", got, want)
	}
}

// Compressing a flight's frames reuses the pooled Deflater's buffers: in
// steady state it allocates nothing.
func TestCompressFlightNoAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	r, _ := countRoomZ(t, 1)
	allocs := testing.AllocsPerRun(50, func() {
		w := wireOf(proto.Msgpack, true)
		r.fl.all[w] = r.fl.all[w][:0]
		r.compressFlight()
	})
	if allocs != 0 {
		t.Errorf("compressFlight: %v allocations, want 0", allocs)
	}
}

// flightBytesFor is what deliver writes of fl to ms on wire w: the frames
// it has not seen yet (the flight may hold presence of joins it came after).
func flightBytesFor(ms *Membership, fl *flight, w uint8) int64 {
	var n int64
	for _, p := range fl.parts {
		seen := ms.joinDisp
		if p.pres {
			seen = ms.joinPres
		}
		if p.evn > seen {
			n += int64(p.end[w] - p.off[w])
		}
	}
	return n
}
