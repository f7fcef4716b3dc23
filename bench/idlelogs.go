package main

import (
	"context"
	"fmt"
	"time"

	flowmesh "github.com/flowmesh/flowmesh/clients/go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchIdleLogs measures what many idle logs cost: FlowMesh with topics of
// 10 partitions, JetStream with as many one-subject streams (each an
// ordered log), every log holding one event, then nothing for a window
// while the server's CPU time is read from /proc. A broker with thousands
// of quiet partitions should not burn a core on timers.
func benchIdleLogs(cfg config) error {
	const perTopic = 10
	logs := cfg.idleLogs
	topics := (logs + perTopic - 1) / perTopic
	logs = topics * perTopic
	const window = 10 * time.Second
	fmt.Fprintf(cfg.out, "## Idle logs: server CPU with %d partitions / streams holding one event each, nothing sent for %v\n\n", logs, window)
	fmt.Fprintln(cfg.out, "| | FlowMesh | JetStream | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	var cpu [2][2]float64 // [broker][empty, with logs]: share of one core
	var rss [2][2]int     // KiB, at the end of each window
	for i, isFM := range []bool{true, false} {
		t, cleanup, err := durable(cfg, isFM, false)
		if err != nil {
			return err
		}
		err = func() error {
			idle := func(j int) {
				time.Sleep(2 * time.Second) // creation's aftermath: flushes, compactions
				before := t.cpuTime()
				time.Sleep(window)
				cpu[i][j] = float64(t.cpuTime()-before) / float64(window)
				rss[i][j] = t.rssKiB()
			}
			idle(0)
			if err := createIdleLogs(t, topics, perTopic); err != nil {
				return err
			}
			idle(1)
			return nil
		}()
		t.stop()
		cleanup()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	fmt.Fprintf(cfg.out, "| idle, no logs | %.1f%% of a core | %.1f%% of a core | %s |\n", 100*cpu[0][0], 100*cpu[1][0], ratio(cpu[0][0], cpu[1][0]))
	fmt.Fprintf(cfg.out, "| idle, %d logs | %.1f%% of a core | %.1f%% of a core | %s |\n", logs, 100*cpu[0][1], 100*cpu[1][1], ratio(cpu[0][1], cpu[1][1]))
	fmt.Fprintf(cfg.out, "| RSS, no logs | %d KiB | %d KiB | %s |\n", rss[0][0], rss[1][0], ratio(float64(rss[0][0]), float64(rss[1][0])))
	fmt.Fprintf(cfg.out, "| RSS, %d logs | %d KiB | %d KiB | %s |\n\n", logs, rss[0][1], rss[1][1], ratio(float64(rss[0][1]), float64(rss[1][1])))
	return nil
}

// createIdleLogs makes topics×perTopic logs and writes one event to each.
func createIdleLogs(t *target, topics, perTopic int) error {
	ctx := context.Background()
	if t.name == "flowmesh" {
		fm, err := flowmesh.Connect(ctx, t.url)
		if err != nil {
			return err
		}
		defer fm.Close()
		for i := 0; i < topics; i++ {
			name := fmt.Sprintf("idle.t%d", i)
			if err := fm.Stream.CreateTopic(ctx, name, flowmesh.TopicConfig{Partitions: perTopic}); err != nil {
				return err
			}
			for p := 0; p < perTopic; p++ {
				if _, err := fm.Stream.Write(ctx, name, []byte("x"), flowmesh.ToPartition(p)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	nc, err := nats.Connect(t.url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for i := 0; i < topics*perTopic; i++ {
		name := fmt.Sprintf("idle_%d", i)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"idle." + name}, Storage: jetstream.FileStorage}); err != nil {
			return err
		}
		if _, err := js.Publish(ctx, "idle."+name, []byte("x")); err != nil {
			return err
		}
	}
	return nil
}
