// Package dashboards holds the monitoring examples for roomcast: a Grafana
// dashboard (roomcast.json), a Prometheus scrape configuration for the
// relay's admin listener (prometheus.yml) and Prometheus alerting rules
// (alerts.yml).
//
// The files are meant to be copied or provisioned as they are; they are also
// embedded in Files so that tools can ship or serve them, and so that the
// package's tests can check every metric they query against the metrics a
// real relay exports.
//
// Import roomcast.json in Grafana and pick a Prometheus data source in its
// "Data source" variable; the "Instance" variable selects relay nodes by the
// instance label of the scrape.
package dashboards

import "embed"

// Files holds roomcast.json, prometheus.yml and alerts.yml.
//
//go:embed roomcast.json prometheus.yml alerts.yml
var Files embed.FS
