package log

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testAlloc = 256 << 10

// bigRec is a 1 KiB record, so that segments fill quickly. No zeros: a
// torn write's missing half must differ from the zeros it leaves.
func bigRec(i int) Record {
	return Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: append([]byte(fmt.Sprintf("value-%d ", i)), bytes.Repeat([]byte{'a' + byte(i%26)}, 1000)...)}
}

// appendUntil appends records (fsynced: SyncAlways) from *n until cond
// holds, failing after limit more.
func appendUntil(t *testing.T, l *Log, n *int, limit int, what string, cond func() bool) {
	t.Helper()
	for stop := *n + limit; !cond(); *n++ {
		if *n == stop {
			t.Fatalf("%s: not after %d appends", what, limit)
		}
		if _, err := l.AppendWait(context.Background(), bigRec(*n)); err != nil {
			t.Fatal(err)
		}
	}
}

// segFiles is each segment's file size and logical size, and whether it
// is preallocated.
func segFiles(t *testing.T, l *Log) (files, sizes []int64, allocs []int64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		st, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		files, sizes, allocs = append(files, st.Size()), append(sizes, s.size), append(allocs, s.alloc)
	}
	return
}

func activeAlloc(l *Log) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active().alloc
}

// Under SyncAlways the log moves into preallocated segment files: sealed
// ones are cut to their last batch, the active one keeps its zeros across
// a restart (not read as a torn write), and every record reads back.
func TestPreallocatedSegments(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer // read after Close: the writer and the filler are done by then
	var clockMu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	o := Options{Sync: SyncAlways, Codec: CodecNone, PreallocateBytes: testAlloc, SegmentAge: time.Hour, Now: clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	l := open(t, dir, o)
	n := 0
	appendUntil(t, l, &n, 5000, "a preallocated active segment", func() bool { return activeAlloc(l) > 0 })
	first := len(l.segs)
	appendUntil(t, l, &n, 5000, "a roll out of a preallocated segment", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.segs) > first+1
	})
	files, sizes, allocs := segFiles(t, l)
	for i := range files[:len(files)-1] {
		if files[i] != sizes[i] || allocs[i] != 0 {
			t.Fatalf("sealed segment %d: file %d bytes, log %d, alloc %d", i, files[i], sizes[i], allocs[i])
		}
	}
	// One more to be sure the active file is preallocated and partly used.
	appendUntil(t, l, &n, 5000, "a partly used preallocated segment", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		s := l.active()
		return s.alloc > 0 && s.size > 0
	})
	files, sizes, _ = segFiles(t, l)
	last := len(files) - 1
	if files[last] != testAlloc || sizes[last] >= testAlloc {
		t.Fatalf("active segment: file %d bytes, log %d; want a %d-byte file", files[last], sizes[last], testAlloc)
	}
	l.Close()

	l = open(t, dir, o)
	files2, sizes2, allocs2 := segFiles(t, l)
	if files2[last] != testAlloc || sizes2[last] != sizes[last] || allocs2[last] != testAlloc {
		t.Fatalf("after reopen: active file %d bytes, log %d (was %d), alloc %d", files2[last], sizes2[last], sizes[last], allocs2[last])
	}
	if _, err := l.AppendWait(context.Background(), bigRec(n)); err != nil {
		t.Fatal(err)
	}
	n++
	// A roll by age seals the partly used preallocated segment: it too is
	// cut to its last batch.
	clockMu.Lock()
	now = now.Add(2 * time.Hour)
	clockMu.Unlock()
	if _, err := l.AppendWait(context.Background(), bigRec(n)); err != nil {
		t.Fatal(err)
	}
	n++
	files3, sizes3, allocs3 := segFiles(t, l)
	if len(files3) != len(files2)+1 || files3[last] != sizes3[last] || allocs3[last] != 0 {
		t.Fatalf("after a roll by age: %d segments (was %d), the sealed one's file %d bytes, log %d, alloc %d",
			len(files3), len(files2), files3[last], sizes3[last], allocs3[last])
	}
	recs := readAll(t, l, 0)
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := bigRec(i); r.Offset != uint64(i) || !bytes.Equal(r.Value, want.Value) {
			t.Fatalf("record %d: offset %d, value %.20q", i, r.Offset, r.Value)
		}
	}
	l.Close()
	if strings.Contains(logs.String(), "torn") {
		t.Fatalf("zeros read as a torn write:\n%s", logs.String())
	}
}

// A torn write into a preallocated segment (a batch cut short, zeros
// after it) is cut at recovery like any torn write; a half-made spare is
// removed, a whole one is used.
func TestPreallocatedTornWrite(t *testing.T) {
	dir := t.TempDir()
	o := Options{Sync: SyncAlways, Codec: CodecNone, PreallocateBytes: testAlloc}
	l := open(t, dir, o)
	n := 0
	appendUntil(t, l, &n, 5000, "a partly used preallocated segment", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		s := l.active()
		return s.alloc > 0 && s.size > 0
	})
	l.mu.Lock()
	path, end := l.active().path, l.active().size
	l.mu.Unlock()
	l.Close()
	// The first half of a batch: its header and some bytes, then zeros.
	var b builder
	r := bigRec(n)
	b.add(&r)
	torn := b.seal(nil, CodecNone, uint64(n))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(torn[:len(torn)/2], end); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, spareTmpName), []byte("half a spare"), 0o644); err != nil {
		t.Fatal(err)
	}

	l = open(t, dir, o)
	defer l.Close()
	if got := len(readAll(t, l, 0)); got != n {
		t.Fatalf("%d records after the torn write, want %d", got, n)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != end {
		t.Fatalf("segment after recovery: %v %v, want cut to %d", st.Size(), err, end)
	}
	if _, err := os.Stat(filepath.Join(dir, spareTmpName)); !os.IsNotExist(err) {
		t.Fatalf("half-made spare still there: %v", err)
	}
	off, err := l.AppendWait(context.Background(), bigRec(n))
	if err != nil || off != uint64(n) {
		t.Fatalf("append after recovery: %d %v", off, err)
	}
}
