package stream

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/seeds"
)

// TestGroupChurn: members with auto-commit join, leave, acknowledge,
// commit explicitly and heartbeat at random while events are written and a
// partition is added; then one member consumes to the end. What the
// group promises, checked at the end: every event was acknowledged by
// some member at least once (at-least-once: no offset skipped by a
// rebalance, a stale acknowledgement or a commit racing either), and once
// the last member has left, the stored offsets are the high-water marks
// (the final member's acknowledgements were committed on its leave).
// FLOWMESH_STREAM_CHURN_SEEDS sets how many seeds run (default 30).
func TestGroupChurn(t *testing.T) {
	seeds.Run(t, "FLOWMESH_STREAM_CHURN_SEEDS", 0, 30, groupChurn)
}

// churnMember is one member and what its application has seen.
type churnMember struct {
	seen     func(Event) // every delivery, for the report of a failure
	m        *Member
	mu       sync.Mutex
	got      []Event        // delivered, not yet acknowledged, in delivery order
	frontier map[int]uint64 // per partition: the offset after the last it acknowledged
	wake     chan struct{}
}

func (c *churnMember) Deliver(evs []Event) {
	c.mu.Lock()
	for _, ev := range evs {
		c.got = append(c.got, Event{Partition: ev.Partition, Offset: ev.Offset})
		c.seen(ev)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
func (c *churnMember) Assigned(uint64, []int) {}
func (c *churnMember) Closed(error)           {}

func groupChurn(t *testing.T, seed uint64) {
	n := openNode(t, t.TempDir())
	defer n.close(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	tp, err := n.e.Create("churn", defaults(3))
	if err != nil {
		t.Fatal(err)
	}
	var ackedMu sync.Mutex
	acked := map[[2]uint64]bool{}      // {partition, offset} acknowledged by someone
	delivered := map[[2]uint64]int{}   // {partition, offset}: deliveries
	progress := make(chan struct{}, 1) // an acknowledgement was made

	// ack runs a member's application: it acknowledges what was delivered,
	// in delivery order, a few at a time, until stop or the member is gone.
	ack := func(c *churnMember, stop <-chan struct{}, done func()) {
		defer done()
		for {
			select {
			case <-c.wake:
			case <-stop:
				return
			}
			for {
				c.mu.Lock()
				k := min(len(c.got), 1+rand.IntN(8))
				batch := append([]Event(nil), c.got[:k]...)
				c.mu.Unlock()
				if k == 0 {
					break
				}
				if err := c.m.Ack(k); err != nil {
					return // left or expelled; what it did not ack is delivered again
				}
				c.mu.Lock()
				c.got = c.got[k:]
				for _, ev := range batch {
					c.frontier[ev.Partition] = max(c.frontier[ev.Partition], ev.Offset+1)
				}
				c.mu.Unlock()
				ackedMu.Lock()
				for _, ev := range batch {
					acked[[2]uint64{uint64(ev.Partition), ev.Offset}] = true
				}
				ackedMu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}
	}
	join := func(o JoinOptions) (*churnMember, func()) {
		c := &churnMember{wake: make(chan struct{}, 1), frontier: map[int]uint64{}, seen: func(ev Event) {
			ackedMu.Lock()
			delivered[[2]uint64{uint64(ev.Partition), ev.Offset}]++
			ackedMu.Unlock()
		}}
		m, err := n.e.Join("churn", "g", o, c)
		if err != nil {
			t.Fatal(err)
		}
		c.m = m
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go ack(c, stop, wg.Done)
		select {
		case c.wake <- struct{}{}: // deliveries may have come before c.m was set
		default:
		}
		return c, func() { close(stop); wg.Wait() }
	}

	var live []*churnMember
	var stops []func()
	for step := range 300 {
		switch r := rng.IntN(100); {
		case r < 40:
			for range 1 + rng.IntN(20) {
				p := rng.IntN(tp.Partitions())
				write(t, tp, Write{Partition: p, Value: []byte("e")})
			}
		case r < 55 && len(live) < 5:
			c, stop := join(JoinOptions{Window: 1 + rng.IntN(16), CommitEvery: 1 + rng.IntN(10), CommitInterval: time.Duration(1+rng.IntN(20)) * time.Millisecond})
			live, stops = append(live, c), append(stops, stop)
		case r < 70 && len(live) > 0:
			i := rng.IntN(len(live))
			live[i].m.Leave()
			stops[i]()
			live, stops = append(live[:i], live[i+1:]...), append(stops[:i], stops[i+1:]...)
		case r < 80 && len(live) > 0:
			// An explicit commit of what this member has acknowledged on a
			// partition it owns: a commit racing rebalances and auto-commits.
			c := live[rng.IntN(len(live))]
			gi, _ := n.e.GroupInfo("churn", "g")
			for _, gp := range gi.Partitions {
				if gp.Owner != c.m.ID() || gp.Committed < 0 {
					continue
				}
				if err := c.m.Commit(gp.Partition, uint64(gp.Committed)); err != nil && !isGone(err) {
					t.Fatalf("step %d: commit of partition %d at its committed offset: %v", step, gp.Partition, err)
				}
				break
			}
		case r == 80 && tp.Partitions() < 5:
			if _, err := n.e.Alter("churn", func(c *Config) error { c.Partitions++; return nil }); err != nil {
				t.Fatal(err)
			}
		default:
			for _, c := range live {
				c.m.Heartbeat()
			}
		}
	}
	for i, c := range live {
		c.m.Leave()
		stops[i]()
	}

	// One member consumes to the end: from the stored offsets (no member
	// is left to hold others) to the high-water marks.
	highs := make([]uint64, tp.Partitions())
	starts := make([]int64, tp.Partitions())
	before, err := n.e.GroupInfo("churn", "g")
	for p := range highs {
		_, highs[p], _ = tp.Bounds(p)
		starts[p] = -1
		if err == nil {
			starts[p] = before.Partitions[p].Committed
		}
	}
	final, stop := join(JoinOptions{Window: 64, CommitEvery: 1})
	deadline := time.After(20 * time.Second)
	for {
		ackedMu.Lock()
		missing, missingOff := -1, uint64(0)
		for p, h := range highs {
			for off := uint64(0); off < h; off++ {
				if !acked[[2]uint64{uint64(p), off}] {
					missing, missingOff = p, off
					break
				}
			}
		}
		ackedMu.Unlock()
		final.mu.Lock()
		behind := false // the final member has not acknowledged up to a high-water mark
		for p, h := range highs {
			behind = behind || starts[p] < int64(h) && final.frontier[p] < h
		}
		final.mu.Unlock()
		if missing < 0 && !behind {
			break
		}
		select {
		case <-progress:
		case <-deadline:
			gi, _ := n.e.GroupInfo("churn", "g")
			if missing < 0 {
				final.mu.Lock()
				defer final.mu.Unlock()
				t.Fatalf("seed %d: after 20 s the final member has acknowledged up to %v of %v (started at %v); group %+v",
					seed, final.frontier, highs, starts, gi.Partitions)
			}
			ackedMu.Lock()
			times := delivered[[2]uint64{uint64(missing), missingOff}]
			ackedMu.Unlock()
			evs, next, rerr := tp.readInto(&partReader{}, missing, missingOff-min(missingOff, 2), 6, 1<<20)
			var offs []uint64
			for _, ev := range evs {
				offs = append(offs, ev.Offset)
			}
			t.Fatalf("seed %d: partition %d offset %d was never acknowledged (20 s of the final member); delivered %d times; the log around it %v (next %d, %v); group %+v",
				seed, missing, missingOff, times, offs, next, rerr, gi.Partitions)
		}
	}
	final.m.Leave()
	stop()
	t.Logf("seed %d: %d partitions, high-water marks %v, %d events acknowledged", seed, len(highs), highs, len(acked))
	gi, err := n.e.GroupInfo("churn", "g") // no live member: read from Pebble
	if err != nil {
		t.Fatal(err)
	}
	for _, gp := range gi.Partitions {
		if want := int64(highs[gp.Partition]); gp.Committed != want && (want != 0 || gp.Committed != -1) {
			t.Errorf("seed %d: partition %d stored offset %d after the final member left, want its high-water mark %d",
				seed, gp.Partition, gp.Committed, highs[gp.Partition])
		}
	}
}

func isGone(err error) bool {
	return errors.Is(err, ErrMemberGone) || errors.Is(err, ErrNotOwner)
}
