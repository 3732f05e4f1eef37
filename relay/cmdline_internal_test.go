package relay

import (
	"slices"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"roomcast", "-jwt-secret", "s", "-listen", ":1"}, []string{"roomcast", "-jwt-secret", "REDACTED", "-listen", ":1"}},
		{[]string{"roomcast", "--api-key=k", "-jwt-secret=s"}, []string{"roomcast", "--api-key=REDACTED", "-jwt-secret=REDACTED"}},
		{[]string{"roomcast", "-api-key"}, []string{"roomcast", "-api-key"}},
		{[]string{"roomcast", "-node", "api-key", "--", "-jwt-secret", "x"}, []string{"roomcast", "-node", "api-key", "--", "-jwt-secret", "x"}},
		{[]string{"roomcast", "-jwt-public-key", "k.pem", "-api-keys", "x"}, []string{"roomcast", "-jwt-public-key", "k.pem", "-api-keys", "x"}},
		{[]string{"-api-key"}, []string{"-api-key"}},
	} {
		if got := redactArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("redactArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
