package monitor

import (
	"strings"
	"testing"
	"time"
)

func TestRecommend(t *testing.T) {
	p := ScalePolicy{MinWorkers: 1, MaxWorkers: 20, BacklogPerWorker: 100, MaxOldestAge: Duration(10 * time.Second),
		MaxProcessing: Duration(5 * time.Second)}
	cases := []struct {
		name   string
		p      ScalePolicy
		s      ScaleState
		to     int
		reason string // a substring of BasedOn
	}{
		{"idle goes to min", p, ScaleState{Workers: 4}, 1, "min_workers 1"},
		{"idle with min 0", ScalePolicy{MinWorkers: 0, MaxWorkers: 5}, ScaleState{Workers: 2}, 0, "idle"},
		{"backlog", p, ScaleState{Workers: 1, Backlog: 950}, 10, "backlog 950 at 100 per worker"},
		{"backlog capped", p, ScaleState{Workers: 1, Backlog: 1e6}, 20, "max_workers 20"},
		{"arrivals outpace workers", p, ScaleState{Workers: 2, Backlog: 50, ArrivalRate: 100, DoneRate: 40}, 5,
			"arrivals 100.0/s at 20.0/s per worker"},
		{"keeping up: scale down to what the rate needs", p, ScaleState{Workers: 8, ArrivalRate: 30, DoneRate: 80}, 3, "arrivals"},
		{"slow jobs hold instead of scaling down", p,
			ScaleState{Workers: 8, ArrivalRate: 30, DoneRate: 80, AvgProcessing: 6 * time.Second}, 8, "arrivals"},
		{"old job adds one", p, ScaleState{Workers: 3, Backlog: 20, OldestAge: 12 * time.Second}, 4, "oldest job waited 12s"},
		{"two signals agree", p, ScaleState{Workers: 1, Backlog: 200, ArrivalRate: 20, DoneRate: 10}, 2, "backlog 200"},
		{"defaults fill zero fields", ScalePolicy{}, ScaleState{Workers: 0, Backlog: 250}, 3, "backlog 250 at 100"},
		{"min above max is clamped", ScalePolicy{MinWorkers: 30, MaxWorkers: 5}, ScaleState{}, 5, "min_workers 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Recommend(tc.p, tc.s)
			if r.ScaleTo != tc.to || r.ScaleFrom != tc.s.Workers || !strings.Contains(strings.Join(r.BasedOn, "; "), tc.reason) {
				t.Fatalf("got %+v, want scale_to %d based on %q", r, tc.to, tc.reason)
			}
		})
	}
	// Two signals giving the same answer are both named.
	r := Recommend(p, ScaleState{Workers: 1, Backlog: 200, ArrivalRate: 20, DoneRate: 10})
	if len(r.BasedOn) != 2 {
		t.Fatalf("based_on %v", r.BasedOn)
	}
}
