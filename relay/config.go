package relay

import (
	"log/slog"
	"math"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roomcast/roomcast/shard"
)

// Config configures a Server. The zero value of every field is replaced by
// the default noted, so Config{} is a working relay.
type Config struct {
	Listen       string        // public listener (/ws); zero means ":8080"
	Admin        string        // admin listener (/metrics, /healthz, /readyz); zero means "127.0.0.1:9090", "off" disables it
	JWTSecret    string        // HS256 secret; zero means HS256 tokens are refused
	JWTPublicKey []byte        // PEM public key (RSA for RS256, Ed25519 for EdDSA); zero means none
	APIKey       string        // admin API bearer key; zero means the admin API answers 403
	NoAnonymous  bool          // refuse connections without a token; zero means anonymous viewers are allowed
	Loops        int           // event loops; zero means GOMAXPROCS
	MaxFrame     int           // bytes per frame or reassembled message; zero means 64 KiB
	MaxBody      int           // characters per message body; zero means 500
	MaxRooms     int           // rooms per connection; zero means 32
	MaxOutbound  int           // bytes queued per connection before close 4009; zero means 1 MiB
	SendBuffer   int           // SO_SNDBUF of public connections in bytes (the kernel doubles it); zero means the kernel's autotuning (up to net.ipv4.tcp_wmem's max)
	IdleTimeout  time.Duration // close 4000 after this long without any frame; zero means 60s
	PingInterval time.Duration // server pings this often; zero means 25s
	History      int           // messages kept per room; zero means 100, negative means none
	SendRate     float64       // sustained sends per second of role user; zero means 20 per 30s
	SendBurst    int           // send burst of role user; zero means 20

	// Namespaces are the room policies by namespace, "default" for the
	// others; zero means the built-in defaults of Namespace everywhere.
	Namespaces     map[string]Namespace
	AllowedOrigins []string  // Origin values browsers may upgrade from; zero means any
	AbuseStrikes   int       // rate_limited answers in a row before close 1008; zero means 10
	JoinRate       RateLimit // joins per connection; zero means 2 per second, burst 32
	IPConnRate     RateLimit // new connections per IP; zero means 20 per second, burst 50 (HTTP 429)
	IPMaxConns     int       // open connections per IP; zero means 500 (HTTP 429)
	IPRoomRate     RateLimit // rooms created (by a join or an /sse stream) per IP; zero means 5 per second, burst 50 (rate_limited, HTTP 429)
	IPExempt       []string  // CIDRs free of per-IP limits; nil means loopback (127.0.0.0/8, ::1), empty means none
	NodeID         string    // this node's name in hello; zero means the host name

	// TrustedProxies are the CIDRs of reverse proxies whose word on the
	// client address is taken (X-Forwarded-For, X-Real-IP, PROXY headers);
	// zero means none: every peer is the client.
	TrustedProxies []string
	// ProxyProtocol makes every connection from a trusted proxy start with
	// a PROXY protocol v1 or v2 header (HTTP 400 without one; untrusted
	// peers must not send one); zero means off. Needs TrustedProxies.
	ProxyProtocol bool
	// NoCompression declines every permessage-deflate offer, so no
	// connection is compressed either way; zero means offers are taken
	// (see relay/proto/PROTOCOL.md, Compression).
	NoCompression bool
	// MaxConns caps open connections on the public listener; past it a new
	// connection gets HTTP 503 and is closed at once, keeping descriptors
	// for accept, the admin listener and files. Zero means the soft
	// RLIMIT_NOFILE minus a reserve of max(64, limit/10); negative means no cap.
	MaxConns int
	// AdminHeaderTimeout bounds reading an admin request's headers; zero
	// means 5s. (Admin requests also get 30s to read the body, 2 minutes to
	// write, for pprof profiles, and keep-alive connections idle 2 minutes.)
	AdminHeaderTimeout time.Duration
	Logger             *slog.Logger // zero means slog.Default()

	// MaxRoomsTotal bounds the rooms this relay holds (an empty room costs
	// about 3 KB); creating one more answers unavailable (HTTP 503). Zero
	// means 100 000, negative means no limit.
	MaxRoomsTotal int

	// NATS makes this relay one node of a cluster sharing its rooms through
	// the JetStream of these NATS servers (comma separated URLs); zero
	// means none (see DataDir). See docs/cluster.md.
	NATS string
	// DataDir keeps rooms durable on this node in an embedded NATS server's
	// JetStream file store in this directory, when NATS is zero; zero means
	// rooms live in memory only.
	DataDir      string
	NATSStream   string // JetStream stream of the rooms; zero means "ROOMCAST"
	NATSReplicas int    // replicas of the stream if this node creates it; zero means 1

	// InboxNamespace is the namespace of users' inboxes: the room
	// "<namespace>:<sub>" may be joined only by the user sub (every
	// connection of theirs), and others may whisper into it (see
	// Namespace.Whispers). Zero means "user"; "off" means no inboxes.
	InboxNamespace string
	// Webhooks receive batches of room events, signed (see webhook.go);
	// zero means none.
	Webhooks []Webhook

	// Hub overrides the room engine's settings; Loops and Policy are set by
	// the Server, MaxRooms (if zero) from MaxRoomsTotal.
	Hub shard.Config
}

const (
	maxRequestHeader = 8 << 10          // bytes of an HTTP upgrade request
	handshakeTimeout = 10 * time.Second // to send a whole upgrade request
	closeLinger      = 2 * time.Second  // to wait for the peer's FIN after our close frame
	drainLimit       = 10 * time.Second // Shutdown waits no longer for clients to go
	maxMetaEntries   = 16               // entries of a message's meta
	maxMetaKey       = 64               // bytes of a meta key
	maxMetaValue     = 256              // bytes of a meta value
	maxMetaTotal     = 1024             // bytes of a meta's keys and values together
)

// Defaults returns the default of every field whose default does not
// depend on the machine: the values setDefaults puts in place of zeros.
// Loops (GOMAXPROCS), MaxConns (from RLIMIT_NOFILE), NodeID (the host name)
// and Logger stay zero. Hub holds the room engine's batch and housekeeping
// defaults. cmd/roomcast's settings table takes its defaults from here.
func Defaults() Config {
	return Config{
		Listen:             ":8080",
		Admin:              "127.0.0.1:9090",
		MaxFrame:           64 << 10,
		MaxBody:            500,
		MaxRooms:           32,
		MaxRoomsTotal:      100_000,
		MaxOutbound:        1 << 20,
		IdleTimeout:        60 * time.Second,
		PingInterval:       25 * time.Second,
		History:            100,
		SendRate:           20.0 / 30,
		SendBurst:          20,
		AbuseStrikes:       10,
		JoinRate:           RateLimit{Rate: 2, Burst: 32},
		IPConnRate:         RateLimit{Rate: 20, Burst: 50},
		IPMaxConns:         500,
		IPRoomRate:         RateLimit{Rate: 5, Burst: 50},
		IPExempt:           []string{"127.0.0.0/8", "::1/128"},
		AdminHeaderTimeout: 5 * time.Second,
		NATSStream:         "ROOMCAST",
		NATSReplicas:       1,
		InboxNamespace:     "user",
		Hub: shard.Config{
			MaxBatchMsgs:     shard.DefaultMaxBatchMsgs,
			MaxBatchBytes:    shard.DefaultMaxBatchBytes,
			PresenceInterval: shard.DefaultPresenceInterval,
			PresenceWindow:   shard.DefaultPresenceWindow,
			EmptyRoomTTL:     shard.DefaultEmptyRoomTTL,
		},
	}
}

// orDefault replaces a zero *v by d.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// setDefaults replaces zero fields by their defaults (Defaults, and the
// machine's for Loops, MaxConns and NodeID). The Hub's batch settings are
// left to shard.NewHub, NATSStream and NATSReplicas to natsbus.Open.
func (c *Config) setDefaults() {
	d := Defaults()
	orDefault(&c.Listen, d.Listen)
	orDefault(&c.Admin, d.Admin)
	orDefault(&c.Loops, runtime.GOMAXPROCS(0))
	orDefault(&c.MaxFrame, d.MaxFrame)
	orDefault(&c.MaxBody, d.MaxBody)
	orDefault(&c.MaxRooms, d.MaxRooms)
	orDefault(&c.MaxRoomsTotal, d.MaxRoomsTotal)
	orDefault(&c.Hub.MaxRooms, c.MaxRoomsTotal)
	orDefault(&c.MaxOutbound, d.MaxOutbound)
	orDefault(&c.History, d.History)
	orDefault(&c.SendBurst, d.SendBurst)
	orDefault(&c.AbuseStrikes, d.AbuseStrikes)
	orDefault(&c.IPMaxConns, d.IPMaxConns)
	orDefault(&c.JoinRate, d.JoinRate)
	orDefault(&c.IPRoomRate, d.IPRoomRate)
	orDefault(&c.IPConnRate, d.IPConnRate)
	if c.IPExempt == nil {
		c.IPExempt = d.IPExempt
	}
	orDefault(&c.SendRate, d.SendRate)
	orDefault(&c.IdleTimeout, d.IdleTimeout)
	orDefault(&c.PingInterval, d.PingInterval)
	if c.MaxConns == 0 {
		c.MaxConns = fdConnCap()
	}
	orDefault(&c.AdminHeaderTimeout, d.AdminHeaderTimeout)
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	orDefault(&c.InboxNamespace, d.InboxNamespace)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// fdConnCap is the default of MaxConns: the soft RLIMIT_NOFILE less a
// reserve of max(64, limit/10) descriptors for accept, the admin listener,
// event loop pollers and files; at least 1. No limit (or none readable)
// means no cap.
func fdConnCap() int {
	lim := nofile()
	if lim <= 0 {
		return -1
	}
	return max(1, lim-max(64, lim/10))
}

// nofile returns the soft RLIMIT_NOFILE; 0 if there is none.
func nofile() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > math.MaxInt32 {
		return 0
	}
	return int(rl.Cur)
}

// listenBacklog is the backlog the public listener is shrunk to after boot
// (0: leave the system's). gnet's acceptor takes every pending connection
// before the event loops run OnOpen, so a burst holds up to a backlog of
// descriptors past MaxConns: a quarter of the reserve (the descriptors the
// limit leaves beyond MaxConns), between 8 and 4096, keeps a burst inside
// it. With no limit or no cap, or a cap at or past the limit, it is left.
func listenBacklog(maxConns int) int {
	lim := nofile()
	if lim <= 0 || maxConns <= 0 || lim-maxConns < 32 {
		return 0
	}
	return min(4096, max(8, (lim-maxConns)/4))
}
