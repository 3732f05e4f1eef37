// Command roomcast runs a roomcast relay.
//
// Its settings are one table (settings.go): every one is a flag, can also
// be set in the environment as ROOMCAST_<NAME> (upper case, '-' as '_') and
// in a YAML file given by -config, whose keys are the flag names. A flag on
// the command line wins over the environment, which wins over the file.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"github.com/roomcast/roomcast/relay"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "roomcast:", err)
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return mintToken(args[1:], os.Stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "tail" || args[0] == "chat") {
		return clientCommand(args[0], args[1:], stderr)
	}
	fs := flag.NewFlagSet("roomcast", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: roomcast [flags]       run the relay\n       roomcast token [flags] print a user token (roomcast token -h)\n       roomcast tail [flags] ROOM...  print a room's messages as JSON lines (roomcast tail -h)\n       roomcast chat [flags] ROOM     send stdin lines, print the room (roomcast chat -h)\n\nflags (also ROOMCAST_<NAME> in the environment, or keys of the -config file):\n")
		fs.PrintDefaults()
	}
	cfg, given, err := load(fs, args)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	if err := checkConfig(&cfg, given); err != nil {
		return err
	}
	return serve(cfg, stderr)
}

// configFile is what a YAML config holds besides flags.
type configFile struct {
	Namespaces     map[string]relay.Namespace `yaml:"namespaces"`
	Webhooks       []relay.Webhook            `yaml:"webhooks"`        // see README, Your backend
	InboxNamespace string                     `yaml:"inbox_namespace"` // relay.Config.InboxNamespace
	Flags          map[string]any             `yaml:",inline"`
}

// applyEnvAndFile sets every flag not given on the command line from
// ROOMCAST_<NAME>, else from the YAML file, and returns the file's other
// settings: namespaces (room policies), webhooks, the inbox namespace.
func applyEnvAndFile(fs *flag.FlagSet, file string) (configFile, error) {
	var doc configFile
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return doc, fmt.Errorf("cannot read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil && err != io.EOF {
			return doc, fmt.Errorf("cannot parse config %s: %w", file, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for key := range doc.Flags {
		if fs.Lookup(key) == nil || key == "config" {
			return doc, fmt.Errorf("config %s: unknown key %q", file, key)
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "ROOMCAST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
			return
		}
		if v, ok := doc.Flags[f.Name]; ok {
			if v == nil {
				v = "" // "key:" with no value
			}
			if e := fs.Set(f.Name, fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("config %s: %s: %w", file, f.Name, e)
			}
		}
	})
	return doc, err
}

// splitList splits a comma-separated flag value; empty gives nil.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// serve runs the relay until SIGINT or SIGTERM, then drains it.
func serve(cfg relay.Config, stderr io.Writer) error {
	srv, err := relay.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	writeBanner(stderr, cfg, srv.Addr(), srv.AdminAddr(), dataMode(cfg))
	var failed error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("draining: closing connections with 1001")
	case failed = <-srv.Done(): // the public listener is gone: exit non-zero so a supervisor restarts us
	}
	drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(drain)
	if failed != nil {
		return failed
	}
	return err
}

// mintToken prints an HS256 token, for trying the relay and for scripts. A
// game backend mints its own the same way (see README).
func mintToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("jwt-secret", os.Getenv("ROOMCAST_JWT_SECRET"), "HS256 secret (the relay's -jwt-secret)")
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name")
	role := fs.String("role", "user", "user, mod, admin or bot")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime (0: never expires)")
	rooms := fs.String("rooms", "", `comma-separated rooms the user may join, "lobby:*" by prefix (not given: all)`)
	badges := fs.String("badges", "", "comma-separated badges the relay copies into the user's messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" || *sub == "" {
		return errors.New("token: -jwt-secret and -sub are required")
	}
	claims, err := tokenClaims(*sub, *name, *role, *ttl, cmdline(fs)["rooms"], *rooms, *badges)
	if err != nil {
		return err
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(*secret))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
