package protocol

import (
	"fmt"
	"strconv"
)

// Code is a stable identifier of a wire error. The wire text of an error is
// its catalog title, optionally followed by ": " and a detail, inside
// `-ERR '...'`. Titles are NATS's own where NATS has the error, so NATS
// clients recognise them; clients of FlowMesh map a title back to its Code
// with CodeOf.
type Code uint8

// The catalog. The order is not part of the protocol; the titles are.
const (
	CodeUnknown Code = iota
	CodeUnknownVerb
	CodeBadArgs
	CodeControlLineTooLong
	CodeMaxPayload
	CodeBadSize
	CodeBadHeader
	CodeBadSubject
	CodeBadPublishSubject
	CodeBadSid
	CodeMaxConnections
	CodeSlowConsumer
	CodeStaleConnection
	CodeBadConnect
	CodeShuttingDown
	CodeInternal
	CodeNotFound
	CodeTimeout
	CodeExists
	CodeOutOfRange
	CodeTooLarge
	CodeNotOwner
	CodeStorage
	CodeOutOfSequence
	CodeNotReserved
	CodeWrongType
	CodeBadValue
	numCodes
)

// CodeInfo describes one catalog entry. docs/protocol.md's error table is
// this catalog.
type CodeInfo struct {
	Title     string // the wire text, stable
	Fatal     bool   // the server closes the connection after sending it
	Retriable bool   // retrying the same command later can succeed
	Doc       string // one line for the docs
}

var catalog = [numCodes]CodeInfo{
	CodeUnknown:            {"Unknown Error", false, false, "an error without a catalog entry"},
	CodeUnknownVerb:        {"Unknown Protocol Operation", false, false, "the verb is not known; the connection stays open"},
	CodeBadArgs:            {"Invalid Arguments", false, false, "wrong number or form of arguments on a complete line; the connection stays open"},
	CodeControlLineTooLong: {"Maximum Control Line Exceeded", true, false, "a control line longer than max_control_line; the stream cannot be resynchronised"},
	CodeMaxPayload:         {"Maximum Payload Violation", true, false, "a declared payload over max_payload; the payload cannot be skipped safely"},
	CodeBadSize:            {"Invalid Payload Size", true, false, "a size that is not a number, or a payload not followed by its line end"},
	CodeBadHeader:          {"Invalid Header", false, false, "a header block that is not NATS/1.0 or over max_header; the payload was consumed"},
	CodeBadSubject:         {"Invalid Subject", false, false, "an empty token, a space or a misplaced wildcard in a subscription subject"},
	CodeBadPublishSubject:  {"Invalid Publish Subject", false, false, "a publish subject with a wildcard or an empty token"},
	CodeBadSid:             {"Invalid Subscription ID", false, false, "an UNSUB for a subscription id this connection does not hold"},
	CodeMaxConnections:     {"Maximum Connections Exceeded", true, true, "the server holds max_connections already"},
	CodeSlowConsumer:       {"Slow Consumer", true, true, "the connection fell behind past max_pending bytes of outbound data"},
	CodeStaleConnection:    {"Stale Connection", true, true, "the client did not answer keepalive PINGs"},
	CodeBadConnect:         {"Invalid CONNECT", false, false, "the CONNECT JSON did not parse"},
	CodeShuttingDown:       {"Server Shutting Down", true, true, "the server is draining and takes no new connections"},
	CodeInternal:           {"Internal Error", false, true, "the server failed to carry out a valid command; nothing was applied"},
	CodeNotFound:           {"Not Found", false, false, "the named object does not exist"},
	CodeTimeout:            {"Timeout", false, true, "the operation did not finish in time"},
	CodeExists:             {"Already Exists", false, false, "an object of that name exists already"},
	CodeOutOfRange:         {"Offset Out Of Range", false, false, "an offset below the low-water mark or past the high-water mark"},
	CodeTooLarge:           {"Too Large", false, false, "an event or job over its topic's or queue's size limit; nothing was stored"},
	CodeNotOwner:           {"Not Partition Owner", false, true, "a commit for a partition this member does not own (now); rejoin or wait for the rebalance"},
	CodeStorage:            {"Storage Error", false, true, "the disk failed the write (full, I/O error); nothing was acknowledged"},
	CodeOutOfSequence:      {"Out Of Sequence", false, false, "an idempotent write whose sequence is older than the producer's dedup window"},
	CodeWrongType:          {"Wrong Type", false, false, "a KV command on a key holding another type (Redis' WRONGTYPE)"},
	CodeBadValue:           {"Invalid Value", false, false, "a KV value or argument that is not the number the command needs (INCR of text, a bad float, an overflow); nothing changed"},
	CodeNotReserved:        {"Job Not Reserved", false, false, "an ack, nack or touch for a job not in flight under that attempt (its visibility timeout passed and it went back to the queue)"},
}

// Info returns the catalog entry of c.
func (c Code) Info() CodeInfo {
	if c >= numCodes {
		return catalog[CodeUnknown]
	}
	return catalog[c]
}

func (c Code) String() string { return c.Info().Title }

// Codes lists every catalog entry, in order, for docs and tests.
func Codes() []Code {
	out := make([]Code, 0, numCodes)
	for c := Code(0); c < numCodes; c++ {
		out = append(out, c)
	}
	return out
}

// CodeOf maps the text of an -ERR line (quotes already removed) back to its
// Code by title prefix. Unknown titles map to CodeUnknown.
func CodeOf(text string) Code {
	for c := Code(1); c < numCodes; c++ {
		t := catalog[c].Title
		if len(text) >= len(t) && equalFold(text[:len(t)], t) &&
			(len(text) == len(t) || text[len(t)] == ':') {
			return c
		}
	}
	return CodeUnknown
}

// Error is a protocol error: a catalog code, a detail for humans, and where it
// happened. Fatal errors leave the byte stream unreadable; the connection must
// be closed after the -ERR is sent.
type Error struct {
	Code   Code
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "protocol: " + e.Code.Info().Title
	}
	return "protocol: " + e.Code.Info().Title + ": " + e.Detail
}

// Fatal reports whether the connection must be closed.
func (e *Error) Fatal() bool { return e.Code.Info().Fatal }

// WireText is the text sent inside -ERR '...'.
func (e *Error) WireText() string {
	if e.Detail == "" {
		return e.Code.Info().Title
	}
	return e.Code.Info().Title + ": " + e.Detail
}

// Errorf builds an *Error with a formatted detail.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Detail: fmt.Sprintf(format, args...)}
}

// snippet quotes at most 32 bytes of b for error details, so that a hostile
// line cannot blow up a log or a reply.
func snippet(b []byte) string {
	const max = 32
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if upper(a[i]) != upper(b[i]) {
			return false
		}
	}
	return true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
