package queue

import "time"

// rateWindow is how far back a queue's rates look.
const rateWindow = 10 * time.Second

// rates keeps about one snapshot of the counters per second over the last
// rateWindow, so Info can say what happened per second lately without a
// goroutine or a timer of its own: the queue goroutine runs after every
// change and samples then, and Info samples when it is asked.
type rates struct {
	snaps   [int(rateWindow/time.Second) + 2]snapshot // a ring, oldest at next-n
	n, next int
}

type snapshot struct {
	at int64 // Unix ns
	c  Counters
}

// Rates are events per second over the last ten seconds.
type Rates struct {
	Enqueued     float64 `json:"enqueued"`
	Acked        float64 `json:"acked"`
	Nacked       float64 `json:"nacked"`
	Expired      float64 `json:"expired"`
	DeadLettered float64 `json:"dead_lettered"`
}

// sample records c at now, at most once per second.
func (r *rates) sample(now int64, c Counters) {
	if r.n > 0 && now/int64(time.Second) == r.at(r.n-1).at/int64(time.Second) {
		return
	}
	r.snaps[r.next] = snapshot{at: now, c: c}
	r.next = (r.next + 1) % len(r.snaps)
	r.n = min(r.n+1, len(r.snaps))
}

// at is the i-th snapshot, oldest first.
func (r *rates) at(i int) *snapshot {
	return &r.snaps[(r.next-r.n+i+len(r.snaps))%len(r.snaps)]
}

// perSecond is what changed between the oldest snapshot inside the window
// and c (the counters at now), per second. With no snapshot inside the
// window nothing changed in it: every change is followed by a sample.
func (r *rates) perSecond(now int64, c Counters) Rates {
	for i := 0; i < r.n; i++ {
		base := r.at(i)
		if now-base.at > int64(rateWindow) {
			continue
		}
		// A span under a second would turn a handful of events into a
		// large rate.
		secs := max(float64(now-base.at)/float64(time.Second), 1)
		per := func(now, then uint64) float64 { return float64(now-then) / secs }
		return Rates{Enqueued: per(c.Enqueued, base.c.Enqueued), Acked: per(c.Acked, base.c.Acked),
			Nacked: per(c.Nacked, base.c.Nacked), Expired: per(c.Expired, base.c.Expired),
			DeadLettered: per(c.DeadLettered, base.c.DeadLettered)}
	}
	return Rates{}
}
