package queue

import (
	"testing"
	"time"
)

func TestRates(t *testing.T) {
	sec := int64(time.Second)
	t0 := int64(1_000) * sec
	cases := []struct {
		name    string
		samples []snapshot // taken in order
		now     int64
		c       Counters
		want    Rates
	}{
		{name: "nothing sampled", now: t0, c: Counters{Enqueued: 5}},
		{name: "steady 100 per second",
			samples: []snapshot{{t0, Counters{}}, {t0 + 5*sec, Counters{Enqueued: 500, Acked: 250}}},
			now:     t0 + 10*sec, c: Counters{Enqueued: 1000, Acked: 500, DeadLettered: 10},
			want: Rates{Enqueued: 100, Acked: 50, DeadLettered: 1}},
		{name: "the oldest sample inside the window is the base",
			samples: []snapshot{{t0, Counters{}}, {t0 + 4*sec, Counters{Enqueued: 900}}},
			now:     t0 + 12*sec, c: Counters{Enqueued: 1700},
			want: Rates{Enqueued: 100}},
		{name: "idle past the window",
			samples: []snapshot{{t0, Counters{Nacked: 3}}},
			now:     t0 + 11*sec, c: Counters{Nacked: 3}},
		{name: "under a second counts as one",
			samples: []snapshot{{t0, Counters{}}},
			now:     t0 + sec/10, c: Counters{Expired: 7},
			want: Rates{Expired: 7}},
		{name: "one sample per second: a second one in the same second is dropped",
			samples: []snapshot{{t0, Counters{}}, {t0 + sec/2, Counters{Enqueued: 50}}},
			now:     t0 + 2*sec, c: Counters{Enqueued: 200},
			want: Rates{Enqueued: 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r rates
			for _, s := range tc.samples {
				r.sample(s.at, s.c)
			}
			if got := r.perSecond(tc.now, tc.c); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// The ring keeps the newest samples.
	var r rates
	for i := int64(0); i < 100; i++ {
		r.sample(t0+i*sec, Counters{Acked: uint64(i * 10)})
	}
	if got := r.perSecond(t0+100*sec, Counters{Acked: 1000}); got.Acked != 10 {
		t.Fatalf("after wrapping: %+v", got)
	}
}
