// Package protocol is FlowMesh's text wire protocol: a restartable byte-level
// parser, the verb table that drives it, the error catalog, and append-style
// encoders for every frame the server or a client writes.
//
// The grammar is NATS core's, extended: one control line per command, verbs
// matched case-insensitively, lines ended by CRLF or a bare LF, payloads
// prefixed by their length, and an optional NATS/1.0 header block on every
// payload-carrying verb (the "H" form: PUB → HPUB). docs/protocol.md is the
// user-facing description.
//
// Ownership and lifetime: a Parser belongs to one connection and is used from
// one goroutine (the connection's event loop). Every slice in a Frame points
// into the buffer passed to Next or into the Parser's own argument array; it
// is valid until the next call to Next or until the caller discards that
// buffer, whichever comes first. Callers that keep bytes must copy them.
//
// Imports: the standard library only. Nothing in FlowMesh may be imported
// from here, so that the parser can be fuzzed and benchmarked on its own.
package protocol
