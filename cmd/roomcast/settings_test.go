package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite README's flag table from the settings table")

// clearSettingsEnv keeps every ROOMCAST_<NAME> of the table out of the test.
func clearSettingsEnv(t *testing.T) {
	t.Helper()
	for _, s := range settings(&options{}) {
		t.Setenv(envName(s.name), "") // restored after the test
		os.Unsetenv(envName(s.name))
	}
}

// readmeFlags returns README, the start and end of its flag table, and the
// table's rows by flag name.
func readmeFlags(t *testing.T) (readme string, start, end int, rows map[string]string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme = string(b)
	sec := strings.Index(readme, "\n## Flags\n")
	start = strings.Index(readme[sec+1:], "| flag | default | meaning |\n") + sec + 1
	if sec < 0 || start <= sec {
		t.Fatal("README has no ## Flags table")
	}
	end = strings.Index(readme[start:], "\n\n") + start + 1
	rows = map[string]string{}
	name := regexp.MustCompile("^\\| `-([a-z0-9-]+)`")
	for _, line := range strings.Split(readme[start:end], "\n")[2:] {
		if line == "" {
			continue
		}
		m := name.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("README flag row names no single flag: %s", line)
			continue
		}
		rows[m[1]] = line
	}
	return readme, start, end, rows
}

// TestSettingsREADME keeps README's flag table and the settings table in
// step: every setting has its row with its default and meaning, and no row
// names a flag that does not exist. go test -run TestSettingsREADME -update
// rewrites the table.
func TestSettingsREADME(t *testing.T) {
	table := settings(&options{})
	want := readmeTable(table)
	readme, start, end, rows := readmeFlags(t)
	if *update {
		if err := os.WriteFile("../../README.md", []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		readme, start, end, rows = readmeFlags(t)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	register(fs, settings(&options{}))
	for name := range rows {
		if fs.Lookup(name) == nil {
			t.Errorf("README names -%s, which is no flag", name)
		}
	}
	for _, line := range strings.Split(want, "\n")[2:] {
		if line == "" {
			continue
		}
		name := strings.TrimPrefix(strings.SplitN(line, "`", 3)[1], "-")
		if rows[name] != line {
			t.Errorf("README row of -%s:\n got %s\nwant %s", name, rows[name], line)
		}
	}
	if readme[start:end] != want {
		t.Errorf("README's flag table is not the settings table; go test ./cmd/roomcast -run TestSettingsREADME -update")
	}
}

// TestSettingsKeepFlagDefaults: the flags and defaults operators' scripts
// use stay as they were before the table.
func TestSettingsKeepFlagDefaults(t *testing.T) {
	old := map[string]string{
		"abuse-strikes": "10", "admin": "127.0.0.1:9090", "allowed-origins": "", "anonymous": "true", "api-key": "",
		"config": "", "data-dir": "", "history": "100", "idle-timeout": "1m0s", "ip-conn-burst": "50", "ip-conn-rate": "20",
		"ip-exempt": "127.0.0.0/8,::1/128", "ip-max-conns": "500", "ip-room-burst": "50", "ip-room-rate": "5",
		"join-burst": "32", "join-rate": "2", "jwt-public-key": "", "jwt-secret": "", "listen": ":8080", "loops": "0",
		"max-body": "500", "max-conns": "0", "max-frame": "65536", "max-outbound": "1048576", "max-rooms": "32",
		"max-rooms-total": "100000", "nats": "", "nats-replicas": "1", "nats-stream": "ROOMCAST", "node": "",
		"ping-interval": "25s", "proxy-protocol": "false", "send-burst": "20", "send-rate": "0.6666666666666666",
		"trusted-proxies": "",
		// the room engine's, new with the table
		"batch-msgs": "256", "batch-bytes": "65536", "presence-interval": "1s", "empty-room-ttl": "10m0s",
		"compression":     "true",   // issue 13
		"presence-window": "50ms",   // issue 13 part 4
		"send-buffer":     "262144", // stalled readers' kernel memory bounded
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	register(fs, settings(&options{}))
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if d, ok := old[f.Name]; !ok {
			t.Errorf("new flag -%s: add it here", f.Name)
		} else if f.DefValue != d {
			t.Errorf("-%s default %q, was %q", f.Name, f.DefValue, d)
		}
	})
	if n != len(old) {
		t.Errorf("%d flags, want %d", n, len(old))
	}
}

// other returns a value of s other than its default, as text and as the
// value it parses to.
func other(s setting) (string, any) {
	switch d := s.def.(type) {
	case string:
		return "v-" + s.name, "v-" + s.name
	case int:
		return fmt.Sprint(d + 7), d + 7
	case bool:
		return fmt.Sprint(!d), !d
	case float64:
		return fmt.Sprint(d + 1.5), d + 1.5
	case time.Duration:
		return (d + 3*time.Second).String(), d + 3*time.Second
	}
	panic(s.name)
}

// TestSettingsEnvAndFile sets every setting of the table through
// ROOMCAST_<NAME>, through its YAML key, and through both with the flag
// given too: the command line wins over the environment, which wins over
// the file.
func TestSettingsEnvAndFile(t *testing.T) {
	clearSettingsEnv(t)
	for _, s := range settings(&options{}) {
		if s.name == "config" {
			continue
		}
		text, want := other(s)
		parse := func(args []string, env string, yml string) any {
			t.Helper()
			os.Unsetenv(envName(s.name))
			if env != "" {
				os.Setenv(envName(s.name), env)
			}
			file := ""
			if yml != "" {
				file = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(file, []byte(s.name+": "+yml+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var o options
			table := settings(&o)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			register(fs, table)
			if err := fs.Parse(args); err != nil {
				t.Fatalf("-%s: %v", s.name, err)
			}
			if _, err := applyEnvAndFile(fs, file); err != nil {
				t.Fatalf("-%s: %v", s.name, err)
			}
			for _, x := range table {
				if x.name == s.name {
					return reflect.ValueOf(x.ptr).Elem().Interface()
				}
			}
			return nil
		}
		if got := parse(nil, "", ""); got != s.def {
			t.Errorf("-%s: nothing set gives %v, want the default %v", s.name, got, s.def)
		}
		if got := parse(nil, text, ""); got != want {
			t.Errorf("%s=%s gives %v", envName(s.name), text, got)
		}
		if got := parse(nil, "", text); got != want {
			t.Errorf("YAML %s: %s gives %v", s.name, text, got)
		}
		defText := fmt.Sprint(s.def)
		if d, ok := s.def.(time.Duration); ok {
			defText = d.String()
		}
		if got := parse(nil, text, defText); got != want {
			t.Errorf("-%s: the file won over the environment: %v", s.name, got)
		}
		if got := parse([]string{"-" + s.name + "=" + defText}, text, text); got != s.def {
			t.Errorf("-%s: the environment or file won over the command line: %v", s.name, got)
		}
	}
}

// TestSettingsLoad: load turns the table's values into a relay.Config:
// -history 0 means none, -anonymous=false, lists, the room engine's batch
// settings, the YAML file's namespaces, webhooks and inbox_namespace, and
// the file named by ROOMCAST_CONFIG.
func TestSettingsLoad(t *testing.T) {
	clearSettingsEnv(t)
	file := filepath.Join(t.TempDir(), "roomcast.yaml")
	yml := "batch-bytes: 4096\nempty-room-ttl: 90s\nmax-body: 300\ninbox_namespace: dm\nnats-stream:\n" +
		"namespaces:\n  dm:\n    whispers: false\nwebhooks:\n  - url: http://127.0.0.1:7000/events\n    secret: s\n"
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROOMCAST_CONFIG", file)
	t.Setenv("ROOMCAST_PRESENCE_INTERVAL", "3s")
	t.Setenv("ROOMCAST_MAX_BODY", "400")
	t.Setenv("ROOMCAST_COMPRESSION", "false")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg, given, err := load(fs, []string{"-history", "0", "-anonymous=false", "-batch-msgs", "16",
		"-trusted-proxies", "10.0.0.0/8, 192.168.0.0/16", "-ip-exempt", ""})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.History != -1 || !cfg.NoAnonymous || !given["history"] || given["max-body"] {
		t.Errorf("history %d, NoAnonymous %v, given %v", cfg.History, cfg.NoAnonymous, given)
	}
	if !cfg.NoCompression {
		t.Error("ROOMCAST_COMPRESSION=false left compression on")
	}
	h := cfg.Hub
	if h.MaxBatchMsgs != 16 || h.MaxBatchBytes != 4096 || h.PresenceInterval != 3*time.Second || h.EmptyRoomTTL != 90*time.Second {
		t.Errorf("hub %+v", h)
	}
	if cfg.MaxBody != 400 || cfg.InboxNamespace != "dm" || *cfg.Namespaces["dm"].Whispers || len(cfg.Webhooks) != 1 {
		t.Errorf("max-body %d, inbox %q, namespaces %+v, webhooks %+v", cfg.MaxBody, cfg.InboxNamespace, cfg.Namespaces, cfg.Webhooks)
	}
	if cfg.NATSStream != "" { // "nats-stream:" with no value is empty, natsbus's default
		t.Errorf("nats-stream %q", cfg.NATSStream)
	}
	if !reflect.DeepEqual(cfg.TrustedProxies, []string{"10.0.0.0/8", "192.168.0.0/16"}) || cfg.IPExempt == nil || len(cfg.IPExempt) != 0 {
		t.Errorf("proxies %q, exempt %#v", cfg.TrustedProxies, cfg.IPExempt)
	}
	// A key of no setting is refused, naming it.
	if err := os.WriteFile(file, []byte("batch-size: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := load(flag.NewFlagSet("t", flag.ContinueOnError), nil); err == nil || !strings.Contains(err.Error(), `"batch-size"`) {
		t.Errorf("unknown key: %v", err)
	}
}

// TestSettingsUsagePlain: README marks code in the meanings with backquotes;
// -h must show them plain, and the value placeholder must stay the type's
// (the flag package takes a backquoted word of a usage for its name).
func TestSettingsUsagePlain(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	table := settings(&options{})
	register(fs, table)
	marked := 0
	for _, s := range table {
		f := fs.Lookup(s.name)
		if strings.Contains(f.Usage, "`") {
			t.Errorf("-%s: -h meaning has backquotes: %q", s.name, f.Usage)
		}
		if strings.Contains(s.usage, "`") {
			marked++
		}
		if strings.Count(s.usage, "`")%2 != 0 {
			t.Errorf("-%s: unbalanced backquotes in %q", s.name, s.usage)
		}
	}
	if marked == 0 {
		t.Error("no meaning marks code for README")
	}
}
