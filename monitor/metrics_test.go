package monitor

import (
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/flowmesh/flowmesh/stream"
)

// TestHistogram: per-bucket counts become Prometheus' cumulative buckets,
// the unbounded last count only in the total.
func TestHistogram(t *testing.T) {
	m := histogram(desc("h", "test", "q"), []float64{0.1, 1, 10}, []uint64{2, 0, 3, 4}, 42, "x")
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	h := out.GetHistogram()
	want := []uint64{2, 2, 5}
	for i, b := range h.GetBucket() {
		if b.GetCumulativeCount() != want[i] {
			t.Fatalf("bucket %v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want[i])
		}
	}
	if h.GetSampleCount() != 9 || h.GetSampleSum() != 42 || len(h.GetBucket()) != 3 {
		t.Fatalf("count %d sum %v buckets %d", h.GetSampleCount(), h.GetSampleSum(), len(h.GetBucket()))
	}
}

// TestOpenAPIDocumentsEveryRoute: each route this package serves is a path
// of docs/openapi.yaml, so the document cannot fall behind the code.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?:"GET |get\(")(/[^" ]+)"`)
	n := 0
	for _, f := range []string{"monitor.go", "api.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(src, -1) {
			path := string(m[1])
			if strings.HasPrefix(path, "/debug/pprof") {
				continue // Go's own
			}
			n++
			if !strings.Contains(string(doc), "\n  "+path+":\n") {
				t.Errorf("route %s is not in docs/openapi.yaml", path)
			}
		}
	}
	if n < 15 {
		t.Fatalf("found only %d routes in the sources", n)
	}
}

// TestFeedEvents: events come from differences between two snapshots.
// Dead letters are told job by job, then as counts per queue past
// maxJobEvents, then as a count of those the window moved past.
func TestFeedEvents(t *testing.T) {
	dl := func(seq uint64, q string) DeadLetter {
		return DeadLetter{Seq: seq, Queue: q, ID: seq * 10, Attempts: 3, Error: "boom", TraceID: "abc"}
	}
	prev := &Snapshot{SlowConsumers: 1, DeadLetters: []DeadLetter{dl(1, "q"), dl(2, "q")},
		Groups: []stream.GroupInfo{{Topic: "t", Group: "g", Generation: 3}}}
	cur := &Snapshot{SlowConsumers: 3, DeadLetters: []DeadLetter{dl(2, "q"), dl(3, "q"), dl(4, "new")},
		Groups: []stream.GroupInfo{{Topic: "t", Group: "g", Generation: 4, Members: make([]stream.GroupMember, 2)}}}
	evs := feedEvents(prev, cur)
	want := []string{"job 30 of q dead-lettered after 3 attempt(s): boom", "job 40 of new dead-lettered after 3 attempt(s): boom",
		"group g of t rebalanced: generation 4, 2 member(s)", "2 slow consumer(s) disconnected"}
	if len(evs) != len(want) {
		t.Fatalf("events %+v", evs)
	}
	for i, ev := range evs {
		if ev.Text != want[i] {
			t.Errorf("event %d: %q, want %q", i, ev.Text, want[i])
		}
	}
	if ev := evs[0]; ev.Kind != "dead_letter" || ev.Queue != "q" || ev.JobID == nil || *ev.JobID != 30 ||
		ev.Attempts != 3 || ev.Error != "boom" || ev.TraceID != "abc" || ev.Count != 1 {
		t.Errorf("dead letter event %+v", ev)
	}
	if evs := feedEvents(cur, cur); len(evs) != 0 {
		t.Fatalf("no change, events %+v", evs)
	}

	// A burst: the first maxJobEvents one by one, the rest counted per
	// queue; jobs the window moved past are counted too.
	var burst []DeadLetter
	for s := uint64(10); s < 10+maxJobEvents+5; s++ {
		q := "a"
		if s%2 == 0 {
			q = "b"
		}
		burst = append(burst, dl(s, q))
	}
	evs = feedEvents(cur, &Snapshot{DeadLetters: burst})
	if len(evs) != maxJobEvents+3 {
		t.Fatalf("burst: %d events %+v", len(evs), evs)
	}
	tail := []string{evs[maxJobEvents].Text, evs[maxJobEvents+1].Text, evs[maxJobEvents+2].Text}
	wantTail := []string{"3 more job(s) of b dead-lettered", "2 more job(s) of a dead-lettered",
		"5 more job(s) dead-lettered (too many to list)"}
	for i := range tail {
		if tail[i] != wantTail[i] {
			t.Errorf("burst tail %d: %q, want %q", i, tail[i], wantTail[i])
		}
	}
}
