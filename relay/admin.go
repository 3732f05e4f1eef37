package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin listener timeouts besides Config.AdminHeaderTimeout. The write
// timeout leaves room for /debug/pprof/profile, 30 seconds by default (a
// longer ?seconds= is refused by pprof as over the write timeout).
const (
	adminReadTimeout  = 30 * time.Second
	adminWriteTimeout = 2 * time.Minute
	adminIdleTimeout  = 2 * time.Minute
)

// startAdmin binds the admin listener and serves it in the background.
func (s *Server) startAdmin() error {
	if s.cfg.Admin == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Admin)
	if err != nil {
		return fmt.Errorf("cannot listen on admin address %s: %w", s.cfg.Admin, err)
	}
	s.adminAddr = ln.Addr().String()
	s.admin = &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: s.cfg.AdminHeaderTimeout,
		ReadTimeout: adminReadTimeout, WriteTimeout: adminWriteTimeout, IdleTimeout: adminIdleTimeout}
	go func() {
		if err := s.admin.Serve(ln); err != nil && err != http.ErrServerClosed {
			s.cfg.Logger.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if err := s.failed.Load(); err != nil {
			http.Error(w, (*err).Error(), http.StatusServiceUnavailable)
			return
		}
		if why := s.busReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s.apiRoutes(mux)
	return mux
}

// gnetLogger routes gnet's own log lines to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
