// Command roomcast-bench puts load on a roomcast relay and reports what its
// clients saw: publish-to-delivery latency, deliveries per second, handshake
// and join latency, errors, close codes and loss.
//
//	roomcast-bench -url ws://127.0.0.1:8080/ws -jwt-secret s -scenario stream -procs 2
//
// With -hook-backend ADDR it also serves a publish hook backend that
// answers {"allow": true} after -hook-delay, to measure what a hook adds.
//
// It prints a progress line every second to stderr, a table at the end to
// stdout, and with -json FILE the report in the schema of BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/roomcast/roomcast/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "roomcast-bench:", err)
		os.Exit(1)
	}
}

// options are the flags that are not part of bench.Config.
type options struct {
	jsonFile string
	sources  string
	worker   bool
	quiet    bool
	cpuProf  string
}

func run(args []string, stdout, stderr io.Writer) error {
	cfg, opt, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if opt.worker || os.Getenv(bench.WorkerEnv) == "1" {
		return serveWorker()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if opt.cpuProf != "" {
		stop, err := startCPUProfile(opt.cpuProf)
		if err != nil {
			return err
		}
		defer stop()
		os.Setenv(profileEnv, opt.cpuProf) // worker processes profile themselves
	}
	if cfg.HookBackend != "" {
		// Listen here, so that the URL printed is the one served (port 0).
		ln, err := net.Listen("tcp", cfg.HookBackend)
		if err != nil {
			return fmt.Errorf("hook backend: %w", err)
		}
		cfg.HookListener = ln
		fmt.Fprintf(stderr, "hook backend: http://%s/ answers {\"allow\": true} after %v; point a namespace's publish_hook.url at it\n",
			ln.Addr(), cfg.HookDelay)
	}
	progress, endLine := progressPrinter(stderr, opt.quiet)
	rep, err := bench.Run(ctx, cfg, progress)
	endLine()
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout); err != nil {
		return fmt.Errorf("cannot write report: %w", err)
	}
	if opt.jsonFile != "" {
		return writeJSON(opt.jsonFile, rep)
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (bench.Config, options, error) {
	fs := flag.NewFlagSet("roomcast-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: roomcast-bench [flags]\n\nscenarios: %s (0 means the scenario's default)\n\nflags:\n",
			strings.Join(bench.Scenarios, ", "))
		fs.PrintDefaults()
	}
	var c bench.Config
	var o options
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:8080/ws", "relay WebSocket URL, or several comma-separated (a cluster: connection i goes to relay i mod n; the report adds per-relay figures)")
	fs.StringVar(&c.Scenario, "scenario", "lobby", "load shape: "+strings.Join(bench.Scenarios, ", "))
	fs.IntVar(&c.Connections, "connections", 0, "client connections, all processes together")
	fs.IntVar(&c.Rooms, "rooms", 0, "rooms (-1: none)")
	fs.IntVar(&c.Publishers, "publishers", 0, "connections that send (-1: none)")
	fs.Float64Var(&c.Rate, "rate", 0, "messages per second of all publishers together")
	fs.IntVar(&c.MessageSize, "size", 100, "message body bytes")
	fs.Float64Var(&c.ZipfS, "zipf", 1.1, "mixed: exponent of the room-size law")
	fs.DurationVar(&c.Duration, "duration", 0, "measured window (0: 10s, soak 10m)")
	fs.DurationVar(&c.WarmUp, "warmup", 0, "load before the window, not measured (0: 2s, negative: none)")
	fs.Float64Var(&c.RampRate, "ramp", 0, "new connections per second (0: as fast as -dial-concurrency allows)")
	fs.Float64Var(&c.Sample, "sample", 0.05, "fraction of members that decode and time every message")
	fs.Float64Var(&c.Stall, "stall", 0, "fraction of readers that stop reading when the window opens")
	fs.BoolVar(&c.Compress, "compress", false, "clients offer permessage-deflate and inflate compressed frames; the report adds wire and inflated bytes per delivery")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret to mint tokens (none: anonymous readers, no publishers)")
	fs.StringVar(&c.PublisherRole, "publisher-role", "bot", "role claim of publishers")
	fs.StringVar(&c.ReaderRole, "reader-role", "user", `role claim of readers ("anon": no token)`)
	fs.StringVar(&c.RoomPrefix, "room-prefix", "", "room name prefix (empty: <scenario>:<run id>-)")
	fs.IntVar(&c.Procs, "procs", 1, "worker processes holding the connections")
	fs.StringVar(&o.sources, "sources", "", "comma-separated local source IPs, e.g. 127.0.0.1,127.0.0.2")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "dials in flight per process")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 0, "TCP connect, upgrade and hello (0: 10s)")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", 0, "join to joined (0: 10s)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 0, "wait after the window for members to catch up (0: 5s)")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "relay /metrics to scrape at the window's start and end, e.g. http://127.0.0.1:9090/metrics; with several relays one per relay, comma-separated, in -url's order")
	fs.IntVar(&c.RelayPID, "relay-pid", 0, "relay process id, to read its VmRSS from /proc (one relay only)")
	fs.Uint64Var(&c.Seed, "seed", 1, "picks sampled and stalled members")
	fs.StringVar(&c.HookBackend, "hook-backend", "", "serve a publish hook backend on this address, e.g. 127.0.0.1:7000, answering {\"allow\": true}; point the relay's publish_hook.url at it (the report adds its calls and answer times)")
	fs.DurationVar(&c.HookDelay, "hook-delay", 0, "with -hook-backend: wait this long before each answer, e.g. 1ms")
	fs.StringVar(&o.jsonFile, "json", "", "write the report as JSON to this file")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile to this file (worker processes write FILE.<pid>)")
	fs.BoolVar(&o.worker, "worker", false, "(internal) serve as a worker process on stdin/stdout")
	if err := fs.Parse(args); err != nil {
		return c, o, err
	}
	if fs.NArg() > 0 {
		return c, o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.sources != "" {
		c.Sources = strings.Split(o.sources, ",")
	}
	return c, o, nil
}

// progressPrinter writes a progress line each second: in place on a
// terminal, one per line otherwise. endLine ends the last one.
func progressPrinter(w io.Writer, quiet bool) (progress func(bench.Progress), endLine func()) {
	if quiet {
		return nil, func() {}
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	if !tty {
		return func(p bench.Progress) { fmt.Fprintln(w, p.Line()) }, func() {}
	}
	printed := false
	return func(p bench.Progress) {
			fmt.Fprintf(w, "\r\033[K%s", p.Line())
			printed = true
		}, func() {
			if printed {
				fmt.Fprintln(w)
			}
		}
}

func writeJSON(path string, rep *bench.Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("cannot write report: %w", err)
	}
	return nil
}

// profileEnv passes -cpuprofile to worker processes, which write
// <file>.<pid>.
const profileEnv = "ROOMCAST_BENCH_CPUPROFILE"

// serveWorker runs this process as a worker. Interrupts are for the
// coordinator, which stops its workers in order.
func serveWorker() error {
	signal.Ignore(os.Interrupt)
	if path := os.Getenv(profileEnv); path != "" {
		stop, err := startCPUProfile(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err != nil {
			return err
		}
		defer stop()
	}
	return bench.ServeWorker(os.Stdin, os.Stdout)
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cannot create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
