// Package bench is roomcast's load generator: it opens many WebSocket
// connections to a relay, joins them to rooms shaped like real traffic
// (scenarios), publishes at a fixed total rate, and measures what clients see:
// publish-to-delivery latency, deliveries per second, handshake and join
// latency, errors, close codes and loss (acknowledged messages a member never
// received, found by seq continuity).
//
// Run drives one load test and returns a Report. With Config.Procs > 1 it
// starts worker processes (ServeWorker) that each hold a share of the
// connections, and merges their results.
package bench

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Scenario names.
const (
	Lobby  = "lobby"  // many small rooms, every member chatting
	Stream = "stream" // one huge room, mostly silent viewers, a few chatters
	Mixed  = "mixed"  // room sizes spread by a Zipf law
	Storm  = "storm"  // connect as fast as possible; mass disconnect and resume with since
	Soak   = "soak"   // steady load for a long time; watch the timeline for drift
	Idle   = "idle"   // connections held without traffic (memory per connection)
)

// Scenarios lists the scenario names.
var Scenarios = []string{Lobby, Stream, Mixed, Storm, Soak, Idle}

// Config describes one load test. The zero value of every field is replaced
// by the default noted, so Config{} is a lobby run against ws://127.0.0.1:8080/ws.
// Scenario defaults (N is Connections):
//
//	scenario  connections rooms   publishers rate (msgs/s)  duration
//	lobby     10000       N/10    N          N/5            10s
//	stream    10000       1       10         200            10s
//	mixed     5000        N/20    N/10       N/5            10s
//	storm     10000       N/100   rooms      rooms          10s
//	soak      2000        N/20    N/10       N/10           10m
//	idle      10000       none    none       0              10s
type Config struct {
	URL      string `json:"url"`      // relay WebSocket URL, or several separated by commas (a cluster: connection i goes to relay i mod n); zero means "ws://127.0.0.1:8080/ws"
	Scenario string `json:"scenario"` // one of Scenarios; zero means "lobby"

	Connections int     `json:"connections"`  // client connections, all processes together; zero means the scenario's default
	Rooms       int     `json:"rooms"`        // rooms the connections are spread over; zero means the scenario's default, negative means none (connections only say hello)
	Publishers  int     `json:"publishers"`   // connections that send; zero means the scenario's default, negative means none
	Rate        float64 `json:"rate"`         // messages per second of all publishers together; zero means the scenario's default
	MessageSize int     `json:"message_size"` // body bytes of each message; zero means 100
	ZipfS       float64 `json:"zipf_s"`       // mixed: exponent of the room-size law; zero means 1.1

	Duration time.Duration `json:"duration"`  // the measured window; zero means 10s (soak: 10m)
	WarmUp   time.Duration `json:"warm_up"`   // load before the window opens, not measured; zero means 2s, negative means none
	RampRate float64       `json:"ramp_rate"` // new connections per second, all processes together; zero means as fast as DialConcurrency allows
	Sample   float64       `json:"sample"`    // fraction of members that decode and time every message, 0..1; zero means 0.05 (at least one member)
	Stall    float64       `json:"stall"`     // fraction of non-publishing members that stop reading when the window opens; zero means none
	// Compress makes every client offer permessage-deflate (no context
	// takeover either way) and inflate the relay's compressed messages; a
	// relay that declines fails the dial (no_deflate). Zero means no offer.
	Compress bool `json:"compress,omitempty"`

	JWTSecret     string `json:"jwt_secret"`     // HS256 secret to mint tokens; zero means every connection is anonymous (and cannot publish)
	PublisherRole string `json:"publisher_role"` // role claim of publishers; zero means "bot" (the relay's per-user limits would throttle "user")
	ReaderRole    string `json:"reader_role"`    // role claim of the others; zero means "user"; "anon" means no token
	RoomPrefix    string `json:"room_prefix"`    // room names are prefix + index; zero means "<scenario>:<run id>-"

	Procs           int           `json:"procs"`            // worker processes; zero means 1, run inside this process
	Sources         []string      `json:"sources"`          // local source IPs, given to connections in turn; zero means the kernel's choice
	DialConcurrency int           `json:"dial_concurrency"` // dials in flight per process; zero means 64
	DialTimeout     time.Duration `json:"dial_timeout"`     // TCP connect plus upgrade plus hello; zero means 10s
	JoinTimeout     time.Duration `json:"join_timeout"`     // join to joined; zero means 10s
	DrainTimeout    time.Duration `json:"drain_timeout"`    // after the window, wait this long at most for members to catch up; zero means 5s

	MetricsURL    string   `json:"metrics_url"`    // relay /metrics, scraped when the window opens and closes; with several relays one per relay, comma-separated, in the order of URL; zero means none
	RelayPID      int      `json:"relay_pid"`      // relay process whose VmRSS is read from /proc (one relay only); zero means none
	WorkerCommand []string `json:"worker_command"` // argv of a worker process (ServeWorker); zero means this executable with "-worker"
	Seed          uint64   `json:"seed"`           // picks sampled and stalled members; zero means 1

	// HookBackend is the address (host:port) of a publish hook backend the
	// run serves (hookbackend.go) for the relay's publish_hook.url to point
	// at; zero means none (and no Report.Hook).
	HookBackend string `json:"hook_backend,omitempty"`
	// HookDelay is how long the hook backend waits before answering
	// {"allow": true}; zero means at once.
	HookDelay time.Duration `json:"hook_delay,omitempty"`
	// HookListener, if not nil, is where the hook backend serves instead
	// of a new listener on HookBackend; Run closes it. For callers that
	// must know the port before the run (tests, the command).
	HookListener net.Listener `json:"-"`
}

// scenarioDefaults are the defaults of one scenario, as functions of N.
type scenarioDefaults struct {
	conns      int
	rooms      func(n int) int
	publishers func(n, rooms int) int
	rate       func(n, rooms int) float64
	duration   time.Duration
}

var defaults = map[string]scenarioDefaults{
	Lobby: {10000, func(n int) int { return n / 10 }, func(n, _ int) int { return n },
		func(n, _ int) float64 { return float64(n) / 5 }, 10 * time.Second},
	Stream: {10000, func(int) int { return 1 }, func(int, int) int { return 10 },
		func(int, int) float64 { return 200 }, 10 * time.Second},
	Mixed: {5000, func(n int) int { return n / 20 }, func(n, _ int) int { return n / 10 },
		func(n, _ int) float64 { return float64(n) / 5 }, 10 * time.Second},
	Storm: {10000, func(n int) int { return n / 100 }, func(_, r int) int { return r },
		func(_, r int) float64 { return float64(r) }, 10 * time.Second},
	Soak: {2000, func(n int) int { return n / 20 }, func(n, _ int) int { return n / 10 },
		func(n, _ int) float64 { return float64(n) / 10 }, 10 * time.Minute},
	Idle: {10000, func(int) int { return -1 }, func(int, int) int { return -1 },
		func(int, int) float64 { return 0 }, 10 * time.Second},
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = "ws://127.0.0.1:8080/ws"
	}
	if c.Scenario == "" {
		c.Scenario = Lobby
	}
	d, ok := defaults[c.Scenario]
	if !ok {
		return c // validate reports it
	}
	setInt(&c.Connections, d.conns)
	if c.Rooms == 0 {
		c.Rooms = nonZero(d.rooms(c.Connections))
	}
	if c.Publishers == 0 {
		c.Publishers = nonZero(d.publishers(c.Connections, c.Rooms))
	}
	if c.Rate == 0 {
		c.Rate = d.rate(c.Connections, c.Rooms)
	}
	c.setCommonDefaults(d)
	return c
}

func (c *Config) setCommonDefaults(d scenarioDefaults) {
	setInt(&c.MessageSize, 100)
	setInt(&c.DialConcurrency, 64)
	setDur(&c.Duration, d.duration)
	setDur(&c.WarmUp, 2*time.Second)
	setDur(&c.DialTimeout, 10*time.Second)
	setDur(&c.JoinTimeout, 10*time.Second)
	setDur(&c.DrainTimeout, 5*time.Second)
	if c.WarmUp < 0 {
		c.WarmUp = 0
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.Sample == 0 {
		c.Sample = 0.05
	}
	if c.PublisherRole == "" {
		c.PublisherRole = "bot"
	}
	if c.ReaderRole == "" {
		c.ReaderRole = "user"
	}
	setInt(&c.Procs, 1)
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// nonZero turns a default computed as 0 (a small N) into 1; negative stays.
func nonZero(n int) int {
	if n == 0 {
		return 1
	}
	return n
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func setDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

// validate reports the first problem of a Config that has its defaults.
func (c *Config) validate() error {
	if _, ok := defaults[c.Scenario]; !ok {
		return fmt.Errorf("bench: unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if len(c.urls()) == 0 {
		return errors.New("bench: no relay URL")
	}
	for _, raw := range c.urls() {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("bench: bad URL: %w", err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			return fmt.Errorf("bench: URL scheme must be ws or wss, not %q", u.Scheme)
		}
	}
	if n, m := len(c.urls()), len(c.metricsURLs()); m > 0 && m != n {
		return fmt.Errorf("bench: %d metrics URLs for %d relays: give one per relay, in the same order", m, n)
	}
	if c.RelayPID > 0 && len(c.urls()) > 1 {
		return errors.New("bench: relay-pid reads one relay; with several, give a metrics URL per relay")
	}
	return c.validateShape()
}

// urls are the relays' WebSocket URLs: Config.URL split at commas.
func (c *Config) urls() []string { return splitList(c.URL) }

// metricsURLs are the relays' /metrics URLs, in the order of urls; none
// without Config.MetricsURL.
func (c *Config) metricsURLs() []string { return splitList(c.MetricsURL) }

// nodeOf is the relay (index into urls) connection i goes to: round-robin,
// so every room of several members and its publishers are spread over the
// relays.
func (c *Config) nodeOf(i int) int { return i % len(c.urls()) }

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (c *Config) validateShape() error {
	switch {
	case c.Connections < 1:
		return errors.New("bench: connections must be positive")
	case c.Rooms > c.Connections:
		return fmt.Errorf("bench: %d rooms for %d connections leaves rooms empty", c.Rooms, c.Connections)
	case c.Publishers > 0 && c.Rooms < 1:
		return errors.New("bench: publishers need rooms")
	case c.Publishers > c.Connections:
		return fmt.Errorf("bench: %d publishers for %d connections", c.Publishers, c.Connections)
	case c.Publishers > 0 && c.JWTSecret == "":
		return errors.New("bench: publishers need a JWT secret (anonymous viewers cannot send)")
	case c.Rate < 0 || c.Publishers > 0 && c.Rate == 0:
		return errors.New("bench: rate must be positive when there are publishers")
	case c.Sample < 0 || c.Sample > 1 || c.Stall < 0 || c.Stall > 1:
		return errors.New("bench: sample and stall are fractions in 0..1")
	case c.MessageSize < 1:
		return errors.New("bench: message size must be positive")
	case c.Procs < 1 || c.Procs > 64:
		return errors.New("bench: procs must be in 1..64")
	case c.Duration < 0:
		return errors.New("bench: duration must be positive")
	case c.HookDelay < 0:
		return errors.New("bench: hook delay must not be negative")
	}
	return nil
}

// publishing reports whether the run sends messages at all.
func (c *Config) publishing() bool { return c.Publishers > 0 && c.Rooms > 0 }
