// Package monitor serves the monitoring HTTP port: health and readiness
// probes and the node's counters as JSON. Prometheus metrics, the REST and
// WebSocket API and the web UI join it with their issues.
//
// It defines the small Node interface it needs and never imports server, so
// the dependency points from the composition root to here.
//
// Imports: the standard library only (for now).
package monitor
