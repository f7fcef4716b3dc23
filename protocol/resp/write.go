package resp

import (
	"math"
	"strconv"
)

// Writer encodes replies for one connection in its protocol version (2 or
// 3, as HELLO set it). The methods append to B.
type Writer struct {
	B     []byte
	RESP3 bool
}

// Simple appends +s.
func (w *Writer) Simple(s string) { w.B = append(append(append(w.B, '+'), s...), '\r', '\n') }

// OK appends +OK.
func (w *Writer) OK() { w.B = append(w.B, "+OK\r\n"...) }

// Error appends -msg; msg starts with its code ("ERR ...", "WRONGTYPE ...").
func (w *Writer) Error(msg string) {
	w.B = append(w.B, '-')
	for i := 0; i < len(msg); i++ { // an error is one line
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		w.B = append(w.B, c)
	}
	w.B = append(w.B, '\r', '\n')
}

// Int appends :n.
func (w *Writer) Int(n int64) {
	w.B = append(strconv.AppendInt(append(w.B, ':'), n, 10), '\r', '\n')
}

// Bulk appends $len\r\nb.
func (w *Writer) Bulk(b []byte) {
	w.B = append(strconv.AppendInt(append(w.B, '$'), int64(len(b)), 10), '\r', '\n')
	w.B = append(append(w.B, b...), '\r', '\n')
}

// BulkString is Bulk of a string.
func (w *Writer) BulkString(s string) {
	w.B = append(strconv.AppendInt(append(w.B, '$'), int64(len(s)), 10), '\r', '\n')
	w.B = append(append(w.B, s...), '\r', '\n')
}

// Null appends the null reply: $-1 in RESP2, _ in RESP3.
func (w *Writer) Null() {
	if w.RESP3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "$-1\r\n"...)
}

// NullArray appends *-1 in RESP2, _ in RESP3.
func (w *Writer) NullArray() {
	if w.RESP3 {
		w.B = append(w.B, "_\r\n"...)
		return
	}
	w.B = append(w.B, "*-1\r\n"...)
}

// Array appends an array header of n elements.
func (w *Writer) Array(n int) { w.header('*', n) }

// Map appends a map header of n pairs: %n in RESP3, an array of 2n in RESP2.
func (w *Writer) Map(n int) {
	if w.RESP3 {
		w.header('%', n)
		return
	}
	w.header('*', 2*n)
}

// Set appends a set header: ~n in RESP3, an array in RESP2.
func (w *Writer) Set(n int) {
	if w.RESP3 {
		w.header('~', n)
		return
	}
	w.header('*', n)
}

// Double appends a float: ,f in RESP3, a bulk string in RESP2.
func (w *Writer) Double(f float64) {
	if w.RESP3 {
		w.B = append(AppendFloat(append(w.B, ','), f), '\r', '\n')
		return
	}
	w.Bulk(AppendFloat(nil, f))
}

// Bool appends #t/#f in RESP3, :1/:0 in RESP2.
func (w *Writer) Bool(b bool) {
	switch {
	case w.RESP3 && b:
		w.B = append(w.B, "#t\r\n"...)
	case w.RESP3:
		w.B = append(w.B, "#f\r\n"...)
	case b:
		w.Int(1)
	default:
		w.Int(0)
	}
}

// IntBool appends :1 or :0, which Redis answers in both versions where a
// command reports whether it did something (SETNX, EXPIRE, ...).
func (w *Writer) IntBool(b bool) {
	if b {
		w.B = append(w.B, ":1\r\n"...)
		return
	}
	w.B = append(w.B, ":0\r\n"...)
}

// Verbatim appends a text blob: =len\r\ntxt:s in RESP3, bulk in RESP2.
func (w *Writer) Verbatim(s string) {
	if !w.RESP3 {
		w.BulkString(s)
		return
	}
	w.B = append(strconv.AppendInt(append(w.B, '='), int64(len(s)+4), 10), '\r', '\n')
	w.B = append(append(append(w.B, "txt:"...), s...), '\r', '\n')
}

func (w *Writer) header(c byte, n int) {
	w.B = append(strconv.AppendInt(append(w.B, c), int64(n), 10), '\r', '\n')
}

// AppendFloat writes f as Redis does: integers without a fraction, inf
// and -inf by name, otherwise the shortest form that reads back the same.
func AppendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', 17, 64)
}
