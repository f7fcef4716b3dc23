// Package queue is FlowMesh's job-queue engine, the RabbitMQ/Celery/SQS
// replacement: durable queues with delays, priorities, visibility timeouts,
// retries with backoff, dead-letter queues, idempotent enqueue and browsing.
//
// Layout: state.go is the pure state machine of one queue (ready queue,
// delayed and in-flight deadline heaps, retries, DLQ, dedup window): its
// methods take `now` and return what changed, with no goroutines, clock or
// disk, so every timeout is a deterministic test. The durable driver (a
// commit log per queue for the jobs and, behind them, their state changes)
// builds on it;
// docs/architecture.md describes the design as it lands.
//
// Imports: log, kv/store and the standard library.
package queue
