// Package resp is the Redis protocol (RESP2 and RESP3) for FlowMesh's
// Redis-compatible port: a restartable command parser (arrays of bulk
// strings, and inline commands as redis-cli and telnet send them) and
// append-style encoders that write RESP2 or RESP3 per the connection's
// HELLO. Like package protocol, the parser returns subslices of the input
// and allocates nothing per command.
//
// Imports: the standard library only.
package resp
