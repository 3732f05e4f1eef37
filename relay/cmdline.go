package relay

import (
	"net/http"
	"os"
	"slices"
	"strings"
)

// secretArgs are the flags of cmd/roomcast whose values /debug/pprof/cmdline
// does not show (they belong in ROOMCAST_JWT_SECRET / ROOMCAST_API_KEY; the
// command warns when they are given as flags).
var secretArgs = []string{"jwt-secret", "api-key"}

// pprofCmdline is net/http/pprof's Cmdline with the values of secretArgs
// replaced by "REDACTED": the process's arguments, NUL-separated. Admin
// listener goroutines.
func pprofCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(redactArgs(os.Args), "\x00")))
}

// redactArgs returns args with the value of every secret flag replaced, in
// each form the flag package takes: -name value, --name value, -name=value.
// Arguments after "--" are not flags.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !slices.Contains(secretArgs, name) {
			continue
		}
		if inline {
			out[i] = a[:strings.IndexByte(a, '=')+1] + "REDACTED"
		} else if i+1 < len(out) {
			i++
			out[i] = "REDACTED"
		}
	}
	return out
}
