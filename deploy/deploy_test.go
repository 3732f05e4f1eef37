package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
)

const secret = "deploy-test-secret"

// TestHAProxyTLS runs the shipped haproxy.cfg, rewritten only for ports,
// paths and privileges, in front of a real relay started as the config's
// comment says (-trusted-proxies 127.0.0.1/32 -proxy-protocol -ip-exempt
// ""), here with one connection per client IP. Clients connect from
// 127.0.0.2 and 127.0.0.3 to HAProxy on 127.0.0.1, which reaches the relay
// from 127.0.0.1: a second WebSocket from 127.0.0.2 must be refused (429)
// while one from 127.0.0.3 is let in, which holds only if the relay counts
// the address the PROXY v2 header names, not the proxy's.
func TestHAProxyTLS(t *testing.T) {
	bin := lookTool(t, "haproxy")
	srv := startRelay(t, func(c *relay.Config) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.ProxyProtocol = true
		c.IPExempt = []string{}
		c.IPMaxConns = 1
	})
	dir := t.TempDir()
	pool, certFile := writeCert(t, dir)
	httpsPort, httpPort := freePort(t), freePort(t)
	cfg := renderHAProxy(t, map[string]string{
		"bind :443 ssl crt /etc/haproxy/certs/roomcast.pem": fmt.Sprintf("bind 127.0.0.1:%d ssl crt %s", httpsPort, certFile),
		"bind :80\n":                   fmt.Sprintf("bind 127.0.0.1:%d\n", httpPort),
		"server relay1 127.0.0.1:8080": "server relay1 " + srv.Addr(),
		"check port 9090":              "check port " + portOf(t, srv.AdminAddr()),
	})
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, bin, "-db", "-f", cfgFile)

	base := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	// The overlay over https://, HTTP/2 on the client side.
	page := waitOverlay(t, "https://"+base+"/overlay", tlsCfg)
	if !bytes.Contains(page, []byte("<html")) {
		t.Fatalf("/overlay over https:// is not the overlay page: %.200q", page)
	}

	// Plain HTTP is redirected to https://.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get(fmt.Sprintf("http://127.0.0.1:%d/overlay", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("http:// answered %d Location %q, want 301 to https://", resp.StatusCode, loc)
	}

	url := "wss://" + base + "/ws?token="
	alice := wsDial(t, url+mint(t, "alice"), "127.0.0.2", tlsCfg)
	if err := alice.tryDial(url+mint(t, "alice2"), "127.0.0.2", tlsCfg); !errors.Is(err, ws.StatusError(http.StatusTooManyRequests)) {
		t.Fatalf("second WebSocket from 127.0.0.2 through the proxy: %v, want HTTP 429 (one connection per client IP)", err)
	}
	bob := wsDial(t, url+mint(t, "bob"), "127.0.0.3", tlsCfg)

	// A message goes both ways over wss://.
	bob.send(`{"t":"join","room":"lobby","ref":1}`)
	bob.expect("joined")
	alice.send(`{"t":"join","room":"lobby","ref":1}`)
	alice.expect("joined")
	alice.send(`{"t":"send","room":"lobby","body":"gg","ref":2}`)
	if b := bob.expect("batch"); !strings.Contains(b, `"body":"gg"`) || !strings.Contains(b, `"from":"alice"`) {
		t.Fatalf("bob got %s, want alice's gg", b)
	}

	if n := scrape(t, "http://"+srv.AdminAddr()+"/metrics", `roomcast_handshake_failures_total{reason="ip_limit"}`); n != "1" {
		t.Fatalf(`roomcast_handshake_failures_total{reason="ip_limit"} = %q, want 1`, n)
	}
	if n := scrape(t, "http://"+srv.AdminAddr()+"/metrics", `roomcast_handshake_failures_total{reason="proxy"}`); n != "" && n != "0" {
		t.Fatalf(`roomcast_handshake_failures_total{reason="proxy"} = %s: HAProxy's PROXY header (or health check) was refused`, n)
	}
}

// renderHAProxy returns the shipped haproxy.cfg with each key of repl
// replaced (each must be there: a test that rewrites nothing tests
// nothing), the global settings that need root or a system log dropped,
// and logs sent to stderr.
func renderHAProxy(t *testing.T, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, line := range []string{"    chroot /var/lib/haproxy\n", "    user haproxy\n", "    group haproxy\n", "    daemon\n",
		"    stats socket /run/haproxy/admin.sock mode 660 level admin\n"} {
		repl[line] = ""
	}
	repl["    log /dev/log local0\n"] = "    log stderr format raw local0\n"
	repl["    maxconn 50000\n"] = "    maxconn 200\n"
	for from, to := range repl {
		if !strings.Contains(s, from) {
			t.Fatalf("haproxy.cfg no longer holds %q, which the test rewrites: update the test with the config", from)
		}
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

// lookTool finds a proxy binary: a skip without it, a failure in CI.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("needs %s (Debian package %s; .ci/run installs it): %v", name, name, err)
		}
		t.Fatalf("CI is set but %s is missing: %v", name, err)
	}
	return p
}

// runTool starts a proxy in the foreground, checked first; its output is
// shown if the test fails. It is killed at the end of the test.
func runTool(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, append([]string{"-c"}, args[1:]...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s rejects the rendered config: %v\n%s", bin, err, out)
	}
	var out lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRelay runs a real relay on loopback.
func startRelay(t *testing.T, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	cfg := relay.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Loops: 1, JWTSecret: secret, NodeID: "deploy-test"}
	mod(&cfg)
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// writeCert makes a CA and a certificate for localhost and 127.0.0.1
// signed by it, writes the certificate, the CA and the key to one PEM file
// (the form HAProxy's crt takes; nginx and Caddy read it as well) and
// returns a pool trusting the CA.
func writeCert(t *testing.T, dir string) (*x509.CertPool, string) {
	t.Helper()
	caKey := newKey(t)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "roomcast test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var pemBuf bytes.Buffer
	_ = pem.Encode(&pemBuf, &pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	_ = pem.Encode(&pemBuf, &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	_ = pem.Encode(&pemBuf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	file := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(file, pemBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, file
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitOverlay fetches url until the proxy is up (10 s at most) and returns
// the page; it must come over HTTP/2.
func waitOverlay(t *testing.T, url string, tlsCfg *tls.Config) []byte {
	t.Helper()
	// A clone: the transport adds "h2" to the config's NextProtos.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true,
		DialContext: fromAddr("127.0.0.4")}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				if resp.Proto != "HTTP/2.0" {
					t.Errorf("/overlay came over %s, want HTTP/2.0 (alpn h2)", resp.Proto)
				}
				return body
			}
			err = fmt.Errorf("HTTP %d %v: %.200q", resp.StatusCode, rerr, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s through HAProxy: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fromAddr dials from a given loopback address, so that the relay can tell
// clients apart behind the proxy.
func fromAddr(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.DialContext
}

func mint(t *testing.T, sub string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wsConn is a JSON-format WebSocket client over TLS.
type wsConn struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
}

func wsDial(t *testing.T, url, from string, tlsCfg *tls.Config) *wsConn {
	t.Helper()
	c := &wsConn{t: t}
	if err := c.tryDial(url, from, tlsCfg); err != nil {
		t.Fatalf("wss:// from %s: %v", from, err)
	}
	c.expect("hello")
	return c
}

// tryDial dials url from the address from; on success c holds the
// connection.
func (c *wsConn) tryDial(url, from string, tlsCfg *tls.Config) error {
	d := ws.Dialer{Protocols: []string{"roomcast.v1.json"}, TLSConfig: tlsCfg, Timeout: 5 * time.Second, NetDial: fromAddr(from)}
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return err
	}
	c.t.Cleanup(func() { conn.Close() })
	c.conn, c.r = conn, conn
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	return nil
}

func (c *wsConn) send(frame string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(frame)); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads frames until one of type typ and returns it as text.
func (c *wsConn) expect(typ string) string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rw := struct {
		io.Reader
		io.Writer
	}{c.r, c.conn}
	for {
		b, err := wsutil.ReadServerText(rw)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var f struct {
			T string `json:"t"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			c.t.Fatalf("frame %q: %v", b, err)
		}
		if f.T == typ {
			return string(b)
		}
		if f.T == "error" {
			c.t.Fatalf("waiting for %s: %s", typ, b)
		}
	}
}

// scrape returns the value of one sample line of the relay's metrics, ""
// if there is none.
func scrape(t *testing.T, url, series string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return v
		}
	}
	return ""
}
