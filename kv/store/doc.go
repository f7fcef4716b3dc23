// Package store owns the node's single Pebble database: small state and the
// KV cache live here, on disk in the data directory or, for
// `flowmesh dev --in-memory` and tests, on Pebble's in-memory file system.
// Engines share it through keyspaces: each owner gets a one-byte prefix
// (Keyspace), so their keys never collide and each can iterate its own.
//
// Writes follow the node's sync policy: Sync waits for the WAL fsync,
// NoSync leaves it to Pebble's WAL and the next synced write.
//
// Threading: a Store is safe for concurrent use; it is opened once per node
// and closed after every engine.
//
// Imports: Pebble and the standard library; no FlowMesh package.
package store
