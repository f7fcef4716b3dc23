// Package log is FlowMesh's commit log: an append-only sequence of records
// in segment files, shared by streams and job queues. (The name clashes with
// the standard library's log, which FlowMesh does not use: logging is
// log/slog. Importers may name this package commitlog.)
//
// Records are grouped into batches; a batch has a fixed header (base
// offset, count, first and max timestamp, codec, lengths) and a masked
// CRC-32C over header and data, and its records block is compressed with S2
// (default), zstd or nothing (batch.go has the byte layout). One writer
// goroutine per log builds, writes (one write call per batch) and fsyncs
// batches; appends that arrive while it is busy gather into the next batch
// and share its fsync (group commit). The sync policy (always, interval,
// none) says when an append is acknowledged and what a crash can lose.
// Under interval a log fsyncs one interval after a write, on a goroutine
// of its own or, in a SyncGroup (one per node), on the group's, which makes
// every unsynced log durable in one round (one syncfs when many are due).
//
// Segments roll by size and age; each has a sparse offset and time index,
// saved beside it when it is sealed. Retention deletes whole sealed
// segments by total size, by age, and below a low-water mark that a job
// queue advances. Open recovers: sealed segments load their index (or are
// scanned if it is missing or stale), the last segment is scanned batch by
// batch and cut at the first torn batch. The recovery rule: a bad batch
// with nothing valid after it is a torn write and is truncated; a bad batch
// followed by valid ones is corruption, reported with file and byte
// position, and never returned as records (docs/storage.md).
//
// Threading: Append, Read, SeekTime, Notify and the accessors are safe from
// any goroutine. Append never blocks on the disk; its callback runs on the
// writer goroutine and must not block.
//
// Imports: the standard library, klauspost/compress, x/sys/unix and
// internal/fdlimit.
package log
