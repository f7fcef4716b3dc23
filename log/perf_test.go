package log

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPerfReport measures the log beside the disk's own sequential write
// speed, in one run, and prints a table for docs/benchmarks.md. It is a
// measurement, not a pass/fail test, so it runs only when asked:
//
//	FLOWMESH_LOG_PERF=1 go test -run TestPerfReport -v ./log/
//	FLOWMESH_LOG_PERF=1 FLOWMESH_LOG_PERF_GIB=10 go test -run TestPerfReport -v -timeout 30m ./log/
func TestPerfReport(t *testing.T) {
	if os.Getenv("FLOWMESH_LOG_PERF") == "" {
		t.Skip("set FLOWMESH_LOG_PERF=1 to measure")
	}
	gib := 1
	fmt.Sscan(os.Getenv("FLOWMESH_LOG_PERF_GIB"), &gib)
	// Append volume per run. The default fits in the page cache's dirty
	// limit (20% of RAM), so on a large-memory machine both sides measure
	// memory copies more than the disk; FLOWMESH_LOG_PERF_APPEND_MIB well
	// past that limit measures the disk itself.
	appendMiB := 512
	fmt.Sscan(os.Getenv("FLOWMESH_LOG_PERF_APPEND_MIB"), &appendMiB)
	dir := os.Getenv("FLOWMESH_LOG_PERF_DIR") // default: a temp dir on the same disk as the test
	if dir == "" {
		dir = t.TempDir()
	}
	report := func(format string, args ...any) { t.Logf(format, args...) }

	report("| workload | FlowMesh log | plain buffered file writer | ratio |")
	report("|---|---|---|---|")
	for _, size := range []int{100, 1024} {
		for _, pol := range []SyncPolicy{SyncInterval, SyncNone} {
			// Median of 3, alternating, so that one burst of the shared
			// disk does not decide the ratio.
			var logs, raws []float64
			for run := 0; run < 3; run++ {
				logs = append(logs, appendThroughput(t, filepath.Join(dir, fmt.Sprintf("tp%d-%d-%d", size, pol, run)), size, appendMiB<<20, pol))
				raws = append(raws, rawWriterThroughput(t, filepath.Join(dir, fmt.Sprintf("raw%d", size)), size, appendMiB<<20))
				os.RemoveAll(filepath.Join(dir, fmt.Sprintf("tp%d-%d-%d", size, pol, run)))
			}
			slices.Sort(logs)
			slices.Sort(raws)
			report("| append %d B records, %s fsync, codec none (MB/s written, median of 3) | %.0f | %.0f | %.2fx |",
				size, pol, logs[1], raws[1], logs[1]/raws[1])
		}
	}

	recs, fsyncs := alwaysThroughput(t, filepath.Join(dir, "always"), 64, 5*time.Second)
	report("| always fsync, 64 concurrent appenders, 100 B | %.0f records/s, %.0f fsyncs/s | — | — |", recs, fsyncs)

	big := filepath.Join(dir, "big")
	built := buildLog(t, big, int64(gib)<<30)
	start := time.Now()
	l := open(t, big, Options{Codec: CodecS2})
	rec := time.Since(start)
	report("| recovery (Open) of a %d GiB log, %d segments, after a clean close | %v | — | — |", gib, l.Stats().Segments, rec.Round(time.Microsecond))
	l.Close()
	// Worst case after a crash: no checkpoint of the active segment at all,
	// so all of it is scanned (normally at most 32 MiB past the last one).
	active := l.segs[len(l.segs)-1]
	os.Remove(active.indexPath())
	start = time.Now()
	l = open(t, big, Options{Codec: CodecS2})
	rec = time.Since(start)
	report("| recovery of the same log with the active segment's index gone (%d MiB scanned) | %v | — | — |",
		active.size>>20, rec.Round(time.Microsecond))
	start = time.Now()
	n, bytes := 0, 0
	var dst []Record
	for off := l.LowWater(); off < l.HighWater(); {
		var err error
		dst, err = l.Read(off, 4<<20, dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range dst {
			bytes += len(r.Value)
		}
		n += len(dst)
		off = dst[len(dst)-1].Offset + 1
	}
	el := time.Since(start).Seconds()
	report("| sequential read of the %d GiB log (1 KiB records, s2) | %.0f records/s, %.0f MB/s | — | — |", gib, float64(n)/el, float64(bytes)/el/1e6)
	if int64(n) != built {
		t.Fatalf("read %d records, wrote %d", n, built)
	}
	l.Close()
}

// appendThroughput appends records of size bytes until total bytes, with
// one producer that does not wait between appends (a batching producer).
func appendThroughput(t *testing.T, dir string, size, total int, pol SyncPolicy) float64 {
	l := open(t, dir, Options{Codec: CodecNone, Sync: pol})
	v := make([]byte, size)
	n := total / size
	var wg sync.WaitGroup
	wg.Add(n)
	// The producer keeps at most 64 MiB appended but not yet written, as a
	// client's window (or the server's per-connection in-flight limit) does;
	// an unbounded producer only measures how fast memory fills.
	window := make(chan struct{}, 64<<20/size)
	done := func(uint64, error) { <-window; wg.Done() }
	start := time.Now()
	recs := make([]Record, 1)
	for i := 0; i < n; i++ {
		window <- struct{}{}
		recs[0] = Record{Value: v}
		l.Append(recs, done)
	}
	wg.Wait()
	l.Close() // includes the last fsync, as the raw writer's does
	el := time.Since(start).Seconds()
	return float64(l.Stats().BytesWritten) / el / 1e6
}

// rawWriterThroughput writes the same volume through a 1 MiB bufio.Writer
// into one file, then fsyncs: the disk's sequential write speed as a Go
// program sees it.
func rawWriterThroughput(t *testing.T, path string, size, total int) float64 {
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	v := make([]byte, size+4) // the record plus its few bytes of framing
	start := time.Now()
	for written := 0; written < total; written += size {
		w.Write(v)
	}
	w.Flush()
	f.Sync()
	return float64(total) / time.Since(start).Seconds() / 1e6
}

func alwaysThroughput(t *testing.T, dir string, appenders int, d time.Duration) (recsPerSec, fsyncsPerSec float64) {
	l := open(t, dir, Options{Codec: CodecS2, Sync: SyncAlways})
	defer l.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	v := make([]byte, 100)
	start := time.Now()
	for i := 0; i < appenders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := l.AppendWait(context.Background(), Record{Value: v}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(d) // the measurement window
	stop.Store(true)
	wg.Wait()
	el := time.Since(start).Seconds()
	st := l.Stats()
	return float64(st.Records) / el, float64(st.Fsyncs) / el
}

// buildLog fills dir with about size bytes of 1 KiB records that compress
// about 2:1, and returns the record count.
func buildLog(t *testing.T, dir string, size int64) int64 {
	l := open(t, dir, Options{Codec: CodecS2, Sync: SyncNone})
	// Half random, half zeros, and a different window of the random pool
	// for each record, so records do not compress against each other.
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = byte(rand.IntN(256))
	}
	v := make([]byte, 1024)
	var wg sync.WaitGroup
	n := int64(0)
	for l.Stats().BytesWritten < uint64(size) {
		for i := 0; i < 10000; i++ {
			o := rand.IntN(len(pool) - 512)
			copy(v[:512], pool[o:o+512])
			wg.Add(1)
			l.Append([]Record{{Value: v}}, func(uint64, error) { wg.Done() })
			n++
		}
		wg.Wait()
	}
	l.Close()
	return n
}
