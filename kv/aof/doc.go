// Package aof is the KV engine's append-only file: the log that makes a KV
// write durable, as Redis' AOF does, so that the write itself only changes
// memory. Records (opaque bytes, each with its length and a masked
// CRC-32C) are appended to a buffer under a mutex, in the order the
// engine made the changes; Barrier writes the buffer with one write call
// (and fsyncs it under the always policy) before the ports send the
// replies of the commands that appended, so one system call covers every
// command of a read, and group commit falls out of it.
//
// Segments are named by the position of their first record (a byte count
// that never goes back), so a position is a point in the whole history.
// The engine rotates to a new segment when it checkpoints; once the
// checkpoint is durable in Pebble, the segments before it are removed;
// under the always policy the last of them is kept and the next rotation
// writes over it (recycling: cheaper fsyncs in a file that does not grow).
// A record's header checksum covers its position, so a recycled file's
// old records never verify. Replay applies the records from a
// checkpoint's position on; a torn tail is cut, anything else damaged
// stops it (replay.go has the rule).
//
// Threading: a File is safe for concurrent use.
//
// Imports: the standard library, x/sys/unix (fdatasync).
package aof
