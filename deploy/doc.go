// Package deploy holds the files that run roomcast in production: a
// Dockerfile, a systemd unit (roomcast.service, with roomcast.env for its
// secrets) and TLS-terminating proxy configurations for HAProxy
// (haproxy.cfg, PROXY protocol v2), nginx (nginx.conf, an http-block file, X-Forwarded-For) and
// Caddy (Caddyfile). Each file says in its comments how to install it and
// which relay flags go with it.
//
// The package has no code. Its tests run the shipped haproxy.cfg,
// nginx.conf and Caddyfile (from the Debian packages haproxy, nginx and
// caddy, which .ci/run installs) in front of a real relay with a certificate made in the test,
// and check that clients reach the relay over wss:// and https://, that
// event streams are not buffered, and that per-IP limits see the real
// client address, not the proxy's nor one the client claims. The
// deploy/healthcheck command is the image's HEALTHCHECK.
package deploy
