// Package store wraps Pebble for the node: its shared database (small
// state of logs, streams and queues) and the KV engine's own (opened
// without WAL, with a hook before each flush), on disk in the data
// directory or, for `flowmesh dev --in-memory` and tests, on Pebble's
// in-memory file system. Engines share the node's database through
// keyspaces: each owner gets a one-byte prefix (Keyspace), so their keys
// never collide and each can iterate its own.
//
// Writes follow the node's sync policy: Sync waits for the WAL fsync,
// NoSync leaves it to Pebble's WAL and the next synced write, and with
// SyncInterval the first unsynced write after a sync arms a WAL fsync that
// long after it. SetSync and CommitSync(true) sync one write whatever the
// policy. Without WAL
// (NoWAL) a write reaches disk only with a memtable flush (Flush, or
// Pebble's own), and BeforeFlush runs first.
//
// Threading: a Store is safe for concurrent use; the node's is opened once
// and closed after every engine, the KV engine opens and closes its own.
//
// Imports: Pebble, the standard library and internal/fdlimit.
package store
