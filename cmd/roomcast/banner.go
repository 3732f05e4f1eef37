package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/roomcast/roomcast/relay"
)

// secretFlags are the flags whose values must not be given on the command
// line (ps, /proc/<pid>/cmdline, shell history), with the environment
// variable to use instead.
var secretFlags = []struct{ flag, env string }{
	{"jwt-secret", "ROOMCAST_JWT_SECRET"},
	{"api-key", "ROOMCAST_API_KEY"},
}

// cmdline returns the names of the flags given on the command line itself,
// before the environment and the config file fill in the others.
func cmdline(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// checkConfig refuses settings that cannot work and logs a warning for each
// that works but is probably not what was meant. given names the flags set
// on the command line. Called once, before the relay starts.
func checkConfig(cfg *relay.Config, given map[string]bool) error {
	keyed := cfg.JWTSecret != "" || len(cfg.JWTPublicKey) > 0
	if cfg.NoAnonymous && !keyed {
		return errors.New("-anonymous=false without -jwt-secret or -jwt-public-key: no connection could ever be let in; " +
			"set ROOMCAST_JWT_SECRET (or -jwt-public-key), or drop -anonymous=false")
	}
	for _, s := range secretFlags {
		if given[s.flag] {
			cfg.Logger.Warn("-"+s.flag+" on the command line is visible to every user of this host (ps, /proc/<pid>/cmdline); "+
				"set "+s.env+" in the environment or the -config file instead", "flag", s.flag)
		}
	}
	if cfg.APIKey != "" && cfg.Admin == "off" {
		cfg.Logger.Warn("-api-key is set but -admin is off: there is no admin API to use it on")
	}
	return nil
}

// writeBanner tells a person what is running and what to do next: the
// addresses to give clients, the admin listener, who can chat and what a
// restart loses. public and admin are the bound addresses (admin "" when
// off). Written once, after the relay started.
func writeBanner(w io.Writer, cfg relay.Config, public, admin, mode string) {
	host := hostPort(public)
	fmt.Fprintf(w, "roomcast is running\n")
	fmt.Fprintf(w, "  chat      ws://%s/ws  (WebSocket, subprotocol roomcast.v1.json or roomcast.v1.msgpack)\n", host)
	fmt.Fprintf(w, "  overlay   http://%s/overlay?room=ROOM  (for OBS; events at http://%s/sse?room=ROOM)\n", host, host)
	if len(cfg.TrustedProxies) > 0 {
		how := "X-Forwarded-For / X-Real-IP"
		if cfg.ProxyProtocol {
			how = "PROXY protocol"
		}
		fmt.Fprintf(w, "  proxies   %s name the client (%s): give clients the proxy's wss:// and https:// addresses\n",
			strings.Join(cfg.TrustedProxies, ","), how)
	}
	if admin == "" {
		fmt.Fprintf(w, "  admin     admin API off (no /metrics, /healthz, /readyz)\n")
	} else {
		api := "API and /debug/pprof/ need the -api-key bearer key"
		if cfg.APIKey == "" {
			api = "API off: no -api-key (ROOMCAST_API_KEY), /api/* answers 403"
		}
		fmt.Fprintf(w, "  admin     http://%s/metrics, /healthz, /readyz; %s\n", hostPort(admin), api)
	}
	fmt.Fprintf(w, "  users     %s\n", users(cfg))
	fmt.Fprintf(w, "  data      %s\n", mode)
}

// memoryMode describes the data mode of a relay without durable storage.
const memoryMode = "memory: history, bans, timeouts and slow modes are lost on restart"

// dataMode describes where the relay keeps its rooms.
func dataMode(cfg relay.Config) string {
	switch {
	case cfg.NATS != "":
		return "cluster: rooms shared with the other relays through the JetStream of " + cfg.NATS
	case cfg.DataDir != "":
		return "durable: history, bans and timeouts kept in " + cfg.DataDir + " (embedded NATS JetStream)"
	}
	return memoryMode
}

// users says who may chat and who may only read.
func users(cfg relay.Config) string {
	var keys []string
	if cfg.JWTSecret != "" {
		keys = append(keys, "HS256 (-jwt-secret)")
	}
	if len(cfg.JWTPublicKey) > 0 {
		keys = append(keys, "RS256/EdDSA (-jwt-public-key)")
	}
	if len(keys) == 0 {
		return "everyone is a read-only viewer: no -jwt-secret or -jwt-public-key, so nobody can chat"
	}
	s := "chat with tokens signed " + strings.Join(keys, " or ")
	if cfg.JWTSecret != "" {
		s += " (mint one: roomcast token -sub alice)"
	}
	if cfg.NoAnonymous {
		return s + "; a token is required (-anonymous=false)"
	}
	return s + "; without a token, read-only viewers"
}

// hostPort makes a listen address one a person can paste: a wildcard host
// becomes localhost.
func hostPort(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "localhost"
	}
	return net.JoinHostPort(h, p)
}
