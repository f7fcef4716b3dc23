package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
)

// benchPartitions measures what the interval promise costs a topic with
// many partitions written at once: each partition's log must be fsynced
// within fsync_interval of its writes (the node's logs share one syncer,
// log/syncgroup.go). FlowMesh only, fsync=none against fsync=interval on
// the same fresh node, alternating, medians of cfg.runs.
func benchPartitions(cfg config) error {
	const (
		producers = 8
		batch     = 256
		size      = 256
		window    = 4 * time.Second
	)
	fmt.Fprintf(cfg.out, "## Writes to many partitions: fsync=interval (10 ms) against fsync=none\n\n")
	fmt.Fprintf(cfg.out, "%d producers, each writing batches of %d keyed %d B events (WriteBatch) for %v to one topic.\n\n", producers, batch, size, window)
	fmt.Fprintln(cfg.out, "| partitions | fsync=none | fsync=interval | interval / none |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	for _, parts := range []int{1, 16, 256} {
		var rates [2][]float64
		for run := 0; run < max(cfg.runs, 1); run++ {
			for i, fsync := range []string{"none", "interval"} {
				t, cleanup, err := durable(cfg, true, false)
				if err != nil {
					return err
				}
				r, err := partitionWriteRate(t, parts, fsync, producers, batch, size, window)
				t.stop()
				cleanup()
				if err != nil {
					return fmt.Errorf("%d partitions, fsync=%s: %w", parts, fsync, err)
				}
				rates[i] = append(rates[i], r)
			}
		}
		none, interval := medianOf(rates[0]), medianOf(rates[1])
		fmt.Fprintf(cfg.out, "| %d | %.0f events/s | %.0f events/s | %.2f |\n", parts, none, interval, interval/none)
	}
	fmt.Fprintln(cfg.out)
	return nil
}

// partitionWriteRate writes keyed events (spread over the partitions by
// their keys) from producers connections for d and returns events/s.
func partitionWriteRate(t *target, parts int, fsync string, producers, batch, size int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, t.url)
	if err != nil {
		return 0, err
	}
	defer fm.Close()
	const topic = "parts"
	if err := fm.Stream.CreateTopic(ctx, topic, flowmesh.TopicConfig{Partitions: parts, Fsync: fsync}); err != nil {
		return 0, err
	}
	val := randomPayload(size)
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	start := time.Now()
	end := start.Add(d)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := flowmesh.Connect(ctx, t.url)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			recs := make([]flowmesh.Record, batch)
			k := p << 32
			for time.Now().Before(end) {
				for i := range recs {
					k++
					recs[i] = flowmesh.Record{Key: strconv.Itoa(k), Value: val}
				}
				if _, err := c.Stream.WriteBatch(ctx, topic, recs); err != nil {
					errs <- err
					return
				}
				n.Add(int64(len(recs)))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n.Load()) / el.Seconds(), nil
}
