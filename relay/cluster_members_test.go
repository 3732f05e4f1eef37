package relay_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// roster is a client's view of a listed room's members: its joined list,
// then every presence join and leave it read.
type roster struct {
	c      *client
	names  map[string]string // by id
	joins  map[string]int    // presence joins read, by id
	leaves map[string]int    // presence leaves read, by id
	count  int64             // the last count read
}

func newRoster(c *client, joined frame) *roster {
	return &roster{c: c, names: membersOf(joined), joins: map[string]int{}, leaves: map[string]int{}, count: joined.num("count")}
}

// membersOf returns the members of a joined frame by id.
func membersOf(joined frame) map[string]string {
	out := map[string]string{}
	for _, m := range joined.list("members") {
		mm := m.(map[string]any)
		out[mm["id"].(string)] = mm["name"].(string)
	}
	return out
}

// until reads frames until cond holds (the test fails after 5 s without a
// frame, or 10 s in all).
func (r *roster) until(t *testing.T, what string, cond func(*roster) bool) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for !cond(r) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s: members %v, count %d", what, r.names, r.count)
		}
		f := r.c.next()
		if f.str("t") != "presence" {
			continue
		}
		r.count = f.num("count")
		for _, m := range f.list("joins") {
			mm := m.(map[string]any)
			id := mm["id"].(string)
			r.names[id] = mm["name"].(string)
			r.joins[id]++
		}
		for _, id := range f.list("leaves") {
			delete(r.names, id.(string))
			r.leaves[id.(string)]++
		}
	}
}

func (r *roster) is(want map[string]string) func(*roster) bool {
	return func(r *roster) bool { return maps.Equal(r.names, want) }
}

// threeNodes starts a NATS server and three relays on it, nodes a, b and c.
func threeNodes(t *testing.T) (a, b, c *relay.Server) {
	t.Helper()
	url := runNATS(t, t.TempDir(), -1).ClientURL()
	return startNode(t, url, "a"), startNode(t, url, "b"), startNode(t, url, "c")
}

// A listed room with one member on each of three nodes: each learns the
// others' members (with names) as presence joins, a new joiner gets all of
// them in joined.members, and a leave on one node reaches the others.
func TestClusterMemberListsAcrossNodes(t *testing.T) {
	a, b, c := threeNodes(t)
	const room = "cl:members"
	ma := dial(t, a, dialOpts{token: token(t, "ua", "Ann", "")})
	ra := newRoster(ma, ma.join(room, 1))
	mb := dial(t, b, dialOpts{token: token(t, "ub", "Bob", "")})
	mb.join(room, 1)
	mc := dial(t, c, dialOpts{token: token(t, "uc", "Cat", ""), json: true})
	rc := newRoster(mc, mc.join(room, 1))
	all := map[string]string{"ua": "Ann", "ub": "Bob", "uc": "Cat"}
	ra.until(t, "a to list the members of b and c", ra.is(all))
	if ra.joins["ub"] != 1 || ra.joins["uc"] != 1 {
		t.Errorf("a read joins %v, want ub and uc once", ra.joins)
	}
	rc.until(t, "c to list every member", rc.is(all))

	md := dial(t, c, dialOpts{token: token(t, "ud", "Dan", "")})
	rd := newRoster(md, md.join(room, 2))
	want := maps.Clone(all)
	want["ud"] = "Dan"
	if !maps.Equal(rd.names, want) {
		t.Errorf("a new joiner on c got members %v, want %v", rd.names, want)
	}
	if rd.count != 4 {
		t.Errorf("a new joiner on c got count %d, want 4", rd.count)
	}

	mb.conn.Close()
	delete(want, "ub")
	for _, r := range []*roster{ra, rc, rd} {
		r.until(t, "ub's leave", r.is(want))
		if r.leaves["ub"] != 1 {
			t.Errorf("leaves of ub read: %d, want 1", r.leaves["ub"])
		}
	}
}

// A user connected to two nodes is listed once on a third, and leaves only
// when gone from both.
func TestClusterMemberOnTwoNodesOnce(t *testing.T) {
	a, b, c := threeNodes(t)
	const room = "cl:twice"
	mo := dial(t, c, dialOpts{token: token(t, "uo", "Obs", "")})
	ro := newRoster(mo, mo.join(room, 1))
	x1 := dial(t, a, dialOpts{token: token(t, "ux", "Xia", "")})
	x1.join(room, 1)
	x2 := dial(t, b, dialOpts{token: token(t, "ux", "Xia", "")})
	x2.join(room, 1)
	both := map[string]string{"uo": "Obs", "ux": "Xia"}
	ro.until(t, "ux on a and b", func(r *roster) bool { return maps.Equal(r.names, both) && r.count == 3 })
	if ro.joins["ux"] != 1 {
		t.Errorf("joins of ux read: %d, want 1", ro.joins["ux"])
	}
	my := dial(t, c, dialOpts{token: token(t, "uy", "Yan", "")})
	ids := []string{}
	for _, m := range my.join(room, 1).list("members") {
		ids = append(ids, m.(map[string]any)["id"].(string))
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"uo", "ux", "uy"}) {
		t.Errorf("a joiner on c got members %v, want uo, ux, uy once each", ids)
	}

	x1.conn.Close()
	// uy's join (count 4), then a's drop: uo, ux on b, uy
	ro.until(t, "a's count to drop", func(r *roster) bool { return r.count == 3 && r.joins["uy"] == 1 })
	if ro.leaves["ux"] != 0 || ro.names["ux"] != "Xia" {
		t.Errorf("ux left with a connection on b: leaves %v, members %v", ro.leaves, ro.names)
	}
	// ux on b and on c too: no join on c, and no leave when c's goes.
	x3 := dial(t, c, dialOpts{token: token(t, "ux", "Xia", "")})
	x3.join(room, 1)
	ro.until(t, "x3's count", func(r *roster) bool { return r.count == 4 })
	x3.conn.Close()
	ro.until(t, "x3's count to drop", func(r *roster) bool { return r.count == 3 })
	if ro.joins["ux"] != 1 || ro.leaves["ux"] != 0 {
		t.Errorf("ux on b and c: joins %v, leaves %v, want one join and no leave", ro.joins, ro.leaves)
	}
	x2.conn.Close()
	ro.until(t, "ux's leave", func(r *roster) bool { return r.leaves["ux"] == 1 })
	if _, ok := ro.names["ux"]; ok || ro.count != 2 {
		t.Errorf("after ux left both nodes: members %v, count %d", ro.names, ro.count)
	}
}
