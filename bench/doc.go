// Command bench runs the same workload against FlowMesh and against the real
// peer in one run, and prints the figures side by side with their ratio.
//
//	go run ./bench [flags] [workload ...]
//
// Workloads: pubsub (1 publisher, 1 subscriber, throughput), latency
// (publish-to-delivery percentiles at a fixed rate), idle (memory per idle
// connection), natscli (the `nats bench` tool, when installed). Default: all.
//
// The harness builds and starts the flowmesh binary and starts nats-server
// (Debian's nats-server package) on free loopback ports, drives both with
// the same client (nats.go), and stops both at the end. It talks to both
// over TCP only.
//
// Imports: nats.go (the same client for both brokers) and the standard
// library; nothing of the server.
package main
