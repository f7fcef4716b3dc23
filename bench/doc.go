// Command bench runs the same workload against FlowMesh and against the real
// peer in one run, and prints the figures side by side with their ratio.
//
//	go run ./bench [flags] [workload ...]
//
// Workloads: pubsub (1 publisher, 1 subscriber, throughput), latency
// (publish-to-delivery percentiles at a fixed rate), idle (memory per idle
// connection), natscli (the `nats bench` tool, when installed), streams
// (event streams against NATS JetStream: batched write throughput, fsynced
// writes with 64 producers, catch-up read, produce-to-consume latency; not
// in the default set), idlelogs (server CPU with 1000 idle partitions
// against as many JetStream streams; not in the default set), queues (job
// queues against RabbitMQ; -job-window sets the jobs in flight per
// worker), kv (redis-benchmark against FlowMesh's Redis port and
// redis-server), metrics and tracing (FlowMesh against itself, with and
// without), partitions (writes to 1, 16 and 256 partitions under
// fsync=interval against fsync=none: what the interval promise costs).
// Default: pubsub latency idle natscli.
//
// The harness builds and starts the flowmesh binary and starts nats-server
// (Debian's nats-server package) on free loopback ports, drives both with
// the same client (nats.go), and stops both at the end. It talks to both
// over TCP only.
//
// Imports: nats.go (the same client for both brokers; its jetstream package
// for JetStream), the FlowMesh Go SDK (clients/go) for FlowMesh's streams,
// and the standard library; nothing of the server.
package main
