// Package kv is the KV cache engine: strings, hashes, sets and sorted sets
// with TTLs, on a Pebble database of its own (kv/store, keyspace K, no
// WAL) made durable by an append-only file (kv/aof). The native
// protocol's KV verbs and the Redis-compatible port both call it.
//
// Layout in the keyspace (docs/storage.md has the table):
//
//	m <hash(key)> <key>              -> type | expire-at (8 bytes, 0: none) | value or cardinality
//	f <len(key)> <key> <member>      -> hash field value, set member (empty), zset member's score
//	z <len(key)> <key> <score> <m>   -> zset score index (score in sortable form)
//	x <expire-at> <key>              -> expiry index, read by the reaper
//
// The key's length in front of its members keeps one key's members apart
// from a longer key's ("a" and "ab"), so a key's members are one range:
// deleting a hash of a million fields is one range tombstone.
//
// Every command runs under the mutex of its key's stripe (multi-key
// commands take theirs in order), reads key records from the record cache
// (Pebble on a miss) and commits one batch: one append-only file record
// holding all its writes, its member writes applied to Pebble, its key
// records put in the cache as dirty; so a command is all or nothing and no
// two commands on one key interleave. Callers acknowledge writes after
// Barrier. Dirty key records reach Pebble in background flushes (a key
// written often costs Pebble one write per flush); checkpoints let the
// file's old segments go; Open replays the file from the last checkpoint
// (docs/storage.md has the invariants).
//
// An expired key is never returned (reads check the expiry time); the reaper
// deletes expired keys from the expiry index, a bounded batch at a time,
// never by scanning the keys.
//
// Imports: kv/store, kv/aof and the standard library.
package kv
