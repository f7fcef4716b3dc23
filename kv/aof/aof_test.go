package aof

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func appendAll(t testing.TB, a *File, recs ...string) uint64 {
	t.Helper()
	var pos uint64
	for _, r := range recs {
		p, err := a.Append([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		pos = p
	}
	return pos
}

func replayAll(t *testing.T, dir string, from uint64) ([]string, uint64, error) {
	t.Helper()
	var got []string
	end, err := Replay(dir, from, func(rec []byte) error { got = append(got, string(rec)); return nil })
	return got, end, err
}

// TestRoundTrip: what a barrier covered is replayed, in order, across a
// rotation, from any checkpoint position; the end position continues the
// history after a restart; Remove drops only the segments before the
// checkpoint.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(dir, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pos := appendAll(t, a, "one", "two")
	if err := a.Barrier(pos); err != nil {
		t.Fatal(err)
	}
	cp, err := a.Rotate()
	if err != nil || cp != pos {
		t.Fatalf("rotate = %d, %v; want %d", cp, err, pos)
	}
	if again, _ := a.Rotate(); again != cp {
		t.Fatalf("rotating an empty segment moved to %d", again)
	}
	end := appendAll(t, a, "three", "")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	got, gotEnd, err := replayAll(t, dir, 0)
	if err != nil || fmt.Sprint(got) != "[one two three ]" || gotEnd != end {
		t.Fatalf("replay from 0 = %q, end %d, %v; want 4 records, end %d", got, gotEnd, err, end)
	}
	got, _, err = replayAll(t, dir, cp)
	if err != nil || fmt.Sprint(got) != "[three ]" {
		t.Fatalf("replay from the checkpoint = %q, %v", got, err)
	}
	if err := Remove(dir, cp, false); err != nil {
		t.Fatal(err)
	}
	segs, _ := segments(dir)
	if len(segs) != 1 || segs[0].start != cp {
		t.Fatalf("segments after Remove = %v, want [%d]", segs, cp)
	}

	// The next life starts where the records end.
	b, err := Create(dir, gotEnd, Options{SyncEach: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Barrier(appendAll(t, b, "four")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	got, _, err = replayAll(t, dir, cp)
	if err != nil || fmt.Sprint(got) != "[three  four]" {
		t.Fatalf("replay after restart = %q, %v", got, err)
	}
}

// TestUnwrittenIsLost: an append without its barrier is only in memory
// (a killed process loses it; it was never acknowledged).
func TestUnwrittenIsLost(t *testing.T) {
	dir := t.TempDir()
	a, _ := Create(dir, 0, Options{})
	a.Barrier(appendAll(t, a, "kept"))
	appendAll(t, a, "lost")
	got, _, err := replayAll(t, dir, 0) // a is never closed: the process "died"
	if err != nil || fmt.Sprint(got) != "[kept]" {
		t.Fatalf("replay = %q, %v", got, err)
	}
}

func writeSegment(t testing.TB, dir string, start uint64, recs ...string) []byte {
	t.Helper()
	a, err := Create(dir, start, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, recs...)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, segName(start)))
	return data
}

// TestTornTail: every cut inside the last record (a write the kill
// interrupted) is a torn write: the segment is cut before it and the rest
// replays; a record written after a torn one shows corruption instead,
// and so does damage in a segment that is not the last.
func TestTornTail(t *testing.T) {
	whole := writeSegment(t, t.TempDir(), 0, "alpha", "beta", "gamma")
	lastStart := len(whole) - (headerSize + len("gamma"))
	for cut := lastStart + 1; cut < len(whole); cut++ {
		dir := t.TempDir()
		path := filepath.Join(dir, segName(0))
		os.WriteFile(path, whole[:cut], 0o644)
		got, end, err := replayAll(t, dir, 0)
		if err != nil || fmt.Sprint(got) != "[alpha beta]" || end != uint64(lastStart) {
			t.Fatalf("cut at %d: %q, end %d, %v", cut, got, end, err)
		}
		if fi, _ := os.Stat(path); fi.Size() != int64(lastStart) {
			t.Fatalf("cut at %d: segment left at %d bytes, want %d", cut, fi.Size(), lastStart)
		}
	}

	// A flipped byte in the middle record, with a valid one after it.
	dir := t.TempDir()
	bad := bytes.Clone(whole)
	bad[headerSize+len("alpha")+headerSize+1] ^= 0xff
	os.WriteFile(filepath.Join(dir, segName(0)), bad, 0o644)
	if _, _, err := replayAll(t, dir, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged middle record: %v, want ErrCorrupt", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, segName(0))); !bytes.Equal(data, bad) {
		t.Fatal("a corrupt segment was changed")
	}

	// A torn record in a segment that is not the last.
	dir = t.TempDir()
	first := writeSegment(t, dir, 0, "alpha", "beta")
	os.WriteFile(filepath.Join(dir, segName(0)), first[:len(first)-1], 0o644)
	writeSegment(t, dir, uint64(len(first)), "gamma")
	if _, _, err := replayAll(t, dir, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("torn record before the last segment: %v, want ErrCorrupt", err)
	}
}

// TestFailedWriteSticks: once a write fails, every later append and
// barrier reports it; nothing is acknowledged after a failure.
func TestFailedWriteSticks(t *testing.T) {
	a, _ := Create(t.TempDir(), 0, Options{})
	a.f.Close() // the next write fails
	pos := appendAll(t, a, "x")
	if err := a.Barrier(pos); err == nil {
		t.Fatal("barrier over a closed file succeeded")
	}
	if _, err := a.Append([]byte("y")); err == nil {
		t.Fatal("append after a failed write succeeded")
	}
	if err := a.Barrier(0); err == nil {
		t.Fatal("a later barrier forgot the failure")
	}
}

// FuzzReplay: any bytes as the last segment give a result without a
// panic: either ErrCorrupt, or records that are whole and checked and a
// length to keep that ends where they end, with no valid record after it.
// (checkSegment is Replay without the files, so the fuzzer runs fast.)
func FuzzReplay(f *testing.F) {
	good := writeSegment(f, f.TempDir(), 0, "alpha", "beta")
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'x'})
	seg := segment{start: 0, v2: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			// The mutator grows inputs to many MiB, where each run takes
			// seconds under coverage instrumentation; structure is found
			// in small inputs.
			return
		}
		var n int
		keep, err := checkSegment(data, seg, true, func(rec []byte) error { n += headerSize + len(rec); return nil })
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if keep != n || keep > len(data) {
			t.Fatalf("keep %d, replayed %d bytes of %d", keep, n, len(data))
		}
		if keep < len(data) && validAfter(data, seg, keep) {
			t.Fatal("cut before a valid record")
		}
		if _, err := checkSegment(data, seg, false, func([]byte) error { return nil }); (err == nil) != (keep == len(data)) {
			t.Fatalf("as an earlier segment: %v, though %d of %d bytes are whole records", err, keep, len(data))
		}
	})
}

// TestRotateUnderAppends: appenders and barriers run while the file
// rotates again and again; every segment starts where the one before
// ends, and replay returns every record a barrier covered, in each
// appender's order.
func TestRotateUnderAppends(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(dir, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 2000
	done := make(chan struct{})
	errs := make(chan error, writers+1)
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			if _, err := a.Rotate(); err != nil {
				errs <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				pos, err := a.Append([]byte(fmt.Sprintf("%d:%d", w, i)))
				if err == nil && i%7 == 0 {
					err = a.Barrier(pos)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	<-done
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	next := make([]int, writers)
	_, err = Replay(dir, 0, func(rec []byte) error {
		var w, i int
		fmt.Sscanf(string(rec), "%d:%d", &w, &i)
		if i != next[w] {
			return fmt.Errorf("writer %d: record %d after %d", w, i, next[w]-1)
		}
		next[w]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for w, n := range next {
		if n != each {
			t.Fatalf("writer %d: %d records replayed, want %d", w, n, each)
		}
	}
}

// TestRecycle: under the always policy Remove keeps the last removed
// segment as the spare and the next rotation writes into it; its old
// records never replay, whether the process stops cleanly (the segment is
// cut to what was written), rotates (likewise) or is killed (replay cuts
// the old bytes as a torn tail, with no corruption reported).
func TestRecycle(t *testing.T) {
	for _, ending := range []string{"killed", "closed", "rotated"} {
		t.Run(ending, func(t *testing.T) {
			dir := t.TempDir()
			a, err := Create(dir, 0, Options{SyncEach: true})
			if err != nil {
				t.Fatal(err)
			}
			big := make([]string, 200)
			for i := range big {
				big[i] = fmt.Sprintf("old-%03d-%s", i, bytes.Repeat([]byte("x"), 100))
			}
			must(t, a.Barrier(appendAll(t, a, big...)))
			p1, err := a.Rotate()
			must(t, err)
			must(t, Remove(dir, p1, true))
			spare, err := os.Stat(filepath.Join(dir, spareName))
			if err != nil {
				t.Fatalf("no spare after Remove: %v", err)
			}
			must(t, a.Barrier(appendAll(t, a, "c")))
			p2, err := a.Rotate()
			must(t, err)
			seg, err := os.Stat(filepath.Join(dir, segName(p2)))
			if err != nil || !os.SameFile(spare, seg) {
				t.Fatalf("segment at %d is not the spare (%v)", p2, err)
			}
			end := appendAll(t, a, "d", "e")
			must(t, a.Barrier(end))
			switch ending {
			case "killed":
				a.CloseUnwritten()
			case "closed":
				must(t, a.Close())
			case "rotated":
				p3, err := a.Rotate()
				must(t, err)
				must(t, a.Barrier(appendAll(t, a, "f")))
				must(t, a.Close())
				if p3 != end {
					t.Fatalf("rotated at %d, want %d", p3, end)
				}
			}
			got, gotEnd, err := replayAll(t, dir, p1)
			want := "[c d e]"
			if ending == "rotated" {
				want = "[c d e f]"
			}
			if err != nil || fmt.Sprint(got) != want {
				t.Fatalf("replay = %q, %v; want %s", got, err, want)
			}
			if fi, _ := os.Stat(filepath.Join(dir, segName(p2))); fi.Size() != int64(end-p2) {
				t.Fatalf("recycled segment holds %d bytes after replay, its records %d", fi.Size(), end-p2)
			}
			if ending != "rotated" && gotEnd != end {
				t.Fatalf("replay ended at %d, want %d", gotEnd, end)
			}
		})
	}
}

// TestRemoveSpare: a spare is kept only under the always policy, only
// from a segment in the current format, and dropped by a Remove without
// it; a segment in the format before recycling (no position in its header
// checksums) still replays, before the current ones.
func TestRemoveSpare(t *testing.T) {
	dir := t.TempDir()
	// A format-1 segment at 0, as an older build wrote it.
	var old []byte
	for _, r := range []string{"x", "y"} {
		var h [headerSize]byte
		binary.LittleEndian.PutUint32(h[0:], uint32(len(r)))
		binary.LittleEndian.PutUint32(h[4:], maskCRC(crc32.Checksum([]byte(r), castagnoli)))
		binary.LittleEndian.PutUint32(h[8:], headerCRC(h[:], 0, false))
		old = append(append(old, h[:]...), r...)
	}
	must(t, os.WriteFile(filepath.Join(dir, segment{start: 0}.name()), old, 0o644))
	a, err := Create(dir, uint64(len(old)), Options{SyncEach: true})
	must(t, err)
	must(t, a.Barrier(appendAll(t, a, "z")))
	got, _, err := replayAll(t, dir, 0)
	if err != nil || fmt.Sprint(got) != "[x y z]" {
		t.Fatalf("replay across formats = %q, %v", got, err)
	}
	p, err := a.Rotate()
	must(t, err)
	must(t, Remove(dir, uint64(len(old)), true)) // only the format-1 segment: not kept
	if _, err := os.Stat(filepath.Join(dir, spareName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a format-1 segment became the spare (%v)", err)
	}
	must(t, Remove(dir, p, true))
	if _, err := os.Stat(filepath.Join(dir, spareName)); err != nil {
		t.Fatalf("no spare: %v", err)
	}
	must(t, Remove(dir, p, false))
	if _, err := os.Stat(filepath.Join(dir, spareName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spare kept without the always policy (%v)", err)
	}
	must(t, a.Close())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
