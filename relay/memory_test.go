package relay_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sys/unix"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
)

// TestMemoryPerIdleConnection measures the relay's heap per idle connection:
// ROOMCAST_MEM=N opens N anonymous WebSocket connections (at most 9 000: the
// client and the relay each hold a descriptor per connection), and
// ROOMCAST_MEM_ROOMS=R joins each to one of R rooms; ROOMCAST_MEM_USERS=1
// makes each a distinct user with a token like the bench's (memToken)
// instead of an anonymous viewer (the relay then also holds each token in
// its token cache). The clients are raw
// blocking sockets, so they add nothing to the Go heap that is measured.
// ROOMCAST_MEM_PROFILE=FILE writes a heap profile of the held state (read it
// with go tool pprof -sample_index=inuse_space -top). The test fails when the
// heap grows by more than ROOMCAST_MEM_BUDGET bytes per connection (default
// 1024). It also logs, per connection, the growth of VmRSS and of the
// runtime's MemStats parts (heap spans, live objects, heap kept but not
// returned, stacks, span structures, GC metadata), once connected and
// again after debug.FreeOSMemory (as the relay's trim does). Skipped
// without ROOMCAST_MEM; run it without -race (the race detector's shadow
// memory is not the relay's).
func TestMemoryPerIdleConnection(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ROOMCAST_MEM"))
	if n <= 0 {
		t.Skip("set ROOMCAST_MEM=N to measure the heap per idle connection")
	}
	rooms, _ := strconv.Atoi(os.Getenv("ROOMCAST_MEM_ROOMS"))
	budget := 1024
	if b, err := strconv.Atoi(os.Getenv("ROOMCAST_MEM_BUDGET")); err == nil {
		budget = b
	}
	if os.Getenv("ROOMCAST_MEM_PROFILE") != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1 // every allocation, to see the small ones
		t.Cleanup(func() { runtime.MemProfileRate = old })
	}
	srv := startRelay(t, func(c *relay.Config) { c.MaxConns = n + 100 })
	ap := netip.MustParseAddrPort(srv.Addr())
	// The test's own memory is made before base and makes no garbage while
	// connecting, so what is measured, and how it is laid out in spans,
	// is the relay's.
	fds := make([]int, 0, n)
	users := os.Getenv("ROOMCAST_MEM_USERS") == "1"
	reqs := [][]byte{memUpgradeRequest(ap, "")}
	if users {
		reqs = make([][]byte, n)
		for i := range reqs {
			reqs[i] = memUpgradeRequest(ap, memToken(t, "r-"+strconv.Itoa(i)))
		}
		packRequests(reqs)
	}
	joins := make([][]byte, rooms)
	for i := range joins {
		joins[i] = joinFrame(fmt.Sprintf("mem-%d", i))
	}
	var buf [4096]byte
	debug.FreeOSMemory()
	before := readMem()
	base, baseLive := heapInUse()
	g0 := runtime.NumGoroutine()
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	})
	for i := range n {
		var join []byte
		if rooms > 0 {
			join = joins[i%rooms]
		}
		fd, err := rawConnect(ap, reqs[i%len(reqs)], join, &buf)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		fds = append(fds, fd)
	}
	held, heldLive := heapInUse()
	per := float64(held-base) / float64(n)
	t.Logf("%d idle connections (rooms %d, users %v): heap in use %d -> %d B, %.0f B per connection (live objects %.0f B); goroutines %d -> %d",
		n, rooms, users, base, held, per, float64(heldLive-baseLive)/float64(n), g0, runtime.NumGoroutine())
	after := readMem()
	debug.FreeOSMemory()
	trimmed := readMem()
	// The requests (a few hundred bytes each with a token) were live at
	// before and base, so they must stay live through every reading: freed
	// before trimmed, they would take their bytes off the relay's figures.
	runtime.KeepAlive(reqs)
	runtime.KeepAlive(joins)
	t.Logf("per connection, connected / after FreeOSMemory: %s", before.perConn(after, trimmed, n))
	if os.Getenv("ROOMCAST_MEM_CLASSES") == "1" {
		t.Logf("per connection, by size class: %s", before.byClass(trimmed, n))
	}
	if f := os.Getenv("ROOMCAST_MEM_PROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
	}
	if per > float64(budget) {
		t.Errorf("%.0f B of heap per idle connection, budget %d", per, budget)
	}
}

// heapInUse returns the bytes of live heap spans after two collections,
// and of the live objects in them (the difference is free space in spans
// that hold live objects).
func heapInUse() (spans, live uint64) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.HeapAlloc
}

// packRequests moves the requests into one allocation. Made one by one
// among the token signing's garbage, they would keep that garbage's spans
// in use after it is collected, and the relay's objects would fill the
// free space of those spans without growing the heap measured: with
// ROOMCAST_MEM_USERS=1 the heap per connection would read too low.
func packRequests(reqs [][]byte) {
	n := 0
	for _, r := range reqs {
		n += len(r)
	}
	slab := make([]byte, 0, n)
	for i, r := range reqs {
		slab = append(slab, r...)
		reqs[i] = slab[len(slab)-len(r) : len(slab) : len(slab)]
	}
}

// memToken is a token like the bench's (bench/worker.go): name equal to
// the user id, role "user" spelled out, and an expiry a day away.
func memToken(t testing.TB, user string) string {
	return relaytest.Sign(t, testSecret, jwt.MapClaims{"sub": user, "name": user, "role": "user",
		"exp": time.Now().Add(24 * time.Hour).Unix()})
}

// memUpgradeRequest is the WebSocket upgrade rawConnect sends, with the
// token if not "".
func memUpgradeRequest(ap netip.AddrPort, tok string) []byte {
	auth := ""
	if tok != "" {
		auth = "Authorization: Bearer " + tok + "\r\n"
	}
	return []byte("GET /ws HTTP/1.1\r\nHost: " + ap.String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + auth +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: roomcast.v1.json\r\n\r\n")
}

// joinFrame is a masked text frame joining room.
func joinFrame(room string) []byte {
	var b bytes.Buffer
	f := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(`{"t":"join","room":"` + room + `","ref":1}`)))
	if err := ws.WriteFrame(&b, f); err != nil {
		panic(err) // writing to a bytes.Buffer does not fail
	}
	return b.Bytes()
}

// rawConnect opens a WebSocket on a blocking socket, sending req (see
// memUpgradeRequest) and reading the answer into buf, then, if join is set
// (see joinFrame), joins and waits for joined. It allocates nothing on
// success.
func rawConnect(ap netip.AddrPort, req, join []byte, buf *[4096]byte) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = unix.Close(fd)
		}
	}()
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return -1, err
	}
	if err := writeAll(fd, req); err != nil {
		return -1, err
	}
	if err := readUntil(fd, []byte(`"hello"`), buf); err != nil {
		return -1, fmt.Errorf("no hello: %w", err)
	}
	if join != nil {
		if err := writeAll(fd, join); err != nil {
			return -1, err
		}
		if err := readUntil(fd, []byte(`"joined"`), buf); err != nil {
			return -1, fmt.Errorf("no joined: %w", err)
		}
	}
	ok = true
	return fd, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readUntil reads from fd into buf until what was read contains want.
func readUntil(fd int, want []byte, buf *[4096]byte) error {
	got := 0
	for !bytes.Contains(buf[:got], want) {
		if got == len(buf) {
			return fmt.Errorf("%q not in %q", want, buf[:got])
		}
		n, err := unix.Read(fd, buf[got:])
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("closed before %q: %q", want, buf[:got])
		}
		got += n
	}
	return nil
}

// memSnap is what the process holds, as the runtime and the kernel see it.
type memSnap struct {
	m   runtime.MemStats
	rss uint64 // VmRSS, bytes; 0 if /proc/self/status cannot be read
}

func readMem() memSnap {
	var s memSnap
	runtime.ReadMemStats(&s.m)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		if i := bytes.Index(b, []byte("VmRSS:")); i >= 0 {
			f := bytes.Fields(b[i+len("VmRSS:"):])
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
				s.rss = kb << 10
			}
		}
	}
	return s
}

// perConn formats the growth from s to a and to b (a after
// debug.FreeOSMemory) per connection, in bytes.
func (s memSnap) perConn(a, b memSnap, n int) string {
	d := func(x, y uint64) string {
		return fmt.Sprintf("%.0f", (float64(x)-float64(y))/float64(n))
	}
	var out bytes.Buffer
	for _, f := range []struct {
		name string
		get  func(m memSnap) uint64
	}{
		{"VmRSS", func(m memSnap) uint64 { return m.rss }},
		{"HeapInuse", func(m memSnap) uint64 { return m.m.HeapInuse }},
		{"HeapAlloc", func(m memSnap) uint64 { return m.m.HeapAlloc }},
		{"HeapIdle-Released", func(m memSnap) uint64 { return m.m.HeapIdle - m.m.HeapReleased }},
		{"StackInuse", func(m memSnap) uint64 { return m.m.StackInuse }},
		{"MSpanInuse", func(m memSnap) uint64 { return m.m.MSpanInuse }},
		{"GCSys", func(m memSnap) uint64 { return m.m.GCSys }},
		{"OtherSys", func(m memSnap) uint64 { return m.m.OtherSys }},
		{"Sys", func(m memSnap) uint64 { return m.m.Sys - m.m.HeapReleased }},
	} {
		fmt.Fprintf(&out, "%s %s/%s ", f.name, d(f.get(a), f.get(s)), d(f.get(b), f.get(s)))
	}
	return out.String()
}

// byClass formats, for each size class with objects left per connection
// from s to a, the objects allocated and those still live per connection
// (the rest was garbage of that class: its free slots are what keeps
// spans of long-lived objects partly empty).
func (s memSnap) byClass(a memSnap, n int) string {
	var out bytes.Buffer
	for i, c := range a.m.BySize {
		b := s.m.BySize[i]
		made := float64(c.Mallocs-b.Mallocs) / float64(n)
		live := (float64(c.Mallocs-c.Frees) - float64(b.Mallocs-b.Frees)) / float64(n)
		if made >= 0.05 {
			fmt.Fprintf(&out, "\n  %5d B: made %.2f live %.2f", c.Size, made, live)
		}
	}
	return out.String()
}
