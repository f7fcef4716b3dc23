package stream

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/flowmesh/flowmesh/kv/store"
)

// countSink counts deliveries and hands the counts to an acker goroutine
// (Ack takes the group's lock; Deliver runs on the group's goroutine).
type countSink struct {
	got  atomic.Int64
	acks chan int
}

func (s *countSink) Deliver(evs []Event)    { s.got.Add(int64(len(evs))); s.acks <- len(evs) }
func (s *countSink) Assigned(uint64, []int) {}
func (s *countSink) Closed(error)           {}

// BenchmarkGroupDelivery: four members of a group consume 100k events
// (40 B, keyed) spread over 1, 16 or 256 partitions, acking as they go
// (events delivered again after a rebalance, as members join, count too).
//
//	go test -run '^$' -bench GroupDelivery ./stream
func BenchmarkGroupDelivery(b *testing.B) {
	const events, members = 100_000, 4
	for _, parts := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			dir := b.TempDir()
			st, err := store.Open(dir+"/meta", store.Options{Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			e, err := Open(Options{Dir: dir + "/streams", Store: st, Defaults: defaults(parts), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			tp, err := e.Create("t", defaults(parts))
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, events)
			for i := 0; i < events; i++ {
				w := Write{Partition: -1, Key: []byte(fmt.Sprintf("key-%d", i%5000)), Value: []byte("0123456789012345678901234567890123456789")}
				tp.Write(&w, func(_ Position, err error) { done <- err })
			}
			for i := 0; i < events; i++ {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var total atomic.Int64
				finished, stop := make(chan struct{}), make(chan struct{})
				var ms []*Member
				for m := 0; m < members; m++ {
					s := &countSink{acks: make(chan int, 1<<16)}
					mem, err := e.Join("t", fmt.Sprintf("g%d", i), JoinOptions{Name: fmt.Sprint("m", m), Window: 1024}, s)
					if err != nil {
						b.Fatal(err)
					}
					ms = append(ms, mem)
					go func() {
						for {
							select {
							case n := <-s.acks:
								_ = mem.Ack(n) // ErrMemberGone once it left
								if t := total.Add(int64(n)); t >= events && t-int64(n) < events {
									close(finished) // the one add that crossed it
								}
							case <-stop:
								return
							}
						}
					}()
				}
				<-finished
				for _, m := range ms {
					m.Leave()
				}
				close(stop)
			}
			b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
