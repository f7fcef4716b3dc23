package monitor

import (
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/flowmesh/flowmesh/queue"
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
func TestFeedEvents(t *testing.T) {
	prev := &Snapshot{SlowConsumers: 1,
		Queues: []queue.Info{{Name: "q", Counters: queue.Counters{DeadLettered: 2}}},
		Groups: []stream.GroupInfo{{Topic: "t", Group: "g", Generation: 3}}}
	cur := &Snapshot{SlowConsumers: 3,
		Queues: []queue.Info{{Name: "q", Counters: queue.Counters{DeadLettered: 5}}, {Name: "new", Counters: queue.Counters{DeadLettered: 9}}},
		Groups: []stream.GroupInfo{{Topic: "t", Group: "g", Generation: 4, Members: make([]stream.GroupMember, 2)}}}
	evs := feedEvents(prev, cur)
	want := []string{"3 job(s) of q dead-lettered", "group g of t rebalanced: generation 4, 2 member(s)", "2 slow consumer(s) disconnected"}
	if len(evs) != len(want) {
		t.Fatalf("events %+v", evs)
	}
	for i, ev := range evs {
		if ev.Text != want[i] {
			t.Errorf("event %d: %q, want %q", i, ev.Text, want[i])
		}
	}
	if evs := feedEvents(cur, cur); len(evs) != 0 {
		t.Fatalf("no change, events %+v", evs)
	}
}
