package relay_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/shard"
)

// publishN publishes n messages to room through the hub.
func publishN(t testing.TB, srv *relay.Server, room string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := srv.Hub().Publish(room, &shard.Message{From: "bot", Body: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// joinWith sends a join with extra fields and returns the joined frame.
func joinWith(c *client, room string, extra map[string]any) frame {
	c.t.Helper()
	m := map[string]any{"t": "join", "room": room, "ref": 7}
	for k, v := range extra {
		m[k] = v
	}
	c.send(m)
	return c.expect("joined")
}

// histSeqs returns the seqs of a joined frame's history.
func histSeqs(f frame) []int64 {
	var out []int64
	for _, m := range f.list("history") {
		out = append(out, frame(m.(map[string]any)).num("seq"))
	}
	return out
}

// checkJoined checks a joined frame's epoch, gap and history seqs.
func checkJoined(t testing.TB, what string, j frame, epoch string, gap bool, seqs ...int64) {
	t.Helper()
	if j.str("epoch") != epoch || j["gap"] != gap || !slices.Equal(histSeqs(j), seqs) {
		t.Fatalf("%s: joined epoch %q gap %v history %v, want epoch %q gap %v history %v",
			what, j.str("epoch"), j["gap"], histSeqs(j), epoch, gap, seqs)
	}
}

// TestEpochJoinAndRestart: joined names the room's epoch; a resume in the
// same epoch continues; a resume with the epoch of a relay that restarted
// (a second relay: new process state) gets a gap and the latest messages,
// never the new relay's seqs as a continuation.
func TestEpochJoinAndRestart(t *testing.T) {
	const room = "lobby:epoch"
	first := startRelay(t, nil)
	a := dial(t, first, dialOpts{token: token(t, "a", "A", "")})
	j := a.join(room, 1)
	epoch := j.str("epoch")
	if len(epoch) != 8 {
		t.Fatalf("joined epoch %q, want 8 characters", epoch)
	}
	publishN(t, first, room, 5)
	// A join's history holds what the room has handed to its loops; with a
	// member (a) a flight may still be under way, and the rest would reach
	// the joiner live. Wait until a has all five.
	a.bodies(5)

	b := dial(t, first, dialOpts{token: token(t, "b", "B", "")})
	checkJoined(t, "since 3, same epoch", joinWith(b, room, map[string]any{"since": 3, "epoch": epoch}), epoch, false, 4, 5)
	c := dial(t, first, dialOpts{json: true, token: token(t, "c", "C", "")})
	checkJoined(t, "since 3, no epoch (v1 client)", joinWith(c, room, map[string]any{"since": 3}), epoch, false, 4, 5)
	d := dial(t, first, dialOpts{token: token(t, "d", "D", "")})
	checkJoined(t, "epoch without since", joinWith(d, room, map[string]any{"epoch": "zzzzzzzz"}), epoch, false)

	// The relay restarts: a new relay, its own room of 5 messages.
	second := startRelay(t, nil)
	publishN(t, second, room, 5)
	e := dial(t, second, dialOpts{token: token(t, "a", "A", "")})
	j = joinWith(e, room, map[string]any{"since": 3, "epoch": epoch})
	fresh := j.str("epoch")
	if fresh == "" || fresh == epoch {
		t.Fatalf("epoch after restart %q, want a new one (old %q)", fresh, epoch)
	}
	checkJoined(t, "since 3 of the old epoch", j, fresh, true, 1, 2, 3, 4, 5)
	f := dial(t, second, dialOpts{json: true, token: token(t, "f", "F", "")})
	checkJoined(t, "old epoch, history 2", joinWith(f, room, map[string]any{"since": 3, "epoch": epoch, "history": 2}), fresh, true, 4, 5)
	// The rejoin of a member answers the same way.
	checkJoined(t, "rejoin, old epoch", joinWith(e, room, map[string]any{"since": 1, "epoch": epoch}), fresh, true, 1, 2, 3, 4, 5)
	checkJoined(t, "rejoin, new epoch", joinWith(e, room, map[string]any{"since": 4, "epoch": fresh}), fresh, false, 5)
}

// nextMsgEvent reads the next msg event of an SSE stream and returns its
// id, which must be <epoch>:<seq> of the given seq.
func nextMsgEvent(t testing.TB, s *sseStream, seq uint64) string {
	t.Helper()
	ev := s.nextEvent(true)
	if m := checkMsgEvent(t, ev); m.Seq != seq {
		t.Fatalf("msg seq %d, want %d", m.Seq, seq)
	}
	return ev.id
}

// TestEpochSSE: SSE message ids are <epoch>:<seq>, the epoch of joined;
// Last-Event-ID and since are read the same way; a bare seq means the
// current epoch; another epoch is a gap (the latest messages).
func TestEpochSSE(t *testing.T) {
	const room = "sse:epoch"
	srv := startAPIRelay(t, nil)
	for i := 1; i <= 3; i++ {
		ssePublish(t, srv, room, fmt.Sprint("m", i))
	}
	a := openSSE(t, srv, "room="+room+"&history=10")
	id := nextMsgEvent(t, a, 1)
	epoch := eventEpoch(id)
	nextMsgEvent(t, a, 2)
	nextMsgEvent(t, a, 3)
	ssePublish(t, srv, room, "m4")
	if live := nextMsgEvent(t, a, 4); eventEpoch(live) != epoch {
		t.Fatalf("live id %q, want epoch %q", live, epoch)
	}
	ws := dial(t, srv, dialOpts{token: token(t, "w", "W", "")})
	if j := ws.join(room, 1); j.str("epoch") != epoch {
		t.Fatalf("joined epoch %q, SSE ids %q", j.str("epoch"), id)
	}

	cases := []struct {
		name, query, lastID string
		want                []uint64
	}{
		{"Last-Event-ID of this epoch", "", epoch + ":2", []uint64{3, 4}},
		{"since of this epoch", "&since=" + epoch + ":3", "", []uint64{4}},
		{"bare seq", "", "2", []uint64{3, 4}},
		{"another epoch", "", "aaaaaaaa:2", []uint64{1, 2, 3, 4}},
		{"another epoch, history 1", "&history=1", "aaaaaaaa:2", []uint64{4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.lastID != "" {
				hdr = []string{"Last-Event-ID", tc.lastID}
			}
			s := openSSE(t, srv, "room="+room+tc.query, hdr...)
			for _, seq := range tc.want {
				nextMsgEvent(t, s, seq)
			}
			s.expectQuiet(100 * time.Millisecond)
		})
	}
	for _, bad := range []string{epoch + ":", ":3", epoch + ":x"} {
		if resp := sseGet(t, srv, "/sse?room="+room, "Last-Event-ID", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Last-Event-ID %q: status %d, want 400", bad, resp.StatusCode)
		}
	}

	// A restarted relay: the browser's Last-Event-ID of the old epoch gets
	// the new room's messages, not a continuation after seq 2.
	second := startAPIRelay(t, nil)
	for i := 1; i <= 4; i++ {
		ssePublish(t, second, room, fmt.Sprint("n", i))
	}
	s := openSSE(t, second, "room="+room, "Last-Event-ID", epoch+":2")
	if id := nextMsgEvent(t, s, 1); eventEpoch(id) == epoch {
		t.Fatalf("id %q after restart: want a new epoch", id)
	}
	for seq := uint64(2); seq <= 4; seq++ {
		nextMsgEvent(t, s, seq)
	}
}

// TestEpochNewRoom: a room dropped and created again has a new epoch.
func TestEpochNewRoom(t *testing.T) {
	srv := startRelay(t, nil)
	a := dial(t, srv, dialOpts{token: token(t, "a", "A", "")})
	first := a.join("lobby:again", 1).str("epoch")
	a.send(map[string]any{"t": "leave", "room": "lobby:again", "ref": 2})
	a.expect("left")
	// The room never held a message: it went with its last member.
	eventually(t, "the room to go", func() bool { return srv.Hub().Lookup("lobby:again") == nil })
	if again := a.join("lobby:again", 3).str("epoch"); again == "" || again == first {
		t.Fatalf("epoch of the new room %q, want one other than %q", again, first)
	}
}

// TestMemberListViewers: in a namespace with member_list_viewers false,
// anonymous viewers get no member ids: joined without members, presence
// with the count only. Members with tokens still get the lists.
func TestMemberListViewers(t *testing.T) {
	srv := startAPIRelay(t, func(c *relay.Config) {
		c.Namespaces = map[string]relay.Namespace{"quiet": {MemberListViewers: polBool(false)}}
	})
	const room = "quiet:x"
	user := dial(t, srv, dialOpts{token: token(t, "u", "U", "")})
	if j := user.join(room, 1); len(j.list("members")) != 1 {
		t.Fatalf("user joined %v, want 1 member", j)
	}
	viewer := dial(t, srv, dialOpts{json: true})
	if j := viewer.join(room, 1); j["members"] != nil || j.num("count") != 2 {
		t.Fatalf("viewer joined %v, want count 2 and no members", j)
	}
	sse := openSSE(t, srv, "room="+room)
	if p := user.expect("presence"); p.num("count") != 2 {
		t.Fatalf("user presence %v, want count 2", p)
	}
	if p := user.expect("presence"); p.num("count") != 3 {
		t.Fatalf("user presence %v, want count 3", p)
	}
	if p := viewer.expect("presence"); p.num("count") != 3 {
		t.Fatalf("viewer presence %v, want count 3", p)
	}

	third := dial(t, srv, dialOpts{token: token(t, "t", "T", "")})
	third.join(room, 1)
	if p := user.expect("presence"); p.num("count") != 4 || len(p.list("joins")) != 1 {
		t.Fatalf("user presence %v, want count 4 and the join", p)
	}
	if p := viewer.expect("presence"); p.num("count") != 4 || p["joins"] != nil {
		t.Fatalf("viewer presence %v, want count 4 and no joins", p)
	}
	third.send(map[string]any{"t": "leave", "room": room, "ref": 2})
	if p := user.expect("presence"); p.num("count") != 3 || len(p.list("leaves")) != 1 {
		t.Fatalf("user presence %v, want count 3 and the leave", p)
	}
	if p := viewer.expect("presence"); p.num("count") != 3 || p["leaves"] != nil {
		t.Fatalf("viewer presence %v, want count 3 and no leaves", p)
	}
	// The SSE reader (anonymous) saw counts only: its own join's count,
	// then the third user's join and leave.
	for _, want := range []string{`{"t":"presence","room":"quiet:x","count":4}`, `{"t":"presence","room":"quiet:x","count":3}`} {
		ev := sse.nextEvent(false)
		if ev.event != "presence" || ev.data != want {
			t.Fatalf("SSE event %q %s, want presence %s", ev.event, ev.data, want)
		}
	}
	// Messages still reach everyone.
	ssePublish(t, srv, room, "hello")
	for _, c := range []*client{user, viewer} {
		if b := c.expect("batch"); len(b.list("msgs")) != 1 {
			t.Fatalf("batch %v, want 1 message", b)
		}
	}
	sse.msg()

	// The default namespace lists members to viewers.
	other := dial(t, srv, dialOpts{})
	if j := other.join("lobby:x", 1); j.num("count") != 1 {
		t.Fatalf("joined %v", j)
	}
	user.join("lobby:x", 3)
	if p := other.expect("presence"); len(p.list("joins")) != 1 {
		t.Fatalf("viewer presence in lobby %v, want the join", p)
	}
}

// TestRoomLimit: past -max-rooms-total a join that would create a room
// answers unavailable; rooms that never held a message go with their last
// member and free their place.
func TestRoomLimit(t *testing.T) {
	srv := startRelay(t, func(c *relay.Config) { c.MaxRoomsTotal = 2 })
	a := dial(t, srv, dialOpts{token: token(t, "a", "A", "")})
	a.join("lobby:1", 1)
	a.join("lobby:2", 2)
	a.send(map[string]any{"t": "join", "room": "lobby:3", "ref": 3})
	if e := a.expect("error"); e.str("code") != "unavailable" || e.num("ref") != 3 {
		t.Fatalf("join past the limit: %v, want unavailable", e)
	}
	// Joining an existing room is fine.
	b := dial(t, srv, dialOpts{token: token(t, "b", "B", "")})
	b.join("lobby:2", 1)
	a.send(map[string]any{"t": "leave", "room": "lobby:1", "ref": 4})
	a.expect("left")
	eventually(t, "the empty room to go", func() bool { return srv.Hub().Stats.Rooms.Load() == 1 })
	a.join("lobby:3", 5)
	if n := metricsOf(t, srv)[`roomcast_messages_rejected_total{code="unavailable"}`]; n != 1 {
		t.Errorf("rejected unavailable = %v, want 1", n)
	}
}
