package relay_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// Three relays on one NATS: members of one room spread over the three,
// publishers on all three at once. Every member sees the same contiguous
// seqs, once each, and every acked seq among them.
func TestClusterOneOrderAcrossNodes(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	var nodes []*relay.Server
	for i := range 3 {
		nodes = append(nodes, startNode(t, ns.ClientURL(), fmt.Sprint("n", i)))
	}
	const room, per = "cl:one", 25
	var (
		pubs, members []*client
	)
	for i, n := range nodes {
		p := dial(t, n, dialOpts{token: token(t, fmt.Sprint("pub", i), "P", "bot"), json: i == 1})
		p.join(room, 1)
		pubs = append(pubs, p)
		m := dial(t, n, dialOpts{json: i == 2}) // an anonymous viewer
		m.join(room, 1)
		members = append(members, m)
	}
	total := uint64(len(pubs) * per)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seens = make([]seen, len(pubs)+len(members))
	)
	all := append(append([]*client(nil), pubs...), members...)
	for i, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &seens[i]
			isPub := i < len(pubs)
			err := c.collect(s, func(s *seen) bool {
				return uint64(len(s.seqs)) >= total && (!isPub || len(s.acks)+len(s.errs) >= per)
			})
			if err != nil {
				mu.Lock()
				t.Errorf("client %d: %v after %d seqs", i, err, len(s.seqs))
				mu.Unlock()
			}
		}()
	}
	for _, p := range pubs {
		go func() {
			for ref := 1; ref <= per; ref++ {
				p.send(map[string]any{"t": "send", "room": room, "ref": 100 + ref, "body": fmt.Sprint("m", ref)})
			}
		}()
	}
	wg.Wait()
	var acked []uint64
	for i := range pubs {
		if len(seens[i].errs) > 0 {
			t.Errorf("publisher %d got errors: %v", i, seens[i].errs)
		}
		for _, seq := range seens[i].acks {
			acked = append(acked, seq)
		}
	}
	slices.Sort(acked)
	if err := contiguous(acked, 1, total); err != nil {
		t.Errorf("acked seqs %v: %v", acked, err)
	}
	for i, s := range seens {
		if err := contiguous(s.seqs, 1, total); err != nil {
			t.Errorf("client %d saw %v: %v", i, s.seqs, err)
		}
	}
	t.Logf("%d messages, %v publish conflicts retried", total, busConflicts(t, nodes))
}

// A relay shut down mid-stream: its member resumes on another node with
// since and epoch, and gets every acked message once, without a gap.
func TestClusterResumeOnAnotherNode(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a, b := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b")
	const room = "cl:resume"
	m := dial(t, a, dialOpts{token: token(t, "viewer", "V", "")})
	j := m.join(room, 1)
	epoch := j.str("epoch")
	if epoch == "" || j.num("seq") != 0 {
		t.Fatalf("joined %v, want seq 0 and an epoch", j)
	}
	p := dial(t, b, dialOpts{token: token(t, "pub", "P", "bot")})
	p.join(room, 1)
	var ps seen // p's own batches too: see the wait before m2's join
	send := func(ref int) uint64 {
		p.send(map[string]any{"t": "send", "room": room, "ref": ref, "body": "x"})
		if err := p.collect(&ps, func(s *seen) bool { _, ok := s.acks[int64(ref)]; return ok || len(s.errs) > 0 }); err != nil || len(ps.errs) > 0 {
			t.Fatalf("waiting for the ack of ref %d: %v %v", ref, err, ps.errs)
		}
		return ps.acks[int64(ref)]
	}
	var acked []uint64
	for ref := 1; ref <= 5; ref++ {
		acked = append(acked, send(ref))
	}
	var s seen
	if err := m.collect(&s, func(s *seen) bool { return len(s.seqs) >= 5 }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = a.Shutdown(ctx) }() // the member's node goes away
	m.expectClose(1001)
	for ref := 6; ref <= 10; ref++ { // sent while the member is away
		acked = append(acked, send(ref))
	}
	// A join's history (and joined.seq) stops at what node b's room has
	// handed to its loops; p is a member there, so a flight may still be
	// under way after the ack of 10. Wait until p has its batch of 10.
	if err := p.collect(&ps, func(s *seen) bool { return slices.Contains(s.seqs, 10) }); err != nil {
		t.Fatal(err)
	}
	m2 := dial(t, b, dialOpts{token: token(t, "viewer", "V", "")})
	m2.send(map[string]any{"t": "join", "room": room, "ref": 2, "since": s.seqs[len(s.seqs)-1], "epoch": epoch})
	j = m2.expect("joined")
	if j.str("epoch") != epoch || j.num("seq") != 10 || j["gap"] == true {
		t.Fatalf("resume on node b: %v, want epoch %s, seq 10, no gap", j, epoch)
	}
	got := append(s.seqs, historySeqs(j)...)
	acked = append(acked, send(11))
	var s2 seen
	if err := m2.collect(&s2, func(s *seen) bool { return len(s.seqs) >= 1 }); err != nil {
		t.Fatal(err)
	}
	got = append(got, s2.seqs...)
	if !slices.Equal(got, acked) || contiguous(got, 1, 11) != nil {
		t.Errorf("member saw %v across the two nodes, acked were %v", got, acked)
	}
}

// NATS stops: sends answer unavailable and /readyz 503; NATS comes back:
// the relay recovers by itself, sends are stored and delivered again.
func TestClusterNATSDownAndBack(t *testing.T) {
	dir := t.TempDir()
	ns := runNATS(t, dir, -1)
	port := ns.Addr().(*net.TCPAddr).Port // the same again after the outage
	srv := startNode(t, ns.ClientURL(), "solo")
	const room = "cl:outage"
	c := dial(t, srv, dialOpts{token: token(t, "u", "U", "bot")})
	c.join(room, 1)
	c.send(map[string]any{"t": "send", "room": room, "ref": 2, "body": "before"})
	if seq := c.expectAck(2).num("seq"); seq != 1 {
		t.Fatalf("first ack seq %d", seq)
	}
	if st := readyz(t, srv); st != http.StatusOK {
		t.Fatalf("/readyz %d before the outage", st)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	eventually(t, "/readyz 503", func() bool { return readyz(t, srv) == http.StatusServiceUnavailable })
	c.send(map[string]any{"t": "send", "room": room, "ref": 3, "body": "during"})
	for {
		f := c.next()
		if f.str("t") == "ack" {
			t.Fatalf("send during the outage acked: %v", f)
		}
		if f.str("t") == "error" {
			if f.str("code") != "unavailable" || f.num("ref") != 3 {
				t.Fatalf("send during the outage: %v, want unavailable", f)
			}
			break
		}
	}
	if v := metricsOf(t, srv)["roomcast_bus_connected"]; v != 0 {
		t.Errorf("roomcast_bus_connected %v during the outage", v)
	}

	runNATS(t, dir, port)
	eventually(t, "/readyz 200 again", func() bool { return readyz(t, srv) == http.StatusOK })
	c.send(map[string]any{"t": "send", "room": room, "ref": 4, "body": "after"})
	var s seen
	err := c.collect(&s, func(s *seen) bool { return s.acks[4] != 0 && slices.Contains(s.seqs, 2) || len(s.errs) > 0 })
	if err != nil || len(s.errs) > 0 || s.acks[4] != 2 {
		t.Fatalf("send after the outage: ack seq %d, errors %v, delivered %v, read error %v; want ack 2 and seq 2 delivered",
			s.acks[4], s.errs, s.seqs, err)
	}
}

// -data-dir: a restarted relay keeps history, seqs and the epoch; a client
// resumes across the restart without a gap.
func TestDataDirRestartResume(t *testing.T) {
	dir := t.TempDir()
	start := func() *relay.Server {
		return startRelay(t, func(c *relay.Config) { c.DataDir = dir })
	}
	srv := start()
	const room = "dd:keep"
	c := dial(t, srv, dialOpts{token: token(t, "u", "U", "bot")})
	epoch := c.join(room, 1).str("epoch")
	for ref := 2; ref <= 4; ref++ {
		c.send(map[string]any{"t": "send", "room": room, "ref": ref, "body": "x"})
		c.expectAck(ref)
	}
	c.conn.Close() // gone before the restart: Shutdown need not wait for it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv = start()
	c = dial(t, srv, dialOpts{token: token(t, "u", "U", "bot")})
	c.send(map[string]any{"t": "join", "room": room, "ref": 1, "since": 1, "epoch": epoch})
	j := c.expect("joined")
	if j.str("epoch") != epoch || j.num("seq") != 3 || j["gap"] == true || !slices.Equal(historySeqs(j), []uint64{2, 3}) {
		t.Fatalf("resume after the restart: %v, want epoch %s, seq 3, history [2 3], no gap", j, epoch)
	}
	c.send(map[string]any{"t": "send", "room": room, "ref": 2, "body": "y"})
	if seq := c.expectAck(2).num("seq"); seq != 4 {
		t.Errorf("first send after the restart got seq %d, want 4", seq)
	}
}

// Moderation from one node acts on the others: a delete sent on node a
// reaches a member on node b in order with the messages, and a later joiner
// on node c gets a history without the deleted message; a clear likewise.
func TestClusterDeleteAndClearAcrossNodes(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a, b, c := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	const room = "cl:mod"
	mod := dial(t, a, dialOpts{token: token(t, "mod", "M", "mod")})
	mod.join(room, 1)
	m := dial(t, b, dialOpts{})
	m.join(room, 1)
	for ref := 2; ref <= 4; ref++ {
		mod.send(map[string]any{"t": "send", "room": room, "ref": ref, "body": fmt.Sprint("m", ref)})
		mod.expectAck(ref)
	}
	mod.send(map[string]any{"t": "mod", "room": room, "ref": 5, "action": "delete", "seq": 2})
	mod.expectAck(5)
	var got []string
	for len(got) < 4 {
		f := m.next()
		switch f.str("t") {
		case "batch":
			for _, x := range f.list("msgs") {
				got = append(got, fmt.Sprint("msg ", toInt(x.(map[string]any)["seq"])))
			}
		case "delete":
			got = append(got, fmt.Sprint("delete ", f.num("seq")))
		}
	}
	if want := []string{"msg 1", "msg 2", "msg 3", "delete 2"}; !slices.Equal(got, want) {
		t.Errorf("member on node b saw %v, want %v", got, want)
	}
	late := dial(t, c, dialOpts{})
	late.send(map[string]any{"t": "join", "room": room, "ref": 1, "history": 10})
	if h := historySeqs(late.expect("joined")); !slices.Equal(h, []uint64{1, 3}) {
		t.Errorf("joiner on node c got history %v, want [1 3]", h)
	}
	mod.send(map[string]any{"t": "mod", "room": room, "ref": 6, "action": "clear"})
	mod.expectAck(6)
	m.expect("clear")
	late.expect("clear") // node c applied it too
	late2 := dial(t, c, dialOpts{})
	late2.send(map[string]any{"t": "join", "room": room, "ref": 1, "history": 10})
	if j := late2.expect("joined"); len(historySeqs(j)) != 0 || j.num("seq") != 3 {
		t.Errorf("joiner after the clear: %v, want seq 3 and no history", j)
	}
}

// Bans and timeouts set on one node hold on the others: the banned user's
// connection on node b is kicked and its join on node c refused; a user
// timed out on node a is muted on node b.
func TestClusterBanAndTimeoutAcrossNodes(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a, b, c := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	const room = "cl:ban"
	mod := dial(t, a, dialOpts{token: token(t, "mod", "M", "mod")})
	bad := dial(t, b, dialOpts{token: token(t, "bad", "B", "")})
	bad.join(room, 1)
	loud := dial(t, b, dialOpts{token: token(t, "loud", "L", "")})
	loud.join(room, 1)

	mod.send(map[string]any{"t": "mod", "room": room, "ref": 1, "action": "ban", "user": "bad"})
	mod.expectAck(1)
	if f := bad.expect("kicked"); f.str("reason") != "banned" {
		t.Errorf("banned user on node b got %v", f)
	}
	again := dial(t, c, dialOpts{token: token(t, "bad", "B", "")})
	eventually(t, "the ban on node c", func() bool {
		again.send(map[string]any{"t": "join", "room": room, "ref": 2})
		for {
			f := again.next()
			switch f.str("t") {
			case "joined": // the ban not on node c yet: leave and try again
				again.send(map[string]any{"t": "leave", "room": room, "ref": 3})
				for { // the ban may kick it before the leave is answered; the leave then answers an error (ref 3)
					if g := again.next(); g.str("t") == "left" || g.str("t") == "kicked" {
						return false
					}
				}
			case "error":
				if f.num("ref") == 3 {
					continue // that leave's error, after a kick
				}
				if f.str("code") != "banned" {
					t.Fatalf("join of the banned user on node c: %v", f)
				}
				return true
			}
		}
	})

	mod.send(map[string]any{"t": "mod", "room": room, "ref": 4, "action": "timeout", "user": "loud", "secs": 60})
	mod.expectAck(4)
	ref := 10
	eventually(t, "the timeout on node b", func() bool {
		ref++
		loud.send(map[string]any{"t": "send", "room": room, "ref": ref, "body": "x"})
		for {
			f := loud.next()
			if f.num("ref") != int64(ref) {
				continue
			}
			return f.str("t") == "error" && f.str("code") == "muted"
		}
	})
}

// -data-dir: a ban survives a restart.
func TestDataDirKeepsBans(t *testing.T) {
	dir := t.TempDir()
	start := func() *relay.Server {
		return startRelay(t, func(c *relay.Config) { c.DataDir = dir })
	}
	srv := start()
	mod := dial(t, srv, dialOpts{token: token(t, "mod", "M", "mod")})
	mod.send(map[string]any{"t": "mod", "room": "dd:ban", "ref": 1, "action": "ban", "user": "bad"})
	mod.expectAck(1)
	eventually(t, "the ban stored", func() bool { return metricsOf(t, srv)["roomcast_bus_mod_stored_total"] >= 1 })
	mod.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	srv = start()
	bad := dial(t, srv, dialOpts{token: token(t, "bad", "B", "")})
	eventually(t, "the ban after the restart", func() bool {
		bad.send(map[string]any{"t": "join", "room": "dd:ban", "ref": 2})
		for {
			f := bad.next()
			switch f.str("t") {
			case "joined": // the stored ban not read yet: leave and try again
				bad.send(map[string]any{"t": "leave", "room": "dd:ban", "ref": 3})
				for { // the ban may kick it before the leave is answered; a leave of a room it no longer holds is then an error
					if g := bad.next(); g.str("t") == "left" || g.str("t") == "kicked" {
						return false
					}
				}
			case "error":
				return f.str("code") == "banned"
			}
		}
	})
}

// Presence counts are summed over the nodes: members on three nodes, each
// sees the count of all three; a node's members leaving lowers it.
func TestClusterPresenceCountsSum(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a, b, c := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	const room = "cl:pres"
	ma := dial(t, a, dialOpts{token: token(t, "ua", "A", "")})
	ma.join(room, 1)
	mb := dial(t, b, dialOpts{token: token(t, "ub", "B", "")})
	mb.join(room, 1)
	mc := dial(t, c, dialOpts{}) // an anonymous viewer
	mc.join(room, 1)
	waitCount := func(m *client, want int64) {
		t.Helper()
		for {
			f := m.next() // fails the test after 5s without a frame
			if f.str("t") == "presence" && f.num("count") == want {
				return
			}
		}
	}
	waitCount(ma, 3)
	waitCount(mc, 3)
	mb.conn.Close()
	waitCount(ma, 2)
}

// POST /api/publish on node a reaches a member on node c; its answer is
// the seq members see.
func TestClusterAPIPublishReachesOtherNodes(t *testing.T) {
	ns := runNATS(t, t.TempDir(), -1)
	a := startRelay(t, func(c *relay.Config) { c.NATS, c.APIKey = ns.ClientURL(), testAPIKey })
	c := startNode(t, ns.ClientURL(), "c")
	m := dial(t, c, dialOpts{})
	m.join("cl:api", 1)
	var out struct{ Seq uint64 }
	api(t, a, "POST", "/api/publish", `{"room":"cl:api","body":"from the API"}`, &out)
	var s seen
	if err := m.collect(&s, func(s *seen) bool { return len(s.seqs) > 0 }); err != nil || out.Seq != 1 || !slices.Equal(s.seqs, []uint64{1}) {
		t.Errorf("API answered seq %d; member on node c saw %v (%v), want [1]", out.Seq, s.seqs, err)
	}
}
