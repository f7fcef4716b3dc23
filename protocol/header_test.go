package protocol

import (
	"bytes"
	"testing"
)

func TestSetHeader(t *testing.T) {
	tp := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	tests := []struct{ name, in, want string }{
		{"none", "", "NATS/1.0\r\ntraceparent: " + string(tp) + "\r\n\r\n"},
		{"kept lines and status", "NATS/1.0 100 Idle\r\ncorrelation_id: c1\r\nTraceParent: old\r\ntags: a\r\n\r\n",
			"NATS/1.0 100 Idle\r\ncorrelation_id: c1\r\ntags: a\r\ntraceparent: " + string(tp) + "\r\n\r\n"},
		{"bare newlines", "NATS/1.0\ntraceparent: old\nx: y\n\n", "NATS/1.0\nx: y\r\ntraceparent: " + string(tp) + "\r\n\r\n"},
	}
	for _, tc := range tests {
		var in []byte
		if tc.in != "" {
			in = []byte(tc.in)
		}
		got := SetHeader(nil, in, Field{"traceparent", tp})
		if string(got) != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	two := SetHeader([]byte("keep"), nil, Field{"traceparent", tp}, Field{"trace_id", tp[3:35]})
	if !bytes.HasPrefix(two, []byte("keep")) || string(HeaderValue(two[4:], "trace_id")) != string(tp[3:35]) {
		t.Errorf("two fields: %q", two)
	}
}

// FuzzSetHeader: whatever the block, the result is a well-formed block
// (parses as one) with the field set once and the other keys kept.
func FuzzSetHeader(f *testing.F) {
	f.Add([]byte("NATS/1.0\r\na: 1\r\ntraceparent: x\r\n\r\n"), "v")
	f.Add([]byte("NATS/1.0 503\r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, hdr []byte, val string) {
		if !bytes.HasPrefix(hdr, headerPrefix) || bytes.ContainsAny([]byte(val), "\r\n") {
			return // the server only rewrites blocks the parser accepted, with values it formatted
		}
		val = string(bytes.TrimSpace([]byte(val)))
		out := SetHeader(nil, hdr, Field{"traceparent", []byte(val)})
		if !bytes.HasSuffix(out, []byte("\r\n\r\n")) || !bytes.HasPrefix(out, headerPrefix) {
			t.Fatalf("not a block: %q", out)
		}
		if got := HeaderValue(out, "traceparent"); string(got) != val {
			t.Fatalf("traceparent %q, want %q in %q", got, val, out)
		}
		if string(HeaderStatus(out)) != string(HeaderStatus(hdr)) {
			t.Fatalf("status changed: %q -> %q", hdr, out)
		}
		n := 0
		for _, line := range bytes.Split(out[bytes.IndexByte(out, '\n')+1:], []byte("\n")) { // the status line is not a field
			if k, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("traceparent")) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("traceparent not unique: %q", out)
		}
	})
}
