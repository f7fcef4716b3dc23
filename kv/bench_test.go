package kv

import (
	"testing"
	"time"
)

// BenchmarkSet and BenchmarkGet run the engine's side of redis-benchmark's
// SET and GET (-r 100000 -d 100): random keys out of 100k, 100 B values,
// on disk with the append-only file written every 50 SETs, as a port's
// loop turn with 50 clients does (no fsync). Speed targets live in
// docs/benchmarks.md.
func BenchmarkSet(b *testing.B) {
	e, keys := benchEngine(b)
	val := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := e.Set(keys[(i*7919)%len(keys)], val, SetOpts{}); err != nil {
			b.Fatal(err)
		}
		if i%50 == 49 {
			if err := e.Barrier(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkGet reads the key from one reused buffer and copies the value
// into another, as the port does (the key is in the connection's input,
// hot in the CPU's cache; the reply is built in its output): what it
// measures is finding the record and reading its value.
func BenchmarkGet(b *testing.B) {
	e, keys := benchEngine(b)
	var in, out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		in = benchKey(in[:0], (i*7919)%len(keys))
		v, ok, err := e.Get(in)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		out = append(out[:0], v...)
	}
}

func benchEngine(b *testing.B) (*Engine, [][]byte) {
	b.Helper()
	e, err := Open(Options{Dir: b.TempDir(), FlushInterval: time.Hour, ReapInterval: time.Hour, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	keys := make([][]byte, 100_000)
	val := make([]byte, 100)
	for i := range keys {
		keys[i] = benchKey(nil, i)
		if _, err := e.Set(keys[i], val, SetOpts{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.checkpoint(true); err != nil { // start clean, as after a restart
		b.Fatal(err)
	}
	return e, keys
}

// benchKey appends key number i, built from i: no memory to read.
func benchKey(dst []byte, i int) []byte {
	dst = append(dst, "key:000000000000"...)
	for j := len(dst) - 1; i > 0; j-- {
		dst[j] = byte('0' + i%10)
		i /= 10
	}
	return dst
}
