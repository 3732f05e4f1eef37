package relay_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomcast/roomcast/relay"
)

const (
	childEnv       = "ROOMCAST_TEST_CHILD_RELAY"
	childListenEnv = "ROOMCAST_TEST_CHILD_LISTEN" // the child's listen address; empty: 127.0.0.1:0
)

// TestHelperChildRelay is not a test: it is the relay of
// TestFDExhaustionRecovers, run in a child process whose descriptor limit
// is 128. It prints its addresses and serves until stdin closes.
func TestHelperChildRelay(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("the child process of TestFDExhaustionRecovers")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 128, Max: 128}); err != nil {
		t.Fatal(err)
	}
	listen := cmp.Or(os.Getenv(childListenEnv), "127.0.0.1:0")
	srv, err := relay.New(relay.Config{Listen: listen, Admin: "127.0.0.1:0", Loops: 2, NodeID: "child"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CHILD %s %s\n", srv.Addr(), srv.AdminAddr())
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case err := <-srv.Done():
		t.Errorf("the relay's engine stopped: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// TestFDExhaustionRecovers: a relay limited to 128 descriptors and flooded
// with 150 idle connections refuses the excess (503) instead of losing its
// listener to EMFILE; once they go, it upgrades again and is ready. Both
// ways of accepting: one acceptor handing connections to the loops (port
// 0), and every loop accepting on its own SO_REUSEPORT listener (a fixed
// port, as in production).
func TestFDExhaustionRecovers(t *testing.T) {
	t.Run("acceptor", func(t *testing.T) {
		pub, admin := startChildRelay(t, "")
		fdFlood(t, pub, admin)
	})
	t.Run("reuseport", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		pub, admin := startChildRelay(t, addr)
		fdFlood(t, pub, admin)
	})
}

func fdFlood(t *testing.T, pub, admin string) {
	conns := make([]net.Conn, 0, 150)
	for i := 0; i < 150; i++ {
		c, err := net.Dial("tcp", pub)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")) // a partial upgrade, never finished
		conns = append(conns, c)
	}
	// Read every answer at once (the relay closes held ones after 10s).
	got := make(chan string, len(conns))
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			b, err := io.ReadAll(c)
			switch {
			case err == nil || strings.Contains(err.Error(), "reset"): // closed by the relay
				got <- string(b)
			case os.IsTimeout(err):
				got <- "held"
			default:
				got <- err.Error()
			}
		}()
	}
	held, refused := 0, 0
	for range conns {
		switch a := <-got; {
		case a == "held":
			held++
		case strings.HasPrefix(a, "HTTP/1.1 503"):
			refused++
		default:
			t.Fatalf("answer %q, want 503 or nothing yet", a)
		}
	}
	t.Logf("%d held, %d refused", held, refused)
	if refused == 0 || held == 0 || held > 128-64 {
		t.Fatalf("%d held, %d refused: want some refused and at most 64 held", held, refused)
	}
	if st := getStatus(t, "http://"+admin+"/readyz"); st != 200 {
		t.Fatalf("readyz under the flood: %d", st)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually(t, "an upgrade after the flood", func() bool {
		c, err := net.Dial("tcp", pub)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte(wsUpgrade()))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == http.StatusSwitchingProtocols
	})
	if st := getStatus(t, "http://"+admin+"/readyz"); st != 200 {
		t.Fatalf("readyz after the flood: %d", st)
	}
}

// startChildRelay runs TestHelperChildRelay in a child process and returns
// its public and admin addresses. The child ends with the test.
func startChildRelay(t *testing.T, listen string) (string, string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperChildRelay$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", childListenEnv+"="+listen)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child relay: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("child relay did not stop")
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "CHILD" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return f[1], f[2]
		}
	}
	t.Fatal("the child relay printed no addresses")
	return "", ""
}
