// Command roomcast runs a roomcast relay.
//
// Every flag can also be set in the environment as ROOMCAST_<NAME> (upper
// case, '-' as '_') and in a YAML file given by -config, whose keys are the
// flag names. A flag on the command line wins over the environment, which
// wins over the file.
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
		fmt.Fprintf(stderr, "usage: roomcast [flags]       run the relay\n       roomcast token [flags] print a user token (roomcast token -h)\n\nflags (also ROOMCAST_<NAME> in the environment, or keys of the -config file):\n")
		fs.PrintDefaults()
	}
	var cfg relay.Config
	configFile := fs.String("config", "", "YAML file of settings, keyed by flag name")
	fs.StringVar(&cfg.Listen, "listen", ":8080", "public listener: WebSocket at /ws")
	fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:9090", `admin listener: /metrics, /healthz, /readyz ("off" to disable)`)
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "HS256 secret that signs user tokens")
	pubKey := fs.String("jwt-public-key", "", "PEM file of the public key of RS256 or EdDSA user tokens")
	fs.StringVar(&cfg.APIKey, "api-key", "", "bearer key of the admin API (empty: the API answers 403)")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops (0: one per CPU)")
	fs.IntVar(&cfg.MaxFrame, "max-frame", 64<<10, "largest client frame or reassembled message, in bytes (close 1009)")
	fs.IntVar(&cfg.MaxBody, "max-body", 500, "largest message body, in characters")
	fs.IntVar(&cfg.MaxRooms, "max-rooms", 32, "rooms one connection may join")
	fs.IntVar(&cfg.MaxRoomsTotal, "max-rooms-total", 100_000, "rooms this relay may hold (-1: no limit); joins past it get unavailable (HTTP 503)")
	fs.IntVar(&cfg.MaxOutbound, "max-outbound", 1<<20, "bytes queued for a slow connection before close 4009")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 60*time.Second, "close 4000 after this long without anything received")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 25*time.Second, "how often the relay pings each connection")
	fs.IntVar(&cfg.History, "history", 100, "messages kept per room for join history and resume (0 or -1: none)")
	fs.Float64Var(&cfg.SendRate, "send-rate", 20.0/30, "messages per second a user may send, sustained")
	fs.IntVar(&cfg.SendBurst, "send-burst", 20, "messages a user may send in a burst")
	anonymous := fs.Bool("anonymous", true, "let connections without a token in as read-only viewers")
	origins := fs.String("allowed-origins", "", "comma-separated Origin values browsers may connect from (empty: any)")
	fs.IntVar(&cfg.AbuseStrikes, "abuse-strikes", 10, "rate_limited answers in a row before close 1008")
	fs.Float64Var(&cfg.JoinRate.Rate, "join-rate", 2, "joins per second per connection, sustained")
	fs.IntVar(&cfg.JoinRate.Burst, "join-burst", 32, "joins per connection in a burst")
	fs.Float64Var(&cfg.IPConnRate.Rate, "ip-conn-rate", 20, "new connections per second per client IP (HTTP 429 past it)")
	fs.IntVar(&cfg.IPConnRate.Burst, "ip-conn-burst", 50, "new connections per client IP in a burst")
	fs.IntVar(&cfg.IPMaxConns, "ip-max-conns", 500, "open connections per client IP (HTTP 429 past it)")
	fs.Float64Var(&cfg.IPRoomRate.Rate, "ip-room-rate", 5, "rooms a client IP may create per second, by joining or streaming a room that does not exist (rate_limited, HTTP 429 past it)")
	fs.IntVar(&cfg.IPRoomRate.Burst, "ip-room-burst", 50, "rooms a client IP may create in a burst")
	exempt := fs.String("ip-exempt", "127.0.0.0/8,::1/128", "comma-separated CIDRs free of per-IP limits")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For, X-Real-IP and PROXY headers name the client (empty: none)")
	fs.BoolVar(&cfg.ProxyProtocol, "proxy-protocol", false, "connections from -trusted-proxies start with a PROXY protocol v1/v2 header (required from them)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "open connections on the public listener, then HTTP 503 (0: the file descriptor limit less max(64, limit/10); -1: no cap)")
	fs.StringVar(&cfg.NodeID, "node", "", "this node's name in hello (empty: the host name)")
	fs.StringVar(&cfg.NATS, "nats", "", "NATS servers (comma-separated URLs) whose JetStream this relay shares rooms through with other relays (empty: none)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "keep rooms durable in an embedded NATS JetStream file store in this directory (without -nats; empty: rooms live in memory)")
	fs.StringVar(&cfg.NATSStream, "nats-stream", "ROOMCAST", "JetStream stream holding the rooms (-nats, -data-dir)")
	fs.IntVar(&cfg.NATSReplicas, "nats-replicas", 1, "replicas of the stream when this relay creates it (-nats)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := cmdline(fs)
	doc, err := applyEnvAndFile(fs, *configFile)
	if err != nil {
		return err
	}
	cfg.Namespaces, cfg.Webhooks, cfg.InboxNamespace = doc.Namespaces, doc.Webhooks, doc.InboxNamespace
	cfg.NoAnonymous = !*anonymous
	cfg.AllowedOrigins = splitList(*origins)
	cfg.IPExempt = splitList(*exempt)
	cfg.TrustedProxies = splitList(*proxies)
	if cfg.IPExempt == nil {
		cfg.IPExempt = []string{} // none exempt, not the default
	}
	if *pubKey != "" {
		if cfg.JWTPublicKey, err = os.ReadFile(*pubKey); err != nil {
			return fmt.Errorf("cannot read -jwt-public-key: %w", err)
		}
	}
	if cfg.History == 0 {
		cfg.History = -1 // -history 0 means none; relay.Config's zero means the default
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
