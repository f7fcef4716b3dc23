package server

import (
	"strconv"

	"github.com/flowmesh/flowmesh/monitor/tracing"
	"github.com/flowmesh/flowmesh/protocol"
	"github.com/flowmesh/flowmesh/queue"
)

// Tracing of messages (docs/observability.md). The server reads a
// message's W3C traceparent from its header block, records its own span
// as a child of it and, for a sampled trace or a trace it starts, writes
// its span's traceparent (and trace_id) back into the block the message
// carries from then on, so consumers continue from the server's span.
// With tracing off s.tracer is nil and none of this runs: one nil test per
// message.

const hdrTraceparent = "traceparent"

// traceIn starts the span of a message coming in (write, publish,
// enqueue) and returns the header block it carries from here on. room,
// if not nil, says how many bytes the message may still grow by under its
// destination's size limit: a block that would not fit is left as it was
// (the span is still recorded; its consumers then continue from the
// producer's span), so tracing never makes a message too large.
func (s *Server) traceIn(op tracing.Op, dest string, hdr []byte, room func() int) (tracing.Span, []byte) {
	var parent []byte
	if hdr != nil {
		parent = protocol.HeaderValue(hdr, hdrTraceparent)
	}
	sp, inject := s.tracer.Start(op, dest, parent)
	if !inject {
		return sp, hdr
	}
	var tp [tracing.TraceparentLen]byte
	var tid [32]byte
	out := make([]byte, 0, len(hdr)+tracing.TraceparentLen+64)
	out = protocol.SetHeader(out, hdr,
		protocol.Field{Key: hdrTraceparent, Value: sp.AppendTraceparent(tp[:0])},
		protocol.Field{Key: "trace_id", Value: sp.AppendTraceID(tid[:0])})
	if room != nil && len(out)-len(hdr) > room() {
		return sp, hdr
	}
	return sp, out
}

// traceOf finds a job's sampled trace context in its header block, for
// the queue engine's recovery.
func traceOf(hdr []byte) *[queue.TraceSize]byte {
	sc, ok := tracing.ParseTraceparent(protocol.HeaderValue(hdr, hdrTraceparent))
	if !ok || !sc.IsSampled() {
		return nil
	}
	return tracing.Pack(sc)
}

// deadLettered records a job's arrival in its dead-letter queue: in the
// window the WebSocket feed names, and as a span when tracing is on.
func (s *Server) deadLettered(q *queue.Queue, j queue.Job) {
	s.deadLetters.add(q.Name(), j)
	sp := s.tracer.ContinuePacked(tracing.DeadLetter, q.Name(), j.Trace)
	if sp.Recording() {
		sp.Set(tracing.MessageID.String(strconv.FormatUint(j.ID, 10)), tracing.Attempt.Int(j.Attempts),
			tracing.LastError.String(j.LastError))
	}
	sp.End(nil)
}

// jobSpan continues a queue job's trace for op (deliver, ack, nack).
func (s *Server) jobSpan(op tracing.Op, q string, id uint64, attempt int, trace *[queue.TraceSize]byte) tracing.Span {
	sp := s.tracer.ContinuePacked(op, q, trace)
	if sp.Recording() {
		sp.Set(tracing.MessageID.String(strconv.FormatUint(id, 10)), tracing.Attempt.Int(attempt))
	}
	return sp
}
