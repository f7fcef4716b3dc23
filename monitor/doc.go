// Package monitor serves the monitoring HTTP port: health and readiness
// probes, the node's counters as JSON (/varz) and in the Prometheus format
// (/metrics, read from the engines' stats at scrape time). The REST and
// WebSocket API and the web UI join it with their issues.
//
// It defines the small Node interface it needs and never imports server, so
// the dependency points from the composition root to here.
//
// Imports: the engines' Stats types (kv, log, queue, stream),
// internal/conf and prometheus/client_golang.
package monitor
