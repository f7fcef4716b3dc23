package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// TestSealedSegmentsBounded: a log of many sealed segments keeps at most
// its Handles' limit of them open, while writing, reading all of it back
// and recovering. Before, every sealed segment kept its file open, so a
// log that rolled often used up the open-file limit, after which new
// segments (and the node's connections) were refused.
func TestSealedSegmentsBounded(t *testing.T) {
	const limit = 4
	const slack = 8 // the active segment, the lock, a spare, the runtime's own
	h := NewHandles(limit)
	dir := t.TempDir()
	o := Options{Codec: CodecNone, SegmentBytes: 2 << 10, Sync: SyncNone, Handles: h}
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 600+i%7) }
	base := openFDs(t)
	l := open(t, dir, o)
	const n = 600
	for i := 0; i < n; i++ {
		if _, err := l.AppendWait(context.Background(), Record{Value: value(i)}); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Stats().Segments
	if segs < 100 {
		t.Fatalf("%d segments: the test needs many", segs)
	}
	if fds := openFDs(t) - base; fds > limit+slack {
		t.Fatalf("%d descriptors open for %d segments (limit %d)", fds, segs, limit)
	}
	check := func(l *Log) {
		t.Helper()
		got := readAll(t, l, 0)
		if len(got) != n {
			t.Fatalf("read %d records, wrote %d", len(got), n)
		}
		for i, r := range got {
			if r.Offset != uint64(i) || !bytes.Equal(r.Value, value(i)) {
				t.Fatalf("record %d: offset %d, %d bytes", i, r.Offset, len(r.Value))
			}
		}
		if fds := openFDs(t) - base; fds > limit+slack {
			t.Fatalf("%d descriptors open after reading %d segments (limit %d)", fds, segs, limit)
		}
		if st := h.Stats(); st.Open > limit || st.Opens == 0 || st.Closes == 0 {
			t.Fatalf("handles after a full read: %+v", st)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := h.Stats(); st.Open != 0 {
		t.Fatalf("a closed log left %d sealed files open", st.Open)
	}
	// Recovery: the indexes are loaded without opening the segments.
	first := &segment{path: segmentPath(dir, 0)}
	if err := os.Remove(first.indexPath()); err != nil { // one segment rebuilt by a scan
		t.Fatal(err)
	}
	l = open(t, dir, o)
	defer l.Close()
	if fds := openFDs(t) - base; fds > limit+slack {
		t.Fatalf("%d descriptors open after recovering %d segments (limit %d)", fds, segs, limit)
	}
	check(l)
	if off, err := l.SeekTime(0); err != nil || off != 0 {
		t.Fatalf("seek to the start: %d %v", off, err)
	}
}

// TestHandlesUnderRetention: readers pinning sealed segments while the
// writer rolls and retention deletes them, with a limit of one open file.
// Run with -race: a file is closed only when no reader holds it, and a
// deleted segment reads as out of range, never as a closed file.
func TestHandlesUnderRetention(t *testing.T) {
	h := NewHandles(1)
	l := open(t, t.TempDir(), Options{Codec: CodecNone, SegmentBytes: 2 << 10, RetentionBytes: 64 << 10,
		Sync: SyncNone, Handles: h})
	defer l.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				lo, hi := l.LowWater(), l.HighWater()
				if hi == lo {
					continue
				}
				off := lo + uint64(i*7919)%(hi-lo)
				recs, err := l.Read(off, 4<<10, nil)
				if errors.Is(err, ErrOutOfRange) {
					continue // deleted since LowWater was read
				}
				if err != nil {
					errs <- fmt.Errorf("read at %d: %w", off, err)
					return
				}
				if len(recs) == 0 || recs[0].Offset != off || len(recs[0].Value) != 500 {
					errs <- fmt.Errorf("read at %d: %d records, first %+v", off, len(recs), recs)
					return
				}
			}
		}()
	}
	for i := 0; i < 1000; i++ {
		if _, err := l.AppendWait(context.Background(), Record{Value: bytes.Repeat([]byte("x"), 500)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if st := l.Stats(); st.LowWater == 0 {
		t.Fatalf("retention never ran: %+v", st)
	}
	if st := h.Stats(); st.Open > 1 {
		t.Fatalf("%d sealed files open with nothing reading (limit 1)", st.Open)
	}
}
