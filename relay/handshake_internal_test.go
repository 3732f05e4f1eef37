package relay

import (
	"math/rand/v2"
	"net/url"
	"testing"
)

// TestHandshakeURIMatchesNetURL: the plain-URI fast path of onRequest
// reads the path and token exactly as net/url does, for every URI it
// takes (others go through net/url itself).
func TestHandshakeURIMatchesNetURL(t *testing.T) {
	uris := []string{"/ws", "/ws?", "/ws?token=abc.def-_", "/ws?token=", "/ws?token", "/ws?a=1&token=x&token=y",
		"/ws?tokenx=1&token=2", "/ws?a?token=x", "/ws/?token=x", "//ws?token=x", "/ws?=x&token=y", "/ws&token=x",
		"ws?token=x", "*", "", "/w%73?token=x", "/ws?token=a%2Eb", "/ws?token=a+b", "/ws?token=a;b", "/ws?token=a#b",
		"/ws?to ken=x", "/ws?\x7ftoken=x", "/ws?token=\xc3\xa9", "/ws?&&token=x&"}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "/ws?token=&a%2+;#:.x"
	for range 20000 {
		b := make([]byte, r.IntN(16))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		uris = append(uris, "/"+string(b))
	}
	fast := 0
	for _, uri := range uris {
		path, query, ok := plainURI([]byte(uri))
		if !ok {
			continue
		}
		fast++
		p, err := url.ParseRequestURI(uri)
		if err != nil {
			t.Fatalf("%q: fast path took a URI net/url refuses: %v", uri, err)
		}
		if string(path) != p.Path {
			t.Fatalf("%q: path %q, net/url %q", uri, path, p.Path)
		}
		tok, _ := queryParam(query, "token")
		if want := p.Query().Get("token"); string(tok) != want {
			t.Fatalf("%q: token %q, net/url %q", uri, tok, want)
		}
	}
	if fast < 1000 {
		t.Fatalf("only %d URIs took the fast path", fast)
	}
}
