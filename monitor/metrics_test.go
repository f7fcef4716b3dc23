package monitor

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
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
