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
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay"
	"github.com/roomcast/roomcast/relaytest"
	"github.com/roomcast/roomcast/relaytest/testrelay"
)

const secret = "deploy-test-secret"

// TestHAProxyTLS runs the shipped haproxy.cfg, rewritten only for ports,
// paths and privileges, in front of a real relay started as the config's
// comment says (-trusted-proxies 127.0.0.1/32 -proxy-protocol -ip-exempt=),
// here with one connection per client IP; checkClients says what must hold.
func TestHAProxyTLS(t *testing.T) {
	bin := lookTool(t, "haproxy")
	srv := startRelay(t, func(c *relay.Config) {
		behindProxy(c)
		c.ProxyProtocol = true
	})
	dir := t.TempDir()
	pool, certFile := writeCert(t, dir)
	httpsPort, httpPort := freePort(t), freePort(t)
	cfg := render(t, "haproxy.cfg", map[string]string{
		"bind :443 ssl crt /etc/haproxy/certs/roomcast.pem": fmt.Sprintf("bind 127.0.0.1:%d ssl crt %s", httpsPort, certFile),
		"bind :80\n":                   fmt.Sprintf("bind 127.0.0.1:%d\n", httpPort),
		"server relay1 127.0.0.1:8080": "server relay1 " + srv.Addr(),
		"check port 9090":              "check port " + portOf(t, srv.AdminAddr()),
		// What needs root or a system log.
		"    chroot /var/lib/haproxy\n": "",
		"    user haproxy\n":            "",
		"    group haproxy\n":           "",
		"    daemon\n":                  "",
		"    stats socket /run/haproxy/admin.sock mode 660 level admin\n": "",
		"    log /dev/log local0\n":                                       "    log stderr format raw local0\n",
		"    maxconn 50000\n":                                             "    maxconn 200\n",
	})
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, bin, []string{"-c", "-f", cfgFile}, "-db", "-f", cfgFile)
	checkClients(t, srv, httpsPort, httpPort, &tls.Config{RootCAs: pool, ServerName: "localhost"})
}

// TestNginxTLS runs the shipped nginx.conf (an http-block file) in a
// minimal main configuration, rewritten only for ports, certificate paths
// and the relay's address, in front of a real relay started as its comment
// says (-trusted-proxies 127.0.0.1/32 -ip-exempt=), here with one
// connection per client IP; checkClients says what must hold.
func TestNginxTLS(t *testing.T) {
	bin := lookTool(t, "nginx")
	srv := startRelay(t, behindProxy)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // nginx workers run as nobody when started as root
		t.Fatal(err)
	}
	pool, certFile := writeCert(t, dir)
	httpsPort, httpPort := freePort(t), freePort(t)
	site := render(t, "nginx.conf", map[string]string{
		"    listen 80;\n":                                     fmt.Sprintf("    listen 127.0.0.1:%d;\n", httpPort),
		"    listen 443 ssl http2;\n":                          fmt.Sprintf("    listen 127.0.0.1:%d ssl http2;\n", httpsPort),
		"    listen [::]:80;\n":                                "", // the test machine may have no IPv6
		"    listen [::]:443 ssl http2;\n":                     "",
		"/etc/letsencrypt/live/chat.example.com/fullchain.pem": certFile,
		"/etc/letsencrypt/live/chat.example.com/privkey.pem":   certFile,
		"server 127.0.0.1:8080;":                               "server " + srv.Addr() + ";",
		"return 301 https://$host$request_uri;":                fmt.Sprintf("return 301 https://$host:%d$request_uri;", httpsPort),
	})
	main := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log stderr notice;
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/roomcast.conf;
}
`, dir)
	for name, text := range map[string]string{"roomcast.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-p", dir, "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf")}
	runTool(t, bin, append([]string{"-t"}, args...), args...)
	checkClients(t, srv, httpsPort, httpPort, &tls.Config{RootCAs: pool, ServerName: "localhost"})
}

// checkClients checks a TLS proxy on 127.0.0.1 in front of srv, which
// allows one connection per client IP. Clients connect from other loopback
// addresses (127.0.0.2 to .5), while the proxy reaches the relay from
// 127.0.0.1:
//   - the overlay loads over https:// (HTTP/2), plain http:// redirects
//     permanently (301, Caddy 308);
//   - a WebSocket over wss:// from 127.0.0.2 is let in, a second one from
//     there is refused with 429 even though it names another address in
//     its own X-Forwarded-For, and one from 127.0.0.3 is let in: the relay
//     counts the address the proxy vouches for, not the proxy's nor the
//     client's word;
//   - a message goes from one WebSocket to another and to an /sse stream
//     at once (no buffering in the proxy).
func checkClients(t *testing.T, srv *relay.Server, httpsPort, httpPort int, tlsCfg *tls.Config) {
	base := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	page := waitOverlay(t, "https://"+base+"/overlay", tlsCfg)
	if !bytes.Contains(page, []byte("<html")) {
		t.Fatalf("/overlay over https:// is not the overlay page: %.200q", page)
	}

	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get(fmt.Sprintf("http://127.0.0.1:%d/overlay", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	permanent := resp.StatusCode == http.StatusMovedPermanently || resp.StatusCode == http.StatusPermanentRedirect // Caddy: 308
	if loc := resp.Header.Get("Location"); !permanent || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("http:// answered %d Location %q, want 301 or 308 to https://", resp.StatusCode, loc)
	}

	url := "wss://" + base + "/ws?token="
	alice := wsDial(t, url+mint(t, "alice"), "127.0.0.2", tlsCfg)
	forged := http.Header{"X-Forwarded-For": {"198.51.100.7"}, "X-Real-Ip": {"198.51.100.7"}}
	if err := alice.tryDial(url+mint(t, "alice2"), "127.0.0.2", tlsCfg, forged); !errors.Is(err, ws.StatusError(http.StatusTooManyRequests)) {
		t.Fatalf("second WebSocket from 127.0.0.2 through the proxy: %v, want HTTP 429 (one connection per client IP)", err)
	}
	bob := wsDial(t, url+mint(t, "bob"), "127.0.0.3", tlsCfg)

	bob.send(`{"t":"join","room":"lobby","ref":1}`)
	bob.expect("joined")
	events := openSSE(t, "https://"+base+"/sse?room=lobby&token="+mint(t, "carol"), "127.0.0.5", tlsCfg)
	alice.send(`{"t":"join","room":"lobby","ref":1}`)
	alice.expect("joined")
	alice.send(`{"t":"send","room":"lobby","body":"gg","ref":2}`)
	if b := bob.expect("batch"); !strings.Contains(b, `"body":"gg"`) || !strings.Contains(b, `"from":"alice"`) {
		t.Fatalf("bob got %s, want alice's gg", b)
	}
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case line, ok := <-events:
			if !ok {
				t.Fatal("/sse through the proxy ended before alice's message")
			}
			got = strings.HasPrefix(line, "data:") && strings.Contains(line, `"body":"gg"`)
		case <-deadline:
			t.Fatal("alice's message did not reach /sse through the proxy within 5 s (buffered?)")
		}
	}

	if n := scrape(t, "http://"+srv.AdminAddr()+"/metrics", `roomcast_handshake_failures_total{reason="ip_limit"}`); n != "1" {
		t.Fatalf(`roomcast_handshake_failures_total{reason="ip_limit"} = %q, want 1`, n)
	}
	if n := scrape(t, "http://"+srv.AdminAddr()+"/metrics", `roomcast_handshake_failures_total{reason="proxy"}`); n != "" && n != "0" {
		t.Fatalf(`roomcast_handshake_failures_total{reason="proxy"} = %s: the proxy's PROXY header (or health check) was refused`, n)
	}
}

// openSSE opens an event stream from the address from and returns its
// lines; the stream is closed at the end of the test.
func openSSE(t *testing.T, url, from string, tlsCfg *tls.Config) <-chan string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true, DialContext: fromAddr(from)}}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /sse: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET /sse: %s %s", resp.Status, body)
	}
	lines := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return lines
}

// render returns the shipped file name with each key of repl replaced;
// each must be there, so that the test and the file cannot drift apart.
func render(t *testing.T, name string, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for from, to := range repl {
		if !strings.Contains(s, from) {
			t.Fatalf("%s no longer holds %q, which the test rewrites: update the test with the file", name, from)
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
		p, err = exec.LookPath("/usr/sbin/" + name) // not on a non-root PATH
	}
	if err != nil {
		if os.Getenv("CI") == "" {
			msg := fmt.Sprintf("needs %s (Debian package %s; .ci/run installs it): %v", name, name, err)
			fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), msg) // shown without -v too
			t.Skip(msg)
		}
		t.Fatalf("CI is set but %s is missing: %v", name, err)
	}
	return p
}

// runTool checks a proxy's configuration (bin checkArgs...), then starts
// it in the foreground (bin args...); its output is shown if the test
// fails. It is killed at the end of the test.
func runTool(t *testing.T, bin string, checkArgs []string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, checkArgs...).CombinedOutput(); err != nil {
		t.Fatalf("%s rejects the rendered config: %v\n%s", bin, err, out)
	}
	var out relaytest.SyncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, killed whole: nginx's workers outlive their
	// master otherwise (and hold the output pipe open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the master stops and reaps its workers
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}

// startRelay runs a real relay on loopback.
func startRelay(t *testing.T, mod func(*relay.Config)) *relay.Server {
	t.Helper()
	cfg := testrelay.Config(secret)
	cfg.Loops, cfg.NodeID = 1, "deploy-test"
	return testrelay.Start(t, cfg, mod)
}

// behindProxy is the relay's configuration behind a proxy on loopback, as
// the shipped files' comments say (-trusted-proxies 127.0.0.1/32
// -ip-exempt=), with one connection per client IP for checkClients.
func behindProxy(c *relay.Config) {
	c.TrustedProxies = []string{"127.0.0.1/32"}
	c.IPExempt = []string{}
	c.IPMaxConns = 1
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
	return relaytest.Sign(t, secret, jwt.MapClaims{"sub": sub})
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
func (c *wsConn) tryDial(url, from string, tlsCfg *tls.Config, header ...http.Header) error {
	d := ws.Dialer{Protocols: []string{"roomcast.v1.json"}, TLSConfig: tlsCfg, Timeout: 5 * time.Second, NetDial: fromAddr(from)}
	if len(header) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(header[0])
	}
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
