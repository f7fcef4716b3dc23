package monitor

import (
	"fmt"
	"math"
	"time"

	"github.com/flowmesh/flowmesh/internal/conf"
)

// Autoscaling: how many workers a queue (or consumers a consumer group)
// should have, from the state the node sees. Recommend is pure; the
// monitoring port serves its answer for every queue and group, and a
// platform (KEDA's metrics-api scaler, a script) acts on it.

// ScalePolicy bounds and steers the recommendation for one queue or group.
// Zero fields take DefaultScalePolicy's.
type ScalePolicy struct {
	Queue string `json:"queue,omitempty"` // a queue's name, or
	Topic string `json:"topic,omitempty"` // a consumer group: topic and group
	Group string `json:"group,omitempty"`

	MinWorkers int `json:"min_workers"`
	MaxWorkers int `json:"max_workers"`
	// BacklogPerWorker is the backlog one worker should have at most:
	// ready jobs, or the group's lag in events.
	BacklogPerWorker int64 `json:"backlog_per_worker"`
	// MaxOldestAge: when the oldest ready job has waited longer, add a
	// worker even if the backlog looks small (slow jobs).
	MaxOldestAge Duration `json:"max_oldest_age"`
	// MaxProcessing: when jobs take longer than this on average, the
	// throughput signal is not trusted to scale down.
	MaxProcessing Duration `json:"max_processing"`
}

// Duration is a time.Duration written as "30s" (or "7d") in JSON.
type Duration = conf.Duration

// DefaultScalePolicy applies where no policy is configured.
var DefaultScalePolicy = ScalePolicy{MinWorkers: 1, MaxWorkers: 10, BacklogPerWorker: 100,
	MaxOldestAge: Duration(30 * time.Second), MaxProcessing: Duration(time.Minute)}

func (p ScalePolicy) withDefaults() ScalePolicy {
	d := DefaultScalePolicy
	if p.MaxWorkers <= 0 {
		p.MaxWorkers = max(d.MaxWorkers, p.MinWorkers)
	}
	if p.MinWorkers < 0 {
		p.MinWorkers = 0
	}
	p.MinWorkers = min(p.MinWorkers, p.MaxWorkers)
	if p.BacklogPerWorker <= 0 {
		p.BacklogPerWorker = d.BacklogPerWorker
	}
	if p.MaxOldestAge <= 0 {
		p.MaxOldestAge = d.MaxOldestAge
	}
	if p.MaxProcessing <= 0 {
		p.MaxProcessing = d.MaxProcessing
	}
	return p
}

// ScaleState is what the node sees of one queue or group.
type ScaleState struct {
	Workers       int           // live workers (queue) or members (group)
	Backlog       int64         // ready jobs, or lag in events
	OldestAge     time.Duration // the oldest ready job's wait (queues)
	AvgProcessing time.Duration // mean reserve-to-ack time (queues)
	ArrivalRate   float64       // enqueues (events) per second, recent
	DoneRate      float64       // acks (consumed events) per second, recent
}

// Recommendation is Recommend's answer, with its reasons.
type Recommendation struct {
	Target    string   `json:"target"` // "queue:<name>" or "group:<topic>/<group>"
	ScaleFrom int      `json:"scale_from"`
	ScaleTo   int      `json:"scale_to"`
	BasedOn   []string `json:"based_on"`
}

// Recommend computes how many workers the target should have: enough to
// bring the backlog under BacklogPerWorker each, enough to keep up with the
// arrival rate at the current per-worker throughput, one more than now if
// the oldest job waits past MaxOldestAge, within [MinWorkers, MaxWorkers].
// Each signal that raised the answer is named in BasedOn.
func Recommend(p ScalePolicy, s ScaleState) Recommendation {
	p = p.withDefaults()
	r := Recommendation{ScaleFrom: s.Workers}
	want := 0
	raise := func(n int, why string) {
		if n > want {
			want = n
			r.BasedOn = append(r.BasedOn[:0:0], why)
		} else if n == want && n > 0 {
			r.BasedOn = append(r.BasedOn, why)
		}
	}
	if s.Backlog > 0 {
		n := int(min((s.Backlog+p.BacklogPerWorker-1)/p.BacklogPerWorker, math.MaxInt32))
		raise(n, fmt.Sprintf("backlog %d at %d per worker", s.Backlog, p.BacklogPerWorker))
	}
	if s.Workers > 0 && s.DoneRate > 0 && s.ArrivalRate > 0 {
		perWorker := s.DoneRate / float64(s.Workers)
		n := int(math.Ceil(s.ArrivalRate / perWorker))
		if s.AvgProcessing > time.Duration(p.MaxProcessing) && n < s.Workers {
			// Slow jobs make the completion rate a poor guide: hold.
			n = s.Workers
		}
		raise(n, fmt.Sprintf("arrivals %.1f/s at %.1f/s per worker", s.ArrivalRate, perWorker))
	}
	if s.OldestAge > time.Duration(p.MaxOldestAge) {
		raise(s.Workers+1, fmt.Sprintf("oldest job waited %s (over %s)", s.OldestAge.Round(time.Millisecond), time.Duration(p.MaxOldestAge)))
	}
	if want == 0 {
		r.BasedOn = []string{"idle: no backlog and no arrivals"}
	}
	switch {
	case want < p.MinWorkers:
		want = p.MinWorkers
		r.BasedOn = append(r.BasedOn, fmt.Sprintf("min_workers %d", p.MinWorkers))
	case want > p.MaxWorkers:
		want = p.MaxWorkers
		r.BasedOn = append(r.BasedOn, fmt.Sprintf("max_workers %d", p.MaxWorkers))
	}
	r.ScaleTo = want
	return r
}
