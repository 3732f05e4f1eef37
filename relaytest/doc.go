// Package relaytest is the scaffolding that tests of roomcast share: HS256
// tokens, a WebSocket dialer, /metrics scraping, a fake clock, a writer
// safe for concurrent use and an embedded NATS server with JetStream.
//
// It imports neither relay nor shard, so that their internal tests
// (package relay, package shard) and shard/natsbus's can use it without an
// import cycle. Starting a relay needs package relay: that is
// relaytest/testrelay, for external test packages (relay_test, bench,
// dashboards, deploy, cmd/roomcast).
//
// Every function is called from the test's goroutine unless it says
// otherwise; each one fails the test (t.Fatal) on error.
package relaytest
