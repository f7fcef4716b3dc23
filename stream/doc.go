// Package stream is FlowMesh's event-stream engine, the Kafka replacement:
// topics split into partitions (each one a commit log of package log),
// keyed writes that keep per-key order, idempotent producers, reads and
// seeks by offset and time, and consumer groups that share a topic's
// partitions among their live members, push events to them with a
// flow-control window, and keep committed offsets durable in Pebble.
//
// Layout: config.go (topic settings and names), engine.go (the topic
// registry and its metadata in Pebble), topic.go (writes, reads, seeks,
// the producer dedup table), assign.go (the pure partition assignment),
// group.go (a consumer group's runtime: members, delivery, commits,
// rewind). docs/architecture.md describes the design.
//
// Metadata in Pebble (keyspace S): "t/<topic>" the topic's Config as JSON;
// "o/<topic>\x00<group>\x00<partition>" a committed offset (8 bytes LE);
// "p/<topic>" the producer table snapshot. Each partition log keeps its own
// small state under keyspace L, prefix "<topic>/<partition>/".
//
// Threading: every exported method is safe from any goroutine. Write never
// blocks on the disk and completes through its callback on a log's writer
// goroutine. Methods that touch the disk or Pebble (Create, Alter, Delete,
// Read, Seek, Commit, Reset, DeleteGroup) may block briefly and must not be
// called from an event loop. Each consumer group with live members runs one
// delivery goroutine, which calls its members' Sinks.
//
// Imports: log, kv/store and the standard library.
package stream
