package tracing

import "go.opentelemetry.io/otel/trace"

// The W3C traceparent header (https://www.w3.org/TR/trace-context/):
//
//	00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>
//
// Parsed and formatted here without allocating: the server reads it from
// message headers on the hot path.

// TraceparentLen is the length of a version-00 traceparent.
const TraceparentLen = 55

// ParseTraceparent reads a traceparent value. Versions above 00 are read
// as 00 (the spec's forward compatibility); version ff, all-zero ids and
// malformed values are refused.
func ParseTraceparent(b []byte) (trace.SpanContext, bool) {
	if len(b) < TraceparentLen || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return trace.SpanContext{}, false
	}
	ver, ok := hexByte(b[0], b[1])
	if !ok || ver == 0xff || ver == 0 && len(b) != TraceparentLen || ver > 0 && len(b) > TraceparentLen && b[TraceparentLen] != '-' {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	if !decodeHex(tid[:], b[3:35]) || !decodeHex(sid[:], b[36:52]) || !tid.IsValid() || !sid.IsValid() {
		return trace.SpanContext{}, false
	}
	flags, ok := hexByte(b[53], b[54])
	if !ok {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(flags) & trace.FlagsSampled, Remote: true}), true
}

// Sampled reports whether a traceparent value has its sampled flag set,
// without parsing the rest: the cheap test before a span is started.
func Sampled(b []byte) bool {
	if len(b) < TraceparentLen {
		return false
	}
	f, ok := hexByte(b[53], b[54])
	return ok && f&1 == 1
}

// AppendTraceparent appends sc as a version-00 traceparent.
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = appendHex(dst, tid[:])
	dst = append(dst, '-')
	dst = appendHex(dst, sid[:])
	dst = append(dst, '-')
	return appendHex(dst, []byte{byte(sc.TraceFlags())})
}

// PackedSize is the size of a packed span context: trace id, span id,
// flags.
const PackedSize = 16 + 8 + 1

// Pack packs sc for keeping beside a job (25 bytes instead of a
// 55-byte string or a SpanContext with its trace state).
func Pack(sc trace.SpanContext) *[PackedSize]byte {
	var p [PackedSize]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(p[:16], tid[:])
	copy(p[16:24], sid[:])
	p[24] = byte(sc.TraceFlags())
	return &p
}

// Unpack is Pack's inverse; the context is remote (it came from a
// message).
func Unpack(p *[PackedSize]byte) trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], p[:16])
	copy(sid[:], p[16:24])
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(p[24]), Remote: true})
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// decodeHex decodes lower-case hex (the spec allows no upper case).
func decodeHex(dst, src []byte) bool {
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
