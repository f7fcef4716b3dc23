// Package tracing owns FlowMesh's OpenTelemetry tracing on the server: the
// tracer provider built from the node's config and the standard OTEL_*
// variables (OTLP over gRPC or HTTP, off by default, parent-based ratio
// sampling), the names and attributes of the spans of message operations
// (write, publish, enqueue, deliver, ack, nack, dead-letter), and the W3C
// traceparent in text and in a packed binary form the queue engine keeps
// per job.
//
// It knows nothing of the wire: the server finds the traceparent in a
// message's header block and writes the new one back.
//
// Imports: go.opentelemetry.io/otel (API, SDK, OTLP exporters); no FlowMesh
// package.
package tracing
