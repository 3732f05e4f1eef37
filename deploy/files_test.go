package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what the image promises without a Docker daemon:
// the builder's Go is the one go.mod asks for, the binary is static, the
// packages it builds exist, it runs as non-root with a HEALTHCHECK.
func TestDockerfile(t *testing.T) {
	df := read(t, "Dockerfile")
	gomod := read(t, "../go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	if goVer == nil || !strings.Contains(df, "FROM golang:"+goVer[1]+"-") {
		t.Errorf("the build stage is not golang:%v (go.mod's go line)", goVer)
	}
	for _, want := range []string{"ENV CGO_ENABLED=0", "USER nonroot:nonroot", `HEALTHCHECK `, `ENTRYPOINT ["/usr/local/bin/roomcast"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, m := range regexp.MustCompile(`go build .* (\./\S+)`).FindAllStringSubmatch(df, -1) {
		if _, err := os.Stat(filepath.Join("..", m[1], "main.go")); err != nil {
			t.Errorf("Dockerfile builds %s: %v", m[1], err)
		}
	}
	if strings.Count(df, "\nFROM ") != 2 {
		t.Error("Dockerfile is not a two-stage build")
	}
}

// TestSystemdUnit checks the unit's essentials, and runs systemd-analyze
// verify on it when the host has systemd-analyze.
func TestSystemdUnit(t *testing.T) {
	unit := read(t, "roomcast.service")
	for _, want := range []string{"LimitNOFILE=", "Restart=on-failure", "EnvironmentFile=/etc/roomcast/roomcast.env",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "DynamicUser=yes", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("roomcast.service lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^ExecStart=.*-(jwt-secret|api-key)`).MatchString(unit) {
		t.Error("roomcast.service passes a secret as a flag")
	}
	env := read(t, "roomcast.env")
	for _, want := range []string{"ROOMCAST_JWT_SECRET=", "ROOMCAST_API_KEY="} {
		if !strings.Contains(env, want) {
			t.Errorf("roomcast.env lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("no systemd-analyze: unit not verified")
		return
	}
	// verify wants the ExecStart binary to exist: point it at one that does.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "roomcast.service")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(unit, "/usr/local/bin/roomcast", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only what it says about this unit counts: the host's own units may
	// draw warnings too.
	out, err := exec.Command(analyze, "verify", f).CombinedOutput()
	if strings.Contains(string(out), "roomcast.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
