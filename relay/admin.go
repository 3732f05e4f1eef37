package relay

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	rtmetrics "runtime/metrics"
	"time"
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
	mux.Handle("GET /metrics", s.metricsHandler())
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
	mux.Handle("GET /debug/runtime", s.requireKey(http.HandlerFunc(runtimeDump)))
	return mux
}

// runtimeDump answers every runtime/metrics value of the process, one
// "name value" line each (a histogram as its count and the bucket holding
// its median), plus /proc/self/smaps_rollup where there is one: the
// memory classes (heap free and unreturned, GC metadata, stacks) and the
// resident anonymous and file pages that /metrics sums into a few
// figures. Called on an admin request's goroutine; reading the samples
// does not stop the world. Behind the API key, like /debug/pprof.
func runtimeDump(w http.ResponseWriter, _ *http.Request) {
	descs := rtmetrics.All()
	samples := make([]rtmetrics.Sample, len(descs))
	for i, d := range descs {
		samples[i].Name = d.Name
	}
	rtmetrics.Read(samples)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b bytes.Buffer
	for _, sm := range samples {
		switch sm.Value.Kind() {
		case rtmetrics.KindUint64:
			fmt.Fprintf(&b, "%s %d\n", sm.Name, sm.Value.Uint64())
		case rtmetrics.KindFloat64:
			fmt.Fprintf(&b, "%s %g\n", sm.Name, sm.Value.Float64())
		case rtmetrics.KindFloat64Histogram:
			n, med := histMedian(sm.Value.Float64Histogram())
			fmt.Fprintf(&b, "%s count=%d median<=%g\n", sm.Name, n, med)
		}
	}
	if rollup, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
		b.WriteString("# /proc/self/smaps_rollup\n")
		b.Write(rollup)
	}
	_, _ = w.Write(b.Bytes())
}

// histMedian returns a histogram's count and the upper bound of the
// bucket holding its median.
func histMedian(h *rtmetrics.Float64Histogram) (uint64, float64) {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	var seen uint64
	for i, c := range h.Counts {
		if seen += c; n > 0 && seen*2 >= n {
			return n, h.Buckets[i+1]
		}
	}
	return n, 0
}

// gnetLogger routes gnet's own log lines to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
