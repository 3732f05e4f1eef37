package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/roomcast/roomcast/relay"
)

// setting is one row of the relay's settings: the flag -<name>, the
// environment variable ROOMCAST_<NAME> and the YAML key <name> of the
// -config file. The table drives the flags, -h, the environment, the file
// and README's "## Flags" table (settings_test.go keeps README in step).
type setting struct {
	name  string
	ptr   any    // *string, *int, *bool, *float64 or *time.Duration the value is parsed into
	def   any    // the default, of the type *ptr is
	shown string // README's default column when it is not def itself (e.g. "one per CPU")
	usage string // the meaning, for README with `code` in backquotes (-h shows it without them); no '|'
}

// options are the values of the settings that are not relay.Config fields
// as they stand; resolve turns them into fields.
type options struct {
	cfg        relay.Config
	configFile string
	pubKey     string
	anonymous  bool
	origins    string
	exempt     string
	proxies    string
	compress   bool
}

// settings returns the table, each row bound to its field of o. The
// defaults come from relay.Defaults (shard's for the batch settings).
func settings(o *options) []setting {
	d, c := relay.Defaults(), &o.cfg
	return []setting{
		{"listen", &c.Listen, d.Listen, "", "public listener: WebSocket at `/ws`"},
		{"admin", &c.Admin, d.Admin, "", "admin listener: API, `/metrics`, `/healthz`, `/readyz`, `/debug/pprof/`, `/debug/runtime` (`off` to disable)"},
		{"config", &o.configFile, "", "", "YAML file of settings, keyed by flag name, plus `namespaces` (room policies), `inbox_namespace` and `webhooks` (see Your backend)"},
		{"jwt-secret", &c.JWTSecret, "", "", "HS256 secret that signs user tokens (give it as `ROOMCAST_JWT_SECRET`: a flag shows in `ps`)"},
		{"jwt-public-key", &o.pubKey, "", "", "PEM file of the public key of RS256 (RSA) or EdDSA (Ed25519) user tokens"},
		{"anonymous", &o.anonymous, true, "", "let connections without a token in as read-only viewers"},
		{"allowed-origins", &o.origins, "", "any", "comma-separated Origin values browsers may connect from (others: HTTP 403; empty: any); clients sending no Origin pass"},
		{"api-key", &c.APIKey, "", "", "bearer key of the admin API (empty: the API answers 403; give it as `ROOMCAST_API_KEY`)"},
		{"loops", &c.Loops, 0, "one per CPU", "event loops (`0`: one per CPU)"},
		{"max-frame", &c.MaxFrame, d.MaxFrame, "", "largest client frame or reassembled message, in bytes (close `1009`)"},
		{"max-body", &c.MaxBody, d.MaxBody, "", "largest message body, in characters"},
		{"max-rooms", &c.MaxRooms, d.MaxRooms, "", "rooms one connection may join"},
		{"max-rooms-total", &c.MaxRoomsTotal, d.MaxRoomsTotal, "", "rooms this relay may hold (`-1`: no limit); joins past it get `unavailable` (HTTP 503)"},
		{"max-outbound", &c.MaxOutbound, d.MaxOutbound, "", "bytes queued for a slow connection (every frame: room traffic, replies, pongs) before close `4009`"},
		// The binary's own default: relay.Config's zero keeps the kernel's
		// autotuning for embedders (relay/proto/PROTOCOL.md, slow consumers).
		{"send-buffer", &c.SendBuffer, 256 << 10, "", "kernel send buffer of each public connection, in bytes (`SO_SNDBUF`; `0`: the kernel's autotuning, up to 4 MiB per connection on Linux): what a reader that stops reading holds in the kernel before `max-outbound` starts to count"},
		{"max-conns", &c.MaxConns, 0, "from the fd limit", "open connections on the public listener, then HTTP 503 (`0`: the file descriptor limit less max(64, limit/10); `-1`: no cap)"},
		{"idle-timeout", &c.IdleTimeout, d.IdleTimeout, "", "close `4000` after this long without anything received"},
		{"ping-interval", &c.PingInterval, d.PingInterval, "", "how often the relay pings each connection"},
		{"history", &c.History, d.History, "", "messages kept per room for join history and resume (`0` or `-1`: none); namespaces may override"},
		{"send-rate", &c.SendRate, d.SendRate, "`0.667`", "messages per second a user may send, sustained (20 per 30 s)"},
		{"send-burst", &c.SendBurst, d.SendBurst, "", "messages a user may send in a burst"},
		{"join-rate", &c.JoinRate.Rate, d.JoinRate.Rate, "", "joins per second per connection, sustained"},
		{"join-burst", &c.JoinRate.Burst, d.JoinRate.Burst, "", "joins per connection in a burst"},
		{"abuse-strikes", &c.AbuseStrikes, d.AbuseStrikes, "", "`rate_limited` or `slow_mode` answers in a row before close `1008`"},
		{"ip-conn-rate", &c.IPConnRate.Rate, d.IPConnRate.Rate, "", "new connections per second per client IP (HTTP 429 past it)"},
		{"ip-conn-burst", &c.IPConnRate.Burst, d.IPConnRate.Burst, "", "new connections per client IP in a burst"},
		{"ip-max-conns", &c.IPMaxConns, d.IPMaxConns, "", "open connections per client IP (HTTP 429 past it)"},
		{"ip-room-rate", &c.IPRoomRate.Rate, d.IPRoomRate.Rate, "", "rooms a client IP may create per second, by joining or streaming a room that does not exist (`rate_limited`, HTTP 429 past it)"},
		{"ip-room-burst", &c.IPRoomRate.Burst, d.IPRoomRate.Burst, "", "rooms a client IP may create in a burst"},
		{"ip-exempt", &o.exempt, strings.Join(d.IPExempt, ","), "", "comma-separated CIDRs free of per-IP limits (empty: none)"},
		{"trusted-proxies", &o.proxies, "", "none", "comma-separated CIDRs of reverse proxies whose `X-Forwarded-For`, `X-Real-IP` and PROXY headers name the client (empty: none)"},
		{"proxy-protocol", &c.ProxyProtocol, false, "", "connections from `-trusted-proxies` start with a PROXY protocol v1/v2 header (required from them)"},
		{"compression", &o.compress, true, "", "take `permessage-deflate` offers: room traffic goes compressed to clients that offer it (`false`: every offer declined)"},
		{"node", &c.NodeID, "", "host name", "this node's name in `hello` (empty: the host name)"},
		{"data-dir", &c.DataDir, "", "none (memory)", "keep rooms durable in an embedded NATS JetStream file store in this directory (without `-nats`; empty: rooms live in memory)"},
		{"nats", &c.NATS, "", "none", "NATS servers (comma-separated URLs) whose JetStream this relay shares rooms through with other relays (empty: none)"},
		{"nats-stream", &c.NATSStream, d.NATSStream, "", "JetStream stream holding the rooms (`-nats`, `-data-dir`)"},
		{"nats-replicas", &c.NATSReplicas, d.NATSReplicas, "", "replicas of the stream when this relay creates it (`-nats`)"},
		{"batch-msgs", &c.Hub.MaxBatchMsgs, d.Hub.MaxBatchMsgs, "", "messages of a room in one batch frame"},
		{"batch-bytes", &c.Hub.MaxBatchBytes, d.Hub.MaxBatchBytes, "", "encoded bytes of a room flushed at once"},
		{"presence-interval", &c.Hub.PresenceInterval, d.Hub.PresenceInterval, "", "count-only presence of big rooms at most this often"},
		{"presence-window", &c.Hub.PresenceWindow, d.Hub.PresenceWindow, "", "a room with only joins and leaves pending waits this long for more, so a join storm reaches each member in one write (a message goes at once; `0`: presence goes at once)"},
		{"empty-room-ttl", &c.Hub.EmptyRoomTTL, d.Hub.EmptyRoomTTL, "", "an empty room, and its history, is dropped after this long"},
	}
}

// register defines a flag of fs for every setting.
func register(fs *flag.FlagSet, table []setting) {
	for _, s := range table {
		// -h shows the meaning without README's backquotes (the flag
		// package would take a backquoted word for the value's name).
		usage := strings.ReplaceAll(s.usage, "`", "")
		switch p := s.ptr.(type) {
		case *string:
			fs.StringVar(p, s.name, s.def.(string), usage)
		case *int:
			fs.IntVar(p, s.name, s.def.(int), usage)
		case *bool:
			fs.BoolVar(p, s.name, s.def.(bool), usage)
		case *float64:
			fs.Float64Var(p, s.name, s.def.(float64), usage)
		case *time.Duration:
			fs.DurationVar(p, s.name, s.def.(time.Duration), usage)
		default:
			panic(fmt.Sprintf("setting %s: %T", s.name, s.ptr))
		}
	}
}

// envName is the environment variable of a setting.
func envName(name string) string {
	return "ROOMCAST_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// load parses the command line, then fills every setting not given there
// from ROOMCAST_<NAME>, else from the -config file, and returns the relay's
// Config (without Logger) and the names given on the command line.
func load(fs *flag.FlagSet, args []string) (relay.Config, map[string]bool, error) {
	var o options
	register(fs, settings(&o))
	if err := fs.Parse(args); err != nil {
		return relay.Config{}, nil, err
	}
	given := cmdline(fs)
	if !given["config"] {
		o.configFile = os.Getenv(envName("config"))
	}
	doc, err := applyEnvAndFile(fs, o.configFile)
	if err != nil {
		return relay.Config{}, nil, err
	}
	o.cfg.Namespaces, o.cfg.Webhooks, o.cfg.InboxNamespace = doc.Namespaces, doc.Webhooks, doc.InboxNamespace
	cfg, err := o.resolve()
	return cfg, given, err
}

// resolve turns the settings that are not Config fields as they stand into
// fields.
func (o *options) resolve() (relay.Config, error) {
	cfg := o.cfg
	cfg.NoAnonymous = !o.anonymous
	cfg.NoCompression = !o.compress
	cfg.AllowedOrigins = splitList(o.origins)
	cfg.IPExempt = splitList(o.exempt)
	cfg.TrustedProxies = splitList(o.proxies)
	if cfg.IPExempt == nil {
		cfg.IPExempt = []string{} // none exempt, not the default
	}
	if o.pubKey != "" {
		var err error
		if cfg.JWTPublicKey, err = os.ReadFile(o.pubKey); err != nil {
			return cfg, fmt.Errorf("cannot read -jwt-public-key: %w", err)
		}
	}
	if cfg.History == 0 {
		cfg.History = -1 // -history 0 means none; relay.Config's zero means the default
	}
	if cfg.Hub.PresenceWindow == 0 {
		cfg.Hub.PresenceWindow = -1 // -presence-window 0 means none; shard.Config's zero means the default
	}
	return cfg, nil
}

// readmeTable renders the settings as README's "## Flags" table.
func readmeTable(table []setting) string {
	var b strings.Builder
	b.WriteString("| flag | default | meaning |\n|---|---|---|\n")
	for _, s := range table {
		def := s.shown
		if def == "" {
			if v := fmt.Sprint(s.def); v != "" {
				def = "`" + v + "`"
			}
		}
		fmt.Fprintf(&b, "| `-%s` | %s | %s |\n", s.name, def, s.usage)
	}
	return b.String()
}
