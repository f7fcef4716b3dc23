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
	amqp "github.com/rabbitmq/amqp091-go"
)

// Job queues against RabbitMQ (Debian's rabbitmq-server), both durable:
// FlowMesh with fsync=always (an enqueue is acknowledged after its fsync),
// RabbitMQ with a durable queue, persistent messages and publisher confirms
// (a confirm comes after the message is fsynced), manual acks.

func startRabbit(cfg config) (*target, func(), error) {
	dir, err := os.MkdirTemp(cfg.dataDir, "rabbit-")
	if err != nil {
		return nil, nil, err
	}
	port := freePort()
	cmd := exec.Command(cfg.rabbitBin)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", port),
		fmt.Sprintf("RABBITMQ_NODENAME=bench%d@localhost", port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", freePort()),
		"RABBITMQ_MNESIA_BASE="+dir+"/mnesia", "RABBITMQ_LOG_BASE="+dir+"/log",
		"RABBITMQ_ENABLED_PLUGINS_FILE="+dir+"/plugins")
	t, err := startWithin("rabbitmq", cmd, port, 60*time.Second)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	t.url = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	return t, func() { os.RemoveAll(dir) }, nil
}

func benchQueues(cfg config) error {
	fmt.Fprintf(cfg.out, "## Job queues vs RabbitMQ (%s)\n\n", cfg.rabbitBin)
	fmt.Fprintln(cfg.out, "| workload | FlowMesh | RabbitMQ | ratio | CPU per job, broker: FlowMesh / RabbitMQ | CPU per job, the harness's producers and workers: FlowMesh SDK / amqp091-go |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|---|---|")
	for _, batch := range []int{1, 100} {
		fm, rm, err := medianJobs(cfg, batch)
		if err != nil {
			return err
		}
		producers := "16 producers each waiting for every enqueue (publish confirm)"
		if batch > 1 {
			producers = fmt.Sprintf("16 producers sending %d at a time, then waiting for their replies (confirms)", batch)
		}
		fmt.Fprintf(cfg.out, "| enqueue → reserve → ack, %d × 100 B jobs, %s, 8 workers × %d in flight, durable | %.0f jobs/s | %.0f jobs/s | %s | %s / %s | %s / %s |\n",
			cfg.jobs, producers, cfg.jobWindow, fm.rate, rm.rate, ratio(fm.rate, rm.rate),
			perJob(fm.broker), perJob(rm.broker), perJob(fm.clients), perJob(rm.clients))
	}
	t, cleanup, err := durable(cfg, true, false)
	if err != nil {
		return err
	}
	lat, err := delayedLateness(t, cfg.delayed)
	t.stop()
	cleanup()
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "| delayed jobs: lateness past their time with %d delayed jobs waiting, p50 / p99 / max | %v / %v / %v | (no native delays) | — | | |\n\n",
		cfg.delayed, percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1])
	return nil
}

// jobsFigure is one run of the job throughput workload: jobs/s, and the
// CPU time per job of the broker's processes and of the harness's own
// (its producers and workers), both over the same interval as the rate.
// The CPU figures show what bounds the ratio on a machine whose cores the
// brokers and the clients share: a broker and client pair that spends
// less CPU per job can go that much faster once the cores are busy.
type jobsFigure struct {
	rate            float64
	broker, clients time.Duration // per job; <0 when unknown
}

// jobsMeter takes the CPU figures of a jobs run: start before its first
// job, figure once its last job is acknowledged.
type jobsMeter struct {
	t               *target
	start           time.Time
	broker, clients time.Duration
}

func startJobsMeter(t *target) *jobsMeter {
	return &jobsMeter{t: t, start: time.Now(), broker: t.cpuTime(), clients: ownCPU()}
}

func (m *jobsMeter) figure(n int) jobsFigure {
	f := jobsFigure{rate: float64(n) / time.Since(m.start).Seconds(), broker: -1, clients: -1}
	if b := m.t.cpuTime(); m.broker >= 0 && b >= m.broker {
		f.broker = (b - m.broker) / time.Duration(n)
	}
	if c := ownCPU(); m.clients >= 0 && c >= m.clients {
		f.clients = (c - m.clients) / time.Duration(n)
	}
	return f
}

func perJob(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// medianJobs runs the job throughput workload on both brokers cfg.runs
// times, each on a fresh process and data dir, and returns the medians of
// each figure.
func medianJobs(cfg config, batch int) (fm, rm jobsFigure, err error) {
	var fms, rms []jobsFigure
	for run := 0; run < max(cfg.runs, 1); run++ {
		t, cleanup, err := durable(cfg, true, true)
		if err != nil {
			return fm, rm, err
		}
		r, err := flowmeshJobs(t, cfg.jobs, 100, batch, cfg.jobWindow)
		t.stop()
		cleanup()
		if err != nil {
			return fm, rm, fmt.Errorf("flowmesh: %w", err)
		}
		fms = append(fms, r)
		t, cleanup, err = startRabbit(cfg)
		if err != nil {
			return fm, rm, err
		}
		r, err = rabbitJobs(t, cfg.jobs, 100, batch, cfg.jobWindow)
		t.stop()
		cleanup()
		if err != nil {
			return fm, rm, fmt.Errorf("rabbitmq: %w", err)
		}
		rms = append(rms, r)
	}
	return medianFigure(fms), medianFigure(rms), nil
}

// medianFigure is the median of each figure of runs on its own.
func medianFigure(runs []jobsFigure) jobsFigure {
	median := func(get func(jobsFigure) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return jobsFigure{
		rate:    median(func(f jobsFigure) float64 { return f.rate }),
		broker:  time.Duration(median(func(f jobsFigure) float64 { return float64(f.broker) })),
		clients: time.Duration(median(func(f jobsFigure) float64 { return float64(f.clients) })),
	}
}

// flowmeshJobs enqueues n jobs from 16 producers while 8 workers process
// them, and returns jobs/s from the first enqueue to the last ack.
// With batch > 1, each producer enqueues batch jobs at a time
// (EnqueueBatch: pipelined, sharing fsyncs) and waits for their replies.
func flowmeshJobs(t *target, n, size, batch, window int) (jobsFigure, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, t.url)
	if err != nil {
		return jobsFigure{}, err
	}
	defer fm.Close()
	if err := fm.Queue.Create(ctx, "bench", flowmesh.QueueConfig{Fsync: "always"}); err != nil {
		return jobsFigure{}, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	meter := startJobsMeter(t)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := flowmesh.Connect(ctx, t.url)
			if err != nil {
				return
			}
			defer c.Close()
			c.Queue.Worker(wctx, "bench", func(context.Context, *flowmesh.Job) error {
				if done.Add(1) == int64(n) {
					close(all)
				}
				return nil
			}, flowmesh.Concurrency(window))
		}()
	}
	payload := randomPayload(size)
	var next atomic.Int64
	errs := make(chan error, 16)
	for p := 0; p < 16; p++ {
		go func() {
			c, err := flowmesh.Connect(ctx, t.url)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			jobs := make([]flowmesh.EnqueueJob, 0, batch)
			for {
				jobs = jobs[:0]
				for len(jobs) < batch && next.Add(1) <= int64(n) {
					jobs = append(jobs, flowmesh.EnqueueJob{Payload: payload})
				}
				if len(jobs) == 0 {
					return
				}
				var err error
				if batch == 1 {
					_, err = c.Queue.Enqueue(ctx, "bench", payload)
				} else {
					_, err = c.Queue.EnqueueBatch(ctx, "bench", jobs)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}

	select {
	case <-all:
	case err := <-errs:
		return jobsFigure{}, err
	case <-ctx.Done():
		return jobsFigure{}, fmt.Errorf("processed %d of %d", done.Load(), n)
	}
	f := meter.figure(n)
	stop()
	wg.Wait()
	return f, nil
}

func rabbitJobs(t *target, n, size, batch, window int) (jobsFigure, error) {
	conn, err := amqp.Dial(t.url)
	if err != nil {
		return jobsFigure{}, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return jobsFigure{}, err
	}
	if _, err := ch.QueueDeclare("bench", true, false, false, false, nil); err != nil {
		return jobsFigure{}, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	meter := startJobsMeter(t)
	for w := 0; w < 8; w++ {
		c, err := conn.Channel()
		if err != nil {
			return jobsFigure{}, err
		}
		c.Qos(window, 0, false)
		msgs, err := c.Consume("bench", "", false, false, false, false, nil)
		if err != nil {
			return jobsFigure{}, err
		}
		go func() {
			for m := range msgs {
				m.Ack(false)
				if done.Add(1) == int64(n) {
					close(all)
				}
			}
		}()
	}
	payload := randomPayload(size)
	var next atomic.Int64
	errs := make(chan error, 16)
	for p := 0; p < 16; p++ {
		go func() {
			pc, err := amqp.Dial(t.url)
			if err != nil {
				errs <- err
				return
			}
			defer pc.Close()
			c, err := pc.Channel()
			if err != nil {
				errs <- err
				return
			}
			if err := c.Confirm(false); err != nil {
				errs <- err
				return
			}
			// batch publishes, then their confirms: the same as a FlowMesh
			// producer waiting for its enqueues' replies.
			dcs := make([]*amqp.DeferredConfirmation, 0, batch)
			for {
				dcs = dcs[:0]
				for len(dcs) < batch && next.Add(1) <= int64(n) {
					dc, err := c.PublishWithDeferredConfirmWithContext(context.Background(), "", "bench", false, false,
						amqp.Publishing{DeliveryMode: amqp.Persistent, Body: payload})
					if err != nil {
						errs <- err
						return
					}
					dcs = append(dcs, dc)
				}
				if len(dcs) == 0 {
					return
				}
				for _, dc := range dcs {
					if ok := dc.Wait(); !ok {
						errs <- fmt.Errorf("publish nacked")
						return
					}
				}
			}
		}()
	}
	select {
	case <-all:
	case err := <-errs:
		return jobsFigure{}, err
	case <-time.After(10 * time.Minute):
		return jobsFigure{}, fmt.Errorf("processed %d of %d", done.Load(), n)
	}
	return meter.figure(n), nil
}

// delayedLateness enqueues n jobs delayed to random times within the next
// 5 s, plus probes due at known times, and measures how late each probe is
// delivered to a waiting worker.
func delayedLateness(t *target, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fm, err := flowmesh.Connect(ctx, t.url)
	if err != nil {
		return nil, err
	}
	defer fm.Close()
	fm.Queue.Create(ctx, "delayed", flowmesh.QueueConfig{})
	// The background load: n jobs due in an hour (waiting in the delayed
	// heap the whole time).
	var wg sync.WaitGroup
	var next atomic.Int64
	for p := 0; p < 16; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				fm.Queue.Enqueue(ctx, "delayed", []byte("bg"), flowmesh.Delay(time.Hour))
			}
		}()
	}
	wg.Wait()
	const probes = 500
	lat := make(chan time.Duration, probes)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go fm.Queue.Worker(wctx, "delayed", func(_ context.Context, j *flowmesh.Job) error {
		due := int64(binary.LittleEndian.Uint64(j.Payload))
		lat <- time.Duration(time.Now().UnixNano() - due)
		return nil
	}, flowmesh.Concurrency(16))
	base := time.Now().Add(time.Second)
	for i := 0; i < probes; i++ {
		// RunAt travels in Unix milliseconds: the job is due at the
		// millisecond, and lateness is measured from there.
		due := base.Add(time.Duration(i) * 4 * time.Millisecond).Truncate(time.Millisecond)
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, uint64(due.UnixNano()))
		if _, err := fm.Queue.Enqueue(ctx, "delayed", b, flowmesh.RunAt(due)); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, 0, probes)
	for len(out) < probes {
		select {
		case l := <-lat:
			out = append(out, l)
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d probes delivered", len(out), probes)
		}
	}
	slices.Sort(out)
	return out, nil
}
