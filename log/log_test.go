package log

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rec(i int) Record {
	return Record{Key: []byte(fmt.Sprintf("k%d", i)), Headers: []byte("trace_id: t"), Value: []byte(fmt.Sprintf("value-%d", i))}
}

// readAll reads every record from off to the high-water mark.
func readAll(t testing.TB, l *Log, off uint64) []Record {
	t.Helper()
	var out []Record
	for off < l.HighWater() {
		recs, err := l.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(recs) == 0 {
			t.Fatalf("no records at %d below high water %d", off, l.HighWater())
		}
		out = append(out, recs...)
		off = recs[len(recs)-1].Offset + 1
	}
	return out
}

// TestAppendReadAllOptions runs one workload over every codec and sync
// policy: concurrent appenders, then every record read back in order.
func TestAppendReadAllOptions(t *testing.T) {
	for _, codec := range []Codec{CodecNone, CodecS2, CodecZstd} {
		for _, pol := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
			t.Run(codec.String()+"/"+pol.String(), func(t *testing.T) {
				dir := t.TempDir()
				l := open(t, dir, Options{Codec: codec, Sync: pol, SegmentBytes: 8 << 10, IndexInterval: 512})
				const writers, each = 8, 50
				var wg sync.WaitGroup
				seen := make([]atomic.Bool, writers*each)
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := 0; i < each; i++ {
							off, err := l.AppendWait(context.Background(), rec(w*each+i))
							if err != nil {
								t.Error(err)
								return
							}
							if seen[off].Swap(true) {
								t.Errorf("offset %d given twice", off)
							}
						}
					}(w)
				}
				wg.Wait()
				check := func(l *Log) {
					recs := readAll(t, l, 0)
					if len(recs) != writers*each {
						t.Fatalf("read %d records, want %d", len(recs), writers*each)
					}
					values := map[string]bool{}
					for i, r := range recs {
						if r.Offset != uint64(i) || string(r.Headers) != "trace_id: t" || r.Timestamp == 0 {
							t.Fatalf("record %d: %+v", i, r)
						}
						values[string(r.Value)] = true
					}
					if len(values) != writers*each {
						t.Fatalf("%d distinct values", len(values))
					}
				}
				check(l)
				if st := l.Stats(); st.Segments < 2 || st.Policy != pol.String() {
					t.Fatalf("stats %+v: want several segments", st)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = open(t, dir, Options{Codec: codec, Sync: pol})
				defer l.Close()
				check(l)
			})
		}
	}
}

// TestGroupCommit: under the always policy, concurrent appenders share
// fsyncs.
func TestGroupCommit(t *testing.T) {
	l := open(t, t.TempDir(), Options{Codec: CodecS2, Sync: SyncAlways})
	defer l.Close()
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := l.AppendWait(context.Background(), rec(i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	if st.Records != 640 || st.Fsyncs >= 640 {
		t.Fatalf("records %d, fsyncs %d: want 640 records with fewer fsyncs", st.Records, st.Fsyncs)
	}
	var inBuckets uint64
	for _, n := range st.FsyncBuckets {
		inBuckets += n
	}
	if inBuckets != st.Fsyncs {
		t.Fatalf("fsync histogram holds %d, %d fsyncs", inBuckets, st.Fsyncs)
	}
	t.Logf("640 appends, %d batches, %d fsyncs", st.Batches, st.Fsyncs)
}

// TestTornTailEveryByte writes batches, then cuts the segment at every byte
// of its last three batches: recovery must return exactly the fully
// written batches before the cut, and appends must go on after them.
func TestTornTailEveryByte(t *testing.T) {
	src := t.TempDir()
	l := open(t, src, Options{Codec: CodecS2, Sync: SyncAlways})
	var ends []int64 // file size after each batch
	var counts []int // records after each batch
	n := 0
	for b := 0; b < 8; b++ {
		var recs []Record
		for i := 0; i < b%3+1; i++ {
			recs = append(recs, rec(n))
			n++
		}
		if _, err := l.AppendWait(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, l.Stats().SizeBytes)
		counts = append(counts, n)
	}
	l.Close()
	data, err := os.ReadFile(filepath.Join(src, segmentName(0)))
	if err != nil {
		t.Fatal(err)
	}
	from := ends[len(ends)-4]
	for cut := from; cut <= int64(len(data)); cut++ {
		want := 0
		for i, e := range ends {
			if e <= cut {
				want = counts[i]
			}
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segmentName(0)), data[:cut], 0o644)
		l := open(t, dir, Options{Codec: CodecS2, Sync: SyncAlways})
		recs := readAll(t, l, 0)
		if len(recs) != want {
			t.Fatalf("cut at %d: %d records, want %d", cut, len(recs), want)
		}
		for i, r := range recs {
			if string(r.Value) != fmt.Sprintf("value-%d", i) {
				t.Fatalf("cut at %d: record %d = %q", cut, i, r.Value)
			}
		}
		off, err := l.AppendWait(context.Background(), rec(999))
		if err != nil || off != uint64(want) {
			t.Fatalf("cut at %d: append after recovery: offset %d err %v, want %d", cut, off, err, want)
		}
		l.Close()
	}
}

// TestBitFlips: a flipped bit in the last batch is a torn tail (cut); in a
// batch with valid ones after it, it is corruption: reported with file and
// position, never returned as records, and the records around it stay
// readable.
func TestBitFlips(t *testing.T) {
	src := t.TempDir()
	l := open(t, src, Options{Codec: CodecNone, Sync: SyncAlways})
	var ends []int64
	for b := 0; b < 5; b++ {
		if _, err := l.AppendWait(context.Background(), rec(2*b), rec(2*b+1)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, l.Stats().SizeBytes)
	}
	l.Close()
	data, _ := os.ReadFile(filepath.Join(src, segmentName(0)))

	t.Run("middle batch", func(t *testing.T) {
		for _, at := range []int64{ends[1] + 2, ends[1] + 20, ends[1] + batchHeaderSize + 3} {
			bad := bytes.Clone(data)
			bad[at] ^= 0x10
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, segmentName(0)), bad, 0o644)
			l := open(t, dir, Options{Codec: CodecNone})
			if _, err := l.Read(4, 1<<20, nil); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip at %d: read of the damaged batch: %v", at, err)
			}
			recs, err := l.Read(0, 1<<20, nil)
			if err == nil || len(recs) != 4 {
				t.Fatalf("flip at %d: read from 0 gave %d records, err %v: want the 4 before the damage and an error", at, len(recs), err)
			}
			after := readAll(t, l, 6)
			if len(after) != 4 || after[0].Offset != 6 {
				t.Fatalf("flip at %d: after the damage: %d records", at, len(after))
			}
			if l.HighWater() != 10 {
				t.Fatalf("high water %d, want 10", l.HighWater())
			}
			l.Close()
		}
	})
	t.Run("last batch", func(t *testing.T) {
		bad := bytes.Clone(data)
		bad[ends[3]+30] ^= 0x01
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segmentName(0)), bad, 0o644)
		l := open(t, dir, Options{Codec: CodecNone})
		defer l.Close()
		if got := len(readAll(t, l, 0)); got != 8 || l.HighWater() != 8 {
			t.Fatalf("%d records, high water %d: want the torn last batch cut", got, l.HighWater())
		}
	})
}

func TestSeekTimeAndIndex(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{Codec: CodecS2, SegmentBytes: 4 << 10, IndexInterval: 256})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := 0; i < 500; i++ {
		r := rec(i)
		r.Timestamp = base + int64(i)*int64(time.Second)
		if _, err := l.AppendWait(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	check := func(l *Log) {
		for _, i := range []int{0, 1, 77, 250, 499} {
			off, err := l.SeekTime(base + int64(i)*int64(time.Second) - 1)
			if err != nil || off != uint64(i) {
				t.Fatalf("SeekTime(record %d) = %d, %v", i, off, err)
			}
		}
		if off, _ := l.SeekTime(base + 1000*int64(time.Second)); off != 500 {
			t.Fatalf("SeekTime past the end = %d, want 500", off)
		}
		recs, err := l.Read(321, 1, nil)
		if err != nil || len(recs) != 1 || recs[0].Offset != 321 {
			t.Fatalf("Read(321) = %v, %v", recs, err)
		}
	}
	check(l)
	l.Close()
	// Missing and stale index files are rebuilt.
	idx, _ := filepath.Glob(filepath.Join(dir, "*.index"))
	if len(idx) < 2 {
		t.Fatalf("%d index files", len(idx))
	}
	os.Remove(idx[0])
	os.WriteFile(idx[1], []byte("FMIX garbage"), 0o644)
	l = open(t, dir, Options{Codec: CodecS2})
	defer l.Close()
	check(l)
	if _, err := os.Stat(idx[0]); err != nil {
		t.Fatalf("index not rewritten: %v", err)
	}
}

func TestRetention(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	fill := func(l *Log, n int) {
		for i := 0; i < n; i++ {
			if _, err := l.AppendWait(context.Background(), Record{Value: bytes.Repeat([]byte("x"), 500)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("size", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{Codec: CodecNone, SegmentBytes: 4 << 10, RetentionBytes: 16 << 10, Now: clock})
		defer l.Close()
		fill(l, 200)
		st := l.Stats()
		if st.SizeBytes > 16<<10+4<<10 || st.LowWater == 0 {
			t.Fatalf("size %d, low water %d: retention by size did not run", st.SizeBytes, st.LowWater)
		}
		if _, err := l.Read(0, 100, nil); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("read of deleted offset: %v", err)
		}
		readAll(t, l, st.LowWater)
	})
	t.Run("age", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{Codec: CodecNone, SegmentBytes: 4 << 10, RetentionAge: time.Hour, Now: clock})
		defer l.Close()
		fill(l, 40)
		advance(2 * time.Hour)
		fill(l, 40) // rolls, and the roll applies retention
		if lw := l.LowWater(); lw < 40 {
			t.Fatalf("low water %d: segments older than an hour kept", lw)
		}
	})
	t.Run("low water", func(t *testing.T) {
		l := open(t, t.TempDir(), Options{Codec: CodecNone, SegmentBytes: 4 << 10, Now: clock})
		defer l.Close()
		fill(l, 100)
		before := l.Stats()
		l.SetLowWater(60)
		fill(l, 10) // the next roll or tick deletes
		deadline := time.Now().Add(5 * time.Second)
		for l.LowWater() == 0 && time.Now().Before(deadline) {
			fill(l, 1) // bounded: retention runs on the writer's own schedule
		}
		after := l.Stats()
		if after.LowWater == 0 || after.LowWater > 60 || after.Segments >= before.Segments+3 {
			t.Fatalf("low water %d (want in (0, 60]), segments %d -> %d", after.LowWater, before.Segments, after.Segments)
		}
	})
}

// TestIdleLogSleeps checks that a log with nothing to do has no timer
// running: its interval fsync follows the write that needed it, its age
// limit is met by a timer set for the oldest segment, and then the writer
// and the syncer sleep (they ticked every SyncInterval: 1000 idle
// partitions cost 73% of a core).
func TestIdleLogSleeps(t *testing.T) {
	l := open(t, t.TempDir(), Options{Codec: CodecNone, SegmentBytes: 4 << 10, RetentionAge: 100 * time.Millisecond,
		Sync: SyncInterval, SyncInterval: 2 * time.Millisecond})
	defer l.Close()
	for i := 0; i < 40; i++ { // about five segments
		if _, err := l.AppendWait(context.Background(), Record{Value: bytes.Repeat([]byte("x"), 500)}); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("%d segments, want several", st.Segments)
	}
	// No more appends: the syncer's fsync and the age limit must come by
	// themselves.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := l.Stats()
		if st.Segments == 1 && st.LowWater > 0 && !l.unsynced.Load() && st.Fsyncs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle log after 10 s: %d segments, low water %d, %d fsyncs, unsynced %v",
				st.Segments, st.LowWater, st.Fsyncs, l.unsynced.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := l.stats.wakeups.Load()
	time.Sleep(100 * time.Millisecond) // 50 sync intervals with nothing to do
	if n := l.stats.wakeups.Load() - before; n != 0 {
		t.Fatalf("an idle log woke %d times in 100 ms", n)
	}
	// Asleep is not stuck: the next append is written and synced.
	if _, err := l.AppendWait(context.Background(), Record{Value: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	for fs := l.Stats().Fsyncs; l.Stats().Fsyncs == fs; {
		if time.Now().After(deadline) {
			t.Fatal("no interval fsync after the idle log's next append")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSmallLogSmallBuffers: a log that carried small batches holds small
// buffers (each batch's buffer was sized for MaxBatchBytes up front, and
// 1000 partitions with 1000 queues held 1.45 GB of heap).
func TestSmallLogSmallBuffers(t *testing.T) {
	l := open(t, t.TempDir(), Options{Codec: CodecS2})
	defer l.Close()
	for i := 0; i < 10; i++ {
		if _, err := l.AppendWait(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	held := cap(l.pending.b.raw)
	for _, p := range l.free {
		held += cap(p.b.raw)
	}
	l.mu.Unlock()
	if held > 4*initialBatchBytes {
		t.Fatalf("a log of ten small records holds %d bytes of batch buffers", held)
	}
}

// countFS counts the reads of the files it opens.
type countFS struct {
	OSFS
	reads atomic.Int64
}

func (c *countFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := c.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countFile{f, &c.reads}, nil
}

type countFile struct {
	File
	n *atomic.Int64
}

func (f countFile) ReadAt(p []byte, off int64) (int, error) {
	f.n.Add(1)
	return f.File.ReadAt(p, off)
}

// TestReaderReadN reads a log of small batches a few records at a time,
// as a consumer group with a nearly full window does: every record once,
// in order, and each batch read about as many times as it is split (the
// Reader starts where it stopped). Before, each read began at the index
// entry before its offset and decoded up to 1 MiB of which the caller kept
// a few records: delivery to a group with 256 partitions ran at 19k
// events/s.
func TestReaderReadN(t *testing.T) {
	fs := &countFS{}
	l := open(t, t.TempDir(), Options{Codec: CodecS2, SegmentBytes: 64 << 10, FS: fs})
	defer l.Close()
	const batches, per = 200, 10
	for b := 0; b < batches; b++ {
		recs := make([]Record, per)
		for i := range recs {
			recs[i] = Record{Value: []byte(fmt.Sprintf("record %d", b*per+i))}
		}
		if _, err := l.AppendWait(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	r := l.NewReader()
	before := fs.reads.Load()
	for off := uint64(0); off < batches*per; {
		recs, err := r.ReadN(off, 3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 || len(recs) > 3 {
			t.Fatalf("ReadN(%d, 3) gave %d records", off, len(recs))
		}
		for i, rec := range recs {
			if rec.Offset != off+uint64(i) || string(rec.Value) != fmt.Sprintf("record %d", off+uint64(i)) {
				t.Fatalf("ReadN(%d)[%d] = offset %d %q", off, i, rec.Offset, rec.Value)
			}
		}
		off += uint64(len(recs))
	}
	// A batch of 10 read 3 at a time is read 4 times, two reads each
	// (header, batch); segment changes cost an index lookup's scan.
	if n, most := fs.reads.Load()-before, int64(batches*4*2+batches/2); n > most {
		t.Fatalf("%d file reads for %d batches read 3 records at a time, want at most %d", n, batches, most)
	}
	// Elsewhere (a rewind) the index is used again.
	recs, err := r.ReadN(505, 5, 1<<20)
	if err != nil || len(recs) != 5 || recs[0].Offset != 505 || recs[4].Offset != 509 {
		t.Fatalf("ReadN(505, 5) after the end: %d records, %v", len(recs), err)
	}
}

// TestReaderAtTheTail: a Reader following the tail while batches are
// written reads every offset once, in order. Under SyncAlways a written
// batch is in the file (and in what readers may scan) before its fsync
// makes it readable, and one write may carry several batches: a ReadN
// that scanned such batches past the high-water mark once left its hint
// at the last of them, and the next ReadN skipped the ones between.
func TestReaderAtTheTail(t *testing.T) {
	for _, pol := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(pol.String(), func(t *testing.T) { readAtTheTail(t, pol) })
	}
}

func readAtTheTail(t *testing.T, pol SyncPolicy) {
	l := open(t, t.TempDir(), Options{Codec: CodecS2, Sync: pol})
	defer l.Close()
	const writers, each = 8, 1000
	var wg sync.WaitGroup
	defer wg.Wait() // before the Close: writers may still be appending after a failure
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := l.AppendWait(context.Background(), rec(w*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	r := l.NewReader()
	for off := uint64(0); off < writers*each; {
		tail := l.Notify()
		recs, err := r.ReadN(off, 3, 1<<20)
		if err != nil {
			t.Error(err)
			return
		}
		for i, rec := range recs {
			if rec.Offset != off+uint64(i) {
				t.Errorf("ReadN(%d, 3)[%d] is offset %d: offsets %d-%d skipped", off, i, rec.Offset, off+uint64(i), rec.Offset-1)
				return
			}
		}
		off += uint64(len(recs))
		// A seek by time meanwhile answers a readable offset, never one of
		// a batch written but not yet published (fsynced, under always).
		if at, err := l.SeekTime(time.Now().Add(-time.Millisecond).UnixNano()); err != nil || at > l.HighWater() {
			t.Errorf("SeekTime during appends: offset %d, high-water mark %d, %v", at, l.HighWater(), err)
			return
		}
		if len(recs) == 0 {
			select {
			case <-tail:
			case <-done:
				if recs, err := r.ReadN(off, 3, 1<<20); err != nil || len(recs) == 0 {
					t.Errorf("all written, reader at %d of %d: %v", off, l.HighWater(), err)
					return
				}
			}
		}
	}
}

func TestTailNotify(t *testing.T) {
	l := open(t, t.TempDir(), Options{Codec: CodecS2})
	defer l.Close()
	got := make(chan Record, 1)
	go func() {
		for {
			ch := l.Notify()
			if l.HighWater() > 0 {
				recs, _ := l.Read(0, 100, nil)
				got <- recs[0]
				return
			}
			<-ch
		}
	}()
	l.AppendWait(context.Background(), rec(7))
	select {
	case r := <-got:
		if string(r.Value) != "value-7" {
			t.Fatalf("tail got %q", r.Value)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tail reader not woken")
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: quiet}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	l.Close()
	l2 := open(t, dir, Options{})
	l2.Close()
	if _, err := l.AppendWait(context.Background(), rec(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

// faultFS fails writes once budget bytes have been written, like a disk
// that fills up; refill gives space back.
type faultFS struct {
	OSFS
	mu     sync.Mutex
	budget int64
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file, f}, nil
}

func (f *faultFS) refill(n int64) { f.mu.Lock(); f.budget = n; f.mu.Unlock() }

func (f *faultFile) Write(b []byte) (int, error) {
	return f.write(b, f.File.Write)
}

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	return f.write(b, func(b []byte) (int, error) { return f.File.WriteAt(b, off) })
}

func (f *faultFile) write(b []byte, write func([]byte) (int, error)) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if int64(len(b)) <= f.fs.budget {
		f.fs.budget -= int64(len(b))
		return write(b)
	}
	n, _ := write(b[:f.fs.budget]) // a partial write, as a full disk gives
	f.fs.budget = 0
	return n, errors.New("no space left on device")
}

func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{budget: 1 << 30}
	l := open(t, dir, Options{FS: fs, Codec: CodecNone, Sync: SyncAlways})
	for i := 0; i < 10; i++ {
		if _, err := l.AppendWait(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	fs.refill(30) // less than one batch
	_, err := l.AppendWait(context.Background(), rec(10))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no space left")) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if got := len(readAll(t, l, 0)); got != 10 {
		t.Fatalf("after the failure: %d records, want the 10 acknowledged", got)
	}
	fs.refill(1 << 30)
	off, err := l.AppendWait(context.Background(), rec(10))
	if err != nil || off != 10 {
		t.Fatalf("append after space is back: %d %v", off, err)
	}
	l.Close()
	l = open(t, dir, Options{Codec: CodecNone})
	defer l.Close()
	recs := readAll(t, l, 0)
	if len(recs) != 11 || string(recs[10].Value) != "value-10" {
		t.Fatalf("after reopen: %d records", len(recs))
	}
}

// FuzzSegmentReader feeds arbitrary bytes to recovery and reads: no panic,
// and every record returned comes from a batch whose checksum verified.
func FuzzSegmentReader(f *testing.F) {
	dir := f.TempDir()
	l, _ := Open(dir, Options{Codec: CodecS2, Logger: quiet, Sync: SyncAlways})
	for i := 0; i < 3; i++ {
		l.AppendWait(context.Background(), rec(i), rec(i+10))
	}
	l.Close()
	good, _ := os.ReadFile(filepath.Join(dir, segmentName(0)))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{batchMagic, batchVersion, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, segmentName(0)), data, 0o644)
		l, err := Open(d, Options{Logger: quiet, Codec: CodecS2})
		if err != nil {
			return // a refused file is a fine outcome; a panic is not
		}
		defer l.Close()
		off := l.LowWater()
		for off < l.HighWater() {
			recs, err := l.Read(off, 1<<20, nil)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read error not marked corrupt: %v", err)
			}
			if len(recs) == 0 {
				off++
				continue
			}
			off = recs[len(recs)-1].Offset + 1
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB/interval", size), func(b *testing.B) {
			l := open(b, b.TempDir(), Options{Codec: CodecS2})
			defer l.Close()
			v := bytes.Repeat([]byte("a"), size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var wg sync.WaitGroup
			wg.Add(b.N)
			for i := 0; i < b.N; i++ {
				l.Append([]Record{{Value: v}}, func(uint64, error) { wg.Done() })
			}
			wg.Wait()
		})
	}
}

// TestKill9 runs appenders in a child process under the always policy,
// kills it with SIGKILL mid-stream, and checks that every append the child
// reported as acknowledged is there after recovery, in order, once. The
// child's segments are 16 KiB: many rolls, and with preallocation many
// spares made, renamed and cut while it is killed.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("FLOWMESH_LOG_CRASH_CHILD"); dir != "" {
		prealloc, _ := strconv.ParseInt(os.Getenv("FLOWMESH_LOG_CRASH_PREALLOC"), 10, 64)
		crashChild(dir, prealloc)
		return
	}
	for _, prealloc := range []int64{0, 16 << 10} {
		t.Run(fmt.Sprintf("prealloc=%d", prealloc), func(t *testing.T) { kill9(t, prealloc) })
	}
}

func kill9(t *testing.T, prealloc int64) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "FLOWMESH_LOG_CRASH_CHILD="+dir, fmt.Sprint("FLOWMESH_LOG_CRASH_PREALLOC=", prealloc))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := map[uint64]string{}
	for sc.Scan() && len(acked) < 2000 {
		var off uint64
		var val string
		if _, err := fmt.Sscanf(sc.Text(), "%d %s", &off, &val); err == nil {
			acked[off] = val
		}
	}
	cmd.Process.Kill() // SIGKILL: no deferred code, no Close
	cmd.Wait()
	l := open(t, dir, Options{Codec: CodecS2})
	defer l.Close()
	recs := readAll(t, l, 0)
	byOff := map[uint64]string{}
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("offsets not contiguous at %d: %d", i, r.Offset)
		}
		byOff[r.Offset] = string(r.Value)
	}
	for off, val := range acked {
		if byOff[off] != val {
			t.Fatalf("acknowledged offset %d (%s) lost or changed after kill -9: %q", off, val, byOff[off])
		}
	}
	l.mu.Lock()
	alloc := l.active().alloc
	l.mu.Unlock()
	t.Logf("%d acknowledged before the kill, %d recovered; %d segments, the active one preallocated to %d bytes",
		len(acked), len(recs), l.Stats().Segments, alloc)
}

func crashChild(dir string, prealloc int64) {
	l, err := Open(dir, Options{Codec: CodecS2, Sync: SyncAlways, SegmentBytes: 16 << 10, PreallocateBytes: prealloc, Logger: quiet})
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	for w := 0; w < 8; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				val := fmt.Sprintf("w%d-%d", w, i)
				off, err := l.AppendWait(context.Background(), Record{Value: []byte(val)})
				if err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%d %s\n", off, val)
				mu.Unlock()
			}
		}(w)
	}
	select {} // until killed
}

// TestBatchBounds: a fast producer's appends are cut into batches of at most
// MaxBatchBytes (so every batch stays decodable), and an append too large
// for one batch is refused with nothing stored.
func TestBatchBounds(t *testing.T) {
	l := open(t, t.TempDir(), Options{Codec: CodecS2, MaxBatchBytes: 4 << 10})
	defer l.Close()
	var wg sync.WaitGroup
	for i := 0; i < 2000; i++ {
		wg.Add(1)
		l.Append([]Record{rec(i)}, func(_ uint64, err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if st := l.Stats(); st.Batches < 5 || st.Records != 2000 {
		t.Fatalf("stats %+v: want 2000 records in several batches", st)
	}
	if got := len(readAll(t, l, 0)); got != 2000 {
		t.Fatalf("read %d records", got)
	}
	_, err := l.AppendWait(context.Background(), Record{Value: make([]byte, maxAppendBytes+1)})
	if err == nil || l.HighWater() != 2000 {
		t.Fatalf("oversize append: err %v, high water %d", err, l.HighWater())
	}
}

// TestRecoveryFromCheckpoint: the active segment's index checkpoint covers
// a prefix; recovery trusts it and scans only the tail, including a torn
// tail after the checkpoint.
func TestRecoveryFromCheckpoint(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{Codec: CodecS2, Sync: SyncAlways})
	for i := 0; i < 100; i++ {
		l.AppendWait(context.Background(), rec(i))
	}
	l.Close() // writes the checkpoint covering 100 records
	idx := filepath.Join(dir, strings.TrimSuffix(segmentName(0), ".log")+".index")
	old, err := os.ReadFile(idx)
	if err != nil {
		t.Fatalf("no checkpoint after close: %v", err)
	}
	l = open(t, dir, Options{Codec: CodecS2, Sync: SyncAlways})
	for i := 100; i < 200; i++ {
		l.AppendWait(context.Background(), rec(i))
	}
	l.Close()
	os.WriteFile(idx, old, 0o644) // as if the process died before the next checkpoint
	seg := filepath.Join(dir, segmentName(0))
	data, _ := os.ReadFile(seg)
	os.WriteFile(seg, data[:len(data)-5], 0o644) // and tore the last batch
	l = open(t, dir, Options{Codec: CodecS2})
	defer l.Close()
	recs := readAll(t, l, 0)
	if len(recs) != 199 || string(recs[198].Value) != "value-198" {
		t.Fatalf("recovered %d records", len(recs))
	}
	if off, err := l.AppendWait(context.Background(), rec(199)); err != nil || off != 199 {
		t.Fatalf("append after recovery: %d %v", off, err)
	}
	if off, _ := l.SeekTime(recs[150].Timestamp); off > 150 {
		t.Fatalf("seek into the scanned tail: %d", off)
	}
}

type mapMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *mapMeta) Get(k string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	return v, ok, nil
}

func (m *mapMeta) Set(k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[k] = bytes.Clone(v)
	return nil
}

// TestLowWaterPersists: the low-water mark survives a restart through Meta,
// so space of acknowledged work is reclaimed even if the process stopped
// before retention ran.
func TestLowWaterPersists(t *testing.T) {
	dir := t.TempDir()
	meta := &mapMeta{m: map[string][]byte{}}
	l := open(t, dir, Options{Codec: CodecNone, SegmentBytes: 2 << 10, Meta: meta, SyncInterval: time.Hour})
	for i := 0; i < 100; i++ {
		l.AppendWait(context.Background(), rec(i))
	}
	if err := l.SetLowWater(60); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if v, ok, _ := meta.Get(metaLowWater); !ok || len(v) != 8 {
		t.Fatal("low-water mark not written to Meta")
	}
	l = open(t, dir, Options{Codec: CodecNone, SegmentBytes: 2 << 10, Meta: meta})
	defer l.Close()
	if r := l.Released(); r != 60 {
		t.Fatalf("released after restart = %d, want 60", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.LowWater() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // retention runs on the writer's tick; no event to wait on
	}
	if lw := l.LowWater(); lw == 0 || lw > 60 {
		t.Fatalf("after restart low water = %d, want segments below 60 deleted", lw)
	}
	if got := readAll(t, l, 60); len(got) != 40 {
		t.Fatalf("records from 60: %d", len(got))
	}
}

// TestTune changes policy, codec and retention of an open log: each applies
// to what is written after, and what was written before stays readable.
func TestTune(t *testing.T) {
	published := make(chan struct{}, 1000)
	l := open(t, t.TempDir(), Options{Codec: CodecNone, Sync: SyncNone, SegmentBytes: 4 << 10,
		OnPublish: func() { published <- struct{}{} }})
	defer l.Close()
	fill := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := l.AppendWait(context.Background(), Record{Value: bytes.Repeat([]byte("y"), 500)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(10)
	if len(published) == 0 {
		t.Fatal("OnPublish never ran")
	}
	if f := l.Stats().Fsyncs; f > 2 {
		t.Fatalf("%d fsyncs under policy none", f) // rolls fsync the sealed segment
	}
	l.Tune(Tuning{Sync: SyncAlways, Codec: CodecZstd})
	before := l.Stats().Fsyncs
	fill(10)
	if got := l.Stats().Fsyncs - before; got < 10 {
		t.Fatalf("%d fsyncs for 10 appends after switching to always", got)
	}
	if l.Stats().Policy != "always" {
		t.Fatalf("stats policy %q", l.Stats().Policy)
	}
	if recs := readAll(t, l, 0); len(recs) != 20 {
		t.Fatalf("read %d records across codecs, want 20", len(recs))
	}
	l.Tune(Tuning{Sync: SyncInterval, Codec: CodecS2, RetentionBytes: 8 << 10})
	fill(40) // rolls; the writer's tick applies the new size limit
	for deadline := time.Now().Add(5 * time.Second); l.Stats().SizeBytes > 8<<10+4<<10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("size %d after lowering retention to 8 KiB", l.Stats().SizeBytes)
		}
	}
}

// TestReader: a Reader returns what Read returns, for reads that span many
// batches (each batch of one read keeps its own buffers) and for a
// sequential scan in small steps.
func TestReader(t *testing.T) {
	for _, codec := range []Codec{CodecNone, CodecS2, CodecZstd} {
		l := open(t, t.TempDir(), Options{Codec: codec, SegmentBytes: 64 << 10})
		for b := 0; b < 20; b++ {
			recs := make([]Record, 50)
			for i := range recs {
				recs[i] = rec(b*50 + i)
			}
			if _, err := l.AppendWait(context.Background(), recs...); err != nil {
				t.Fatal(err)
			}
		}
		want, err := l.Read(0, 1<<30, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := l.NewReader()
		got, err := r.Read(0, 1<<30)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: reader got %d records (%v), Read %d", codec, len(got), err, len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i].Value, want[i].Value) || got[i].Offset != want[i].Offset {
				t.Fatalf("%s: record %d differs", codec, i)
			}
		}
		n := 0
		for off := uint64(0); off < l.HighWater(); {
			recs, err := r.Read(off, 300)
			if err != nil {
				t.Fatal(err)
			}
			for _, rc := range recs {
				if !bytes.Equal(rc.Value, want[n].Value) {
					t.Fatalf("%s: step read record %d differs", codec, n)
				}
				n++
			}
			off = recs[len(recs)-1].Offset + 1
		}
		if n != len(want) {
			t.Fatalf("%s: step reads saw %d of %d", codec, n, len(want))
		}
		l.Close()
	}
}
