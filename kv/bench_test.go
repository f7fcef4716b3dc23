package kv

import (
	"fmt"
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

func BenchmarkGet(b *testing.B) {
	e, keys := benchEngine(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok, err := e.Get(keys[(i*7919)%len(keys)]); err != nil || !ok {
			b.Fatal(ok, err)
		}
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
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
		if _, err := e.Set(keys[i], val, SetOpts{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.checkpoint(true); err != nil { // start clean, as after a restart
		b.Fatal(err)
	}
	return e, keys
}
