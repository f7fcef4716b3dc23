package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams against NATS JetStream (file storage), both on disk in a temp
// dir on the same file system, each on a fresh process per run.
//
// FlowMesh's side uses the FlowMesh Go SDK on a one-partition topic (a
// JetStream stream with one subject is one ordered log too); JetStream's
// uses nats.go's jetstream package. Both producers keep the same number of
// writes in flight.

const streamTopic = "bench"

// durable starts a broker with its data on disk: FlowMesh with the given
// default fsync policy, nats-server with JetStream and, if always, its
// sync_interval set to always (nats-server 2.10+; Debian's 2.9 has no such
// setting).
// profiles counts the CPU profiles written (-cpuprofile).
var profiles int

func durable(cfg config, flowmesh bool, always bool) (*target, func(), error) {
	dir, err := os.MkdirTemp(cfg.dataDir, "stream-bench-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	port := freePort()
	var t *target
	if flowmesh {
		fsync := "interval"
		if always {
			fsync = "always"
		}
		args := []string{"server", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--http-addr", "off", "--data-dir", dir, "--fsync", fsync, "--log-level", "warn"}
		if cfg.cpuProfile != "" {
			profiles++
			args = append(args, "--cpuprofile", fmt.Sprintf("%s%d.pprof", cfg.cpuProfile, profiles))
		}
		cmd := exec.Command(cfg.flowmeshBin, args...)
		t, err = start("flowmesh", cmd, port)
	} else {
		conf := fmt.Sprintf("port: %d\nhost: 127.0.0.1\njetstream {\n  store_dir: %q\n", port, dir)
		if always {
			conf += "  sync_interval: always\n"
		}
		conf += "}\n"
		path := dir + "/nats.conf"
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			cleanup()
			return nil, nil, err
		}
		t, err = start("jetstream", exec.Command(cfg.jsBin, "-c", path), port)
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return t, cleanup, nil
}

// bothDurable runs fn against FlowMesh and JetStream, runs times, and
// returns the medians.
func bothDurable(cfg config, always bool, fn func(t *target) (float64, error)) (fm, js float64, err error) {
	var fms, jss []float64
	for i := 0; i < max(cfg.runs, 1); i++ {
		for _, isFM := range []bool{true, false} {
			t, cleanup, err := durable(cfg, isFM, always)
			if err != nil {
				return 0, 0, err
			}
			r, err := fn(t)
			t.stop()
			cleanup()
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", t.name, err)
			}
			if isFM {
				fms = append(fms, r)
			} else {
				jss = append(jss, r)
			}
		}
	}
	slices.Sort(fms)
	slices.Sort(jss)
	return fms[len(fms)/2], jss[len(jss)/2], nil
}

func benchStreams(cfg config) error {
	fmt.Fprintf(cfg.out, "## Streams vs NATS JetStream (file storage; %s)\n\n", cfg.jsBin)
	fmt.Fprintln(cfg.out, "| workload | FlowMesh | JetStream | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	n := cfg.streamMsgs
	fm, js, err := bothDurable(cfg, false, func(t *target) (float64, error) { return streamWriteRate(t, n, 1024, 1000) })
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| write %d × 1 KiB, batching producer (1000 in flight), FlowMesh fsync=interval (10 ms), JetStream default (2 min) | %.0f events/s | %.0f events/s | %s |\n",
		n, fm, js, ratio(fm, js))
	fm, js, err = bothDurable(cfg, true, func(t *target) (float64, error) { return streamSyncRate(t, 64, 1024, false, 5*time.Second) })
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| acknowledged = fsynced (FlowMesh fsync=always, JetStream sync_interval: always), 64 producers waiting for each ack, a connection each, 1 KiB | %.0f events/s | %.0f events/s | %s |\n",
		fm, js, ratio(fm, js))
	fm, js, err = bothDurable(cfg, true, func(t *target) (float64, error) { return streamSyncRate(t, 64, 1024, true, 5*time.Second) })
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| acknowledged = fsynced, 64 producers waiting for each ack, sharing one connection (one client per process), 1 KiB | %.0f events/s | %.0f events/s | %s |\n",
		fm, js, ratio(fm, js))
	fm, js, err = bothDurable(cfg, true, func(t *target) (float64, error) { return streamWriteRate(t, n, 1024, 1000) })
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| acknowledged = fsynced, one producer pipelining (1000 in flight), %d × 1 KiB | %.0f events/s | %.0f events/s | %s |\n",
		n, fm, js, ratio(fm, js))
	fm, js, err = bothDurable(cfg, false, func(t *target) (float64, error) { return streamCatchUp(t, cfg.catchUp, 256) })
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| catch-up read of %d retained 256 B events by one group member / pull consumer | %.0f events/s | %.0f events/s | %s |\n",
		cfg.catchUp, fm, js, ratio(fm, js))
	var lats [2][]time.Duration
	for i, isFM := range []bool{true, false} {
		t, cleanup, err := durable(cfg, isFM, false)
		if err != nil {
			return err
		}
		lats[i], err = streamLatency(t, cfg.streamRate, 10*time.Second)
		t.stop()
		cleanup()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	for _, p := range []float64{50, 99} {
		a, b := percentile(lats[0], p), percentile(lats[1], p)
		fmt.Fprintf(cfg.out, "| produce-to-consume latency p%g at %d events/s, 256 B | %v | %v | %s |\n", p, cfg.streamRate, a, b, ratio(float64(a), float64(b)))
	}
	fmt.Fprintln(cfg.out)
	return nil
}

// streamWriteRate writes n events with up to inflight outstanding.
func streamWriteRate(t *target, n, size, inflight int) (float64, error) {
	ctx := context.Background()
	payload := randomPayload(size)
	if t.name == "flowmesh" {
		fm, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return 0, err
		}
		defer fm.Close()
		if err := fm.Stream.CreateTopic(ctx, streamTopic, flowmesh.TopicConfig{Partitions: 1}); err != nil {
			return 0, err
		}
		// Several WriteBatch calls at once keep the pipe full while each
		// waits for its replies.
		const batch = 500
		recs := make([]flowmesh.Record, batch)
		for i := range recs {
			recs[i] = flowmesh.Record{Value: payload}
		}
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < inflight/batch; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(batch) <= int64(n) {
					if _, err := fm.Stream.WriteBatch(ctx, streamTopic, recs); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return 0, err
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	nc, err := nats.Connect(t.url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inflight))
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamTopic, Subjects: []string{streamTopic}, Storage: jetstream.FileStorage}); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		// A full window waits for acknowledgements (the default gives up
		// after 200 ms, which fsync-per-message JetStream exceeds).
		if _, err := js.PublishAsync(streamTopic, payload, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("publishes not acknowledged")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// streamSyncRate runs producers that each wait for every acknowledgement,
// each on a connection of its own or, shared, all on one (as the
// goroutines of one service share its client).
// syncWarmUp runs the fsync-waiting producers before their measurement.
const syncWarmUp = 2 * time.Second

func streamSyncRate(t *target, producers, size int, shared bool, d time.Duration) (float64, error) {
	ctx := context.Background()
	payload := randomPayload(size)
	var count atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	var write func() (func() error, func(), error)
	if t.name == "flowmesh" {
		fm, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return 0, err
		}
		err = fm.Stream.CreateTopic(ctx, streamTopic, flowmesh.TopicConfig{Partitions: 1})
		fm.Close()
		if err != nil {
			return 0, err
		}
		write = func() (func() error, func(), error) {
			c, err := flowmesh.Connect(ctx, t.url)
			if err != nil {
				return nil, nil, err
			}
			return func() error { _, err := c.Stream.Write(ctx, streamTopic, payload); return err }, func() { c.Close() }, nil
		}
	} else {
		nc, err := nats.Connect(t.url)
		if err != nil {
			return 0, err
		}
		js, _ := jetstream.New(nc)
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: streamTopic, Subjects: []string{streamTopic}, Storage: jetstream.FileStorage})
		nc.Close()
		if err != nil {
			return 0, err
		}
		write = func() (func() error, func(), error) {
			nc, err := nats.Connect(t.url)
			if err != nil {
				return nil, nil, err
			}
			js, _ := jetstream.New(nc)
			return func() error { _, err := js.Publish(ctx, streamTopic, payload); return err }, nc.Close, nil
		}
	}
	var w func() error
	for p := 0; p < producers; p++ {
		if p == 0 || !shared {
			var closer func()
			var err error
			if w, closer, err = write(); err != nil {
				return 0, err
			}
			defer closer()
		}
		w := w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := w(); err != nil {
					errs <- err
					return
				}
				count.Add(1)
			}
		}()
	}
	// A warm-up before the window, for both brokers: the steady state is
	// what a service sees, not a fresh topic's first second (FlowMesh's
	// log switches to preallocated segments after its first ~1000 fsyncs).
	time.Sleep(syncWarmUp)
	start, before := time.Now(), count.Load()
	time.Sleep(d) // the measurement window
	n := count.Load() - before
	el := time.Since(start)
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(n) / el.Seconds(), nil
}

// streamCatchUp fills the log with n events, then times one consumer
// reading all of them from the start.
func streamCatchUp(t *target, n, size int) (float64, error) {
	if _, err := streamWriteRate(t, n, size, 1000); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if t.name == "flowmesh" {
		fm, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return 0, err
		}
		defer fm.Close()
		start := time.Now()
		got := 0
		for _, err := range fm.Stream.Consumer(ctx, streamTopic, "catchup", flowmesh.Window(4096)) {
			if err != nil {
				return 0, err
			}
			if got++; got == n {
				break
			}
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	nc, err := nats.Connect(t.url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, streamTopic, jetstream.ConsumerConfig{Durable: "catchup", AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	for got := 1; got <= n; got++ {
		m, err := it.Next()
		if err != nil {
			return 0, err
		}
		if got%1000 == 0 || got == n {
			m.Ack() // acknowledges everything before it (AckAll), as FlowMesh's batched acks do
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// streamLatency writes at rate for d and measures write-to-delivery time
// at a live consumer.
func streamLatency(t *target, rate int, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	n := rate * int(d/time.Second)
	lat := make(chan time.Duration, n)
	record := func(b []byte) {
		lat <- time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(b)))
	}
	var publish func([]byte) error
	ready := make(chan error, 1)
	if t.name == "flowmesh" {
		fm, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return nil, err
		}
		defer fm.Close()
		fm.Stream.CreateTopic(ctx, streamTopic, flowmesh.TopicConfig{Partitions: 1})
		cs, err := fm.Stream.Join(ctx, streamTopic, "lat")
		if err != nil {
			return nil, err
		}
		defer cs.Close()
		go func() {
			for {
				ev, err := cs.Next(ctx)
				if err != nil {
					return
				}
				record(ev.Value)
				cs.Done(ev)
			}
		}()
		pub, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return nil, err
		}
		defer pub.Close()
		publish = func(b []byte) error {
			go pub.Stream.Write(ctx, streamTopic, b) // the producer does not wait for its ack
			return nil
		}
		ready <- nil
	} else {
		nc, err := nats.Connect(t.url)
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streamTopic, Subjects: []string{streamTopic}, Storage: jetstream.FileStorage}); err != nil {
			return nil, err
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, streamTopic, jetstream.ConsumerConfig{Durable: "lat", AckPolicy: jetstream.AckAllPolicy})
		if err != nil {
			return nil, err
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { record(m.Data()); m.Ack() })
		if err != nil {
			return nil, err
		}
		defer cc.Stop()
		publish = func(b []byte) error { _, err := js.PublishAsync(streamTopic, b); return err }
		ready <- nil
	}
	<-ready
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		b := make([]byte, 256)
		binary.LittleEndian.PutUint64(b, uint64(time.Now().UnixNano()))
		if err := publish(b); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, 0, n)
	for len(out) < n {
		select {
		case l := <-lat:
			out = append(out, l)
		case <-ctx.Done():
			return nil, fmt.Errorf("delivered %d of %d", len(out), n)
		}
	}
	slices.Sort(out)
	return out, nil
}
