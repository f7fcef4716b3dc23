package protocol

import "bytes"

// The NATS/1.0 header block:
//
//	NATS/1.0[ <status>[ <description>]]\r\n
//	Key: Value\r\n
//	...
//	\r\n
//
// FlowMesh carries trace_id, causation_id, correlation_id and tags in it.
// The block stays raw bytes on the hot path; these helpers read it only when
// someone asks.

// HeaderStatus returns the status code of a header block ("503" for
// no-responders), or nil.
func HeaderStatus(hdr []byte) []byte {
	if !bytes.HasPrefix(hdr, headerPrefix) {
		return nil
	}
	line := hdr[len(headerPrefix):]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 {
		return nil
	}
	return line
}

// HeaderValue returns the first value of key in hdr (case-insensitive key),
// or nil. It does not allocate.
func HeaderValue(hdr []byte, key string) []byte {
	i := bytes.IndexByte(hdr, '\n')
	if i < 0 {
		return nil
	}
	rest := hdr[i+1:]
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, '\n')
		line := rest
		if j >= 0 {
			line, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, "\r")
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			continue
		}
		if equalFold(string(bytes.TrimSpace(line[:c])), key) {
			return bytes.TrimSpace(line[c+1:])
		}
	}
	return nil
}

// AppendHeader builds a header block from key/value pairs (status may be
// empty). It is for clients and tests, not the hot path.
func AppendHeader(dst []byte, status string, kv ...string) []byte {
	dst = append(dst, headerPrefix...)
	if status != "" {
		dst = append(dst, ' ')
		dst = append(dst, status...)
	}
	dst = append(dst, crlf...)
	for i := 0; i+1 < len(kv); i += 2 {
		dst = append(dst, kv[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, kv[i+1]...)
		dst = append(dst, crlf...)
	}
	return append(dst, crlf...)
}

// Field is one header line.
type Field struct {
	Key   string
	Value []byte
}

// SetHeader appends to dst a copy of the header block hdr (nil: an empty
// NATS/1.0 block) in which each field's key has that one value: lines with
// the same key (case-insensitive) are dropped and the field is added last.
// The server uses it to write a message's traceparent; the status line and
// every other line are kept as they were.
func SetHeader(dst, hdr []byte, fields ...Field) []byte {
	if len(hdr) == 0 {
		hdr = emptyHeader
	}
	var rest []byte
	if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
		dst, rest = append(dst, hdr[:i+1]...), hdr[i+1:]
	} else {
		dst = append(append(dst, hdr...), crlf...) // a status line alone
	}
	for len(rest) > 0 {
		line := rest
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			line, rest = rest[:j+1], rest[j+1:]
		} else {
			rest = nil
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			continue // the blank line that ends the block
		}
		if c := bytes.IndexByte(t, ':'); c >= 0 && fieldIn(bytes.TrimSpace(t[:c]), fields) {
			continue
		}
		dst = append(dst, t...)
		dst = append(dst, crlf...)
	}
	for _, f := range fields {
		dst = append(dst, f.Key...)
		dst = append(dst, ": "...)
		dst = append(dst, f.Value...)
		dst = append(dst, crlf...)
	}
	return append(dst, crlf...)
}

var emptyHeader = []byte("NATS/1.0\r\n\r\n")

func fieldIn(key []byte, fields []Field) bool {
	for _, f := range fields {
		if len(f.Key) == len(key) && equalFold(f.Key, string(key)) {
			return true
		}
	}
	return false
}
