package deploy_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCaddyTLS runs the shipped Caddyfile, rewritten only for the site's
// name, ports, the test's certificate and the relay's addresses, in front
// of a real relay started as its comment says (-trusted-proxies
// 127.0.0.1/32 -ip-exempt=), here with one connection per client IP;
// checkClients says what must hold. Global options keep Caddy local: no
// admin endpoint, no ACME (the test's certificate), no trust store, its
// listeners and state on loopback and in the test's directory. Caddy's
// automatic http:// to https:// redirect stays on, as in production: it
// listens on the test's http_port (its 308's Location names no port, and
// the test does not follow it).
func TestCaddyTLS(t *testing.T) {
	bin := lookTool(t, "caddy")
	srv := startRelay(t, behindProxy)
	dir := t.TempDir()
	pool, certFile := writeCert(t, dir)
	httpsPort, httpPort := freePort(t), freePort(t)
	global := fmt.Sprintf(`{
	admin off
	skip_install_trust
	default_bind 127.0.0.1
	http_port %d
	https_port %d
	storage file_system %s
}

localhost, 127.0.0.1 {
	tls %s %s
`, httpPort, httpsPort, filepath.Join(dir, "caddy"), certFile, certFile)
	cfg := render(t, "Caddyfile", map[string]string{
		"chat.example.com {\n":         global,
		"reverse_proxy 127.0.0.1:8080": "reverse_proxy " + srv.Addr(),
		"health_port 9090":             "health_port " + portOf(t, srv.AdminAddr()),
	})
	cfgFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Caddy keeps state under $HOME and the XDG directories: the test's.
	for _, k := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(k, dir)
	}
	args := []string{"--config", cfgFile, "--adapter", "caddyfile"}
	runTool(t, bin, append([]string{"validate"}, args...), append([]string{"run"}, args...)...)
	checkClients(t, srv, httpsPort, httpPort, &tls.Config{RootCAs: pool, ServerName: "localhost"})
}
