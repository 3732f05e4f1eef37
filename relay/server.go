// Package relay is the roomcast server: gnet event loops that accept
// connections, parse the HTTP upgrade and WebSocket frames out of the inbound
// bytes, run the protocol of package proto for each session, and hand rooms to
// package shard. It also serves the admin listener.
package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/roomcast/roomcast/shard"
	"github.com/roomcast/roomcast/shard/natsbus"
)

// Server is one relay node. New, then Start; Shutdown drains it.
type Server struct {
	gnet.BuiltinEventEngine

	// Static after New.
	cfg      Config
	hub      *shard.Hub
	policies *policies
	ips      *ipLimits
	proxies  *trustedProxies
	auth     *authenticator
	metrics  *metrics
	bus      *natsbus.Bus // nil in memory mode
	events   *events      // webhooks; nil without any

	// Set while starting, then read-only.
	eng       gnet.Engine
	reusePort bool // each loop accepts on its own SO_REUSEPORT listener (eachLoopAccepts)
	addr      string
	admin     *http.Server
	adminAddr string
	booted    chan struct{}
	stopped   chan error

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*loop] // copy on write, indexed by discovery order

	usersMu sync.Mutex
	users   userIndex // open sessions by user id (session_users.go)

	draining atomic.Bool
	failed   atomic.Pointer[error] // why the event loops stopped on their own; nil while they run
	done     chan error            // receives failed once
	anonSeq  atomic.Uint64
	conns    atomic.Int64 // open connections (any state)
	quit     chan struct{}
	bg       sync.WaitGroup
}

// New returns a Server for cfg; it listens only after Start.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	auth, err := newAuthenticator(&cfg)
	if err != nil {
		return nil, err
	}
	pols, err := newPolicies(&cfg)
	if err != nil {
		return nil, fmt.Errorf("bad room policy: %w", err)
	}
	ips, err := newIPLimits(&cfg)
	if err != nil {
		return nil, fmt.Errorf("bad per-IP limits: %w", err)
	}
	proxies, err := newTrustedProxies(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, policies: pols, ips: ips, proxies: proxies, auth: auth, booted: make(chan struct{}),
		users: newUserIndex(), stopped: make(chan error, 1), done: make(chan error, 1), quit: make(chan struct{})}
	hc := cfg.Hub
	hc.Loops = cfg.Loops
	hc.Policy = func(ns string) shard.Policy { return pols.get(ns).shard }
	hc.Observer = observer{s}
	if s.bus, err = openBus(&cfg, pols); err != nil {
		return nil, err
	}
	if s.bus != nil {
		hc.Bus, hc.Epoch = s.bus, s.bus.Epoch
	}
	s.hub = shard.NewHub(hc)
	s.metrics = newMetrics(s)
	if s.events, err = newEvents(s); err != nil {
		s.hub.Close()
		s.closeBus()
		return nil, fmt.Errorf("bad webhook: %w", err)
	}
	if s.bus != nil {
		s.metrics.registerBus(s.bus)
		s.bus.WatchModeration(s.applyMod)
	}
	return s, nil
}

// Hub returns the room engine (for the admin API and tests).
func (s *Server) Hub() *shard.Hub { return s.hub }

// Addr returns the public listener's address once Start returned.
func (s *Server) Addr() string { return s.addr }

// AdminAddr returns the admin listener's address once Start returned ("" if off).
func (s *Server) AdminAddr() string { return s.adminAddr }

// Start binds both listeners and runs the event loops in the background.
func (s *Server) Start() error {
	if err := s.startAdmin(); err != nil {
		return err
	}
	reusePort := eachLoopAccepts(s.cfg.Listen, s.cfg.Loops)
	if reusePort {
		if err := addrFree(s.cfg.Listen); err != nil {
			s.stopStarting()
			return fmt.Errorf("cannot start relay on %s: %w", s.cfg.Listen, err)
		}
	}
	s.reusePort = reusePort
	go func() {
		err := gnet.Run(s, "tcp://"+s.cfg.Listen,
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(reusePort),
			gnet.WithLogger(gnetLogger{s.cfg.Logger}),
			// Set on the listeners; accepted sockets inherit it.
			gnet.WithSocketSendBuffer(s.cfg.SendBuffer),
		)
		s.engineStopped(err)
		s.stopped <- err
	}()
	select {
	case <-s.booted:
	case err := <-s.stopped:
		s.stopStarting()
		return fmt.Errorf("cannot start relay on %s: %w", s.cfg.Listen, err)
	}
	s.bg.Add(1 + s.events.senders())
	go s.tick()
	s.events.start(s.quit, s.bg.Done)
	s.cfg.Logger.Info("roomcast relay listening", "public", s.addr, "admin", cmp.Or(s.adminAddr, "admin API off"), "loops", s.cfg.Loops,
		"max_conns", s.cfg.MaxConns, "backlog", s.backlog(), "accept", acceptMode(s.reusePort))
	return nil
}

// backlog is the listen backlog the relay sets (0: the system's).
func (s *Server) backlog() int {
	if s.reusePort {
		return 0
	}
	return listenBacklog(s.cfg.MaxConns)
}

func acceptMode(reusePort bool) string {
	if reusePort {
		return "each loop (SO_REUSEPORT)"
	}
	return "one acceptor"
}

// stopStarting undoes what Start and New started when Start fails.
func (s *Server) stopStarting() {
	s.hub.Close()
	s.closeBus()
	if s.admin != nil {
		_ = s.admin.Close()
	}
}

// eachLoopAccepts reports whether every event loop should accept on its own
// SO_REUSEPORT listener (the kernel spreads new connections over them)
// rather than one acceptor goroutine handing each connection to a loop:
// that hand-off costs an eventfd write and read, an epoll wake-up and a
// thread switch per connection. It needs a fixed port (with port 0 each
// loop would bind a port of its own), so a relay on port 0 with several
// loops (the tests) keeps the acceptor.
func eachLoopAccepts(listen string, loops int) bool {
	_, port, err := net.SplitHostPort(listen)
	return err == nil && (loops == 1 || (port != "" && port != "0"))
}

// addrFree fails if addr is bound already: SO_REUSEPORT would otherwise let
// a second relay (same user) share the port silently instead of failing to
// start. The probe listener is closed at once.
func addrFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// engineStopped records that gnet.Run returned. Outside Shutdown that is a
// failure (gnet stops the whole engine when accept fails, say on EMFILE):
// /readyz answers 503 from then on and Done delivers the error.
func (s *Server) engineStopped(err error) {
	select {
	case <-s.booted:
	default:
		return // Start reports it
	}
	if s.draining.Load() {
		return
	}
	if err == nil {
		err = errors.New("relay: event loops stopped")
	} else {
		err = fmt.Errorf("relay: event loops stopped: %w", err)
	}
	s.failed.Store(&err)
	s.cfg.Logger.Error("public listener is down", "err", err)
	s.done <- err
}

// Done delivers an error if the event loops stop while the server is not
// shutting down; the relay then serves nothing on its public listener and
// should be restarted. Any goroutine.
func (s *Server) Done() <-chan error { return s.done }

// OnBoot records the engine and the bound address. gnet calls it once.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = s.cfg.Listen
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrString(sa)
		}
		// Linux takes listen() again on a listening socket as a new
		// backlog (the dup shares the socket). See listenBacklog. Loops
		// that accept for themselves run OnOpen right after each accept,
		// so no burst of accepted descriptors builds up: the backlog
		// stays (Dup sees only the first loop's listener anyway).
		if n := s.backlog(); n > 0 {
			if err := unix.Listen(fd, n); err != nil {
				s.cfg.Logger.Warn("cannot shrink the listen backlog", "err", err)
			}
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	}
	return ""
}

// loopOf returns our state of the event loop that owns c, creating it on the
// loop's first connection. Called on that loop.
func (s *Server) loopOf(c gnet.Conn) *loop {
	el := c.EventLoop()
	if p := s.loops.Load(); p != nil {
		for _, l := range *p {
			if l.el == el {
				return l
			}
		}
	}
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	var cur []*loop
	if p := s.loops.Load(); p != nil {
		cur = *p
	}
	for _, l := range cur {
		if l.el == el {
			return l
		}
	}
	if len(cur) >= s.cfg.Loops {
		panic("relay: more gnet event loops than Config.Loops")
	}
	l := newLoop(s, el, len(cur))
	next := append(append([]*loop(nil), cur...), l)
	s.loops.Store(&next)
	return l
}

func (s *Server) eachLoop(fn func(*loop)) {
	if p := s.loops.Load(); p != nil {
		for _, l := range *p {
			fn(l)
		}
	}
}

// tick drives time on every loop: pings, idle and handshake timeouts,
// lingering closes; reclaims idle rate-limit buckets; and returns free memory
// to the OS after a wave of connections (memtrim.go).
func (s *Server) tick() {
	defer s.bg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var trim memTrim // memtrim.go
	defer trim.end()
	for n := 0; ; n++ {
		select {
		case <-s.quit:
			return
		case now := <-t.C:
			s.eachLoop(func(l *loop) { _ = l.el.Execute(context.Background(), tickTask{l, now}) })
			s.metrics.panics.syncFlush(s.hub.Stats.Panics.Load())
			if trim.tick(s.conns.Load()) {
				s.cfg.Logger.Debug("returned free memory to the OS after a wave of connections", "conns", trim.base)
			}
			if n%60 == 59 {
				s.policies.sweep(now)
				s.ips.sweep(now)
			}
		}
	}
}

// Shutdown drains the relay: it stops accepting, closes every connection with
// 1001, waits for them to go (until ctx is done), and stops.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.draining.Swap(true) {
		return errors.New("relay: already shut down")
	}
	s.eachLoop(func(l *loop) { _ = l.el.Execute(ctx, drainTask{l}) })
	// Wait for the clients to go, until ctx is done and at most
	// closeLinger after that (the loops then close whoever is left).
	for end := time.Now().Add(drainLimit); s.conns.Load() > 0 && ctx.Err() == nil && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	close(s.quit)
	s.bg.Wait()
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// eng.Stop polls every 500ms; gnet.Run returning is the earlier sign.
	go func() { _ = s.eng.Stop(stopCtx) }()
	var err error
	select {
	case err = <-s.stopped:
	case <-stopCtx.Done():
		err = fmt.Errorf("relay: event loops did not stop: %w", stopCtx.Err())
	}
	s.hub.Close()
	s.closeBus()
	if s.admin != nil {
		_ = s.admin.Shutdown(stopCtx)
	}
	return err
}

// closeBus closes the NATS bus, if any (after the hub: nothing is sent
// any more).
func (s *Server) closeBus() {
	if s.bus != nil {
		s.bus.Close()
	}
}
