// Package deploy holds the files that run roomcast in production: a
// Dockerfile, a systemd unit (roomcast.service, with roomcast.env for its
// secrets) and TLS-terminating proxy configurations for HAProxy
// (haproxy.cfg, PROXY protocol v2), nginx (nginx.conf, an http-block file, X-Forwarded-For) and
// Caddy (Caddyfile). Each file says in its comments how to install it and
// which relay flags go with it.
//
// The package has no code; its test runs the shipped haproxy.cfg (from the
// Debian package haproxy) in front of a real relay with a certificate made
// in the test, and checks that clients reach the relay over wss:// and
// https:// and that per-IP limits see the real client address.
package deploy
