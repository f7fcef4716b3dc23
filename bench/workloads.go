package main

import (
	"bufio"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// randomPayload is size random bytes. The durable workloads store what
// they send: zeros would let FlowMesh's compressed batches (S2 by
// default) shrink to almost nothing, which JetStream and RabbitMQ, storing
// payloads as they come, do not do.
func randomPayload(size int) []byte {
	b := make([]byte, size)
	_, _ = crand.Read(b)
	return b
}

// benchPubSub: one publisher and one subscriber on separate connections;
// throughput is messages delivered per second, from the first publish to
// the last delivery.
func benchPubSub(cfg config) error {
	fmt.Fprintf(cfg.out, "## Core pub/sub throughput (1 publisher, 1 subscriber, %d msgs, nats.go client, median of %d)\n\n", cfg.msgs, cfg.runs)
	fmt.Fprintln(cfg.out, "| size | FlowMesh msgs/s | nats-server msgs/s | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	for _, size := range cfg.sizes {
		fm, peer, err := median(cfg, func(t *target) (float64, error) { return pubSubOnce(t.url, cfg.msgs, size) })
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.out, "| %d B | %.0f | %.0f | %s |\n", size, fm, peer, ratio(fm, peer))
	}
	fmt.Fprintln(cfg.out)
	return nil
}

func pubSubOnce(url string, msgs, size int) (float64, error) {
	sub, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	pub, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	var got atomic.Int64
	done := make(chan time.Time, 1)
	s, err := sub.Subscribe("bench.pubsub", func(*nats.Msg) {
		if got.Add(1) == int64(msgs) {
			done <- time.Now()
		}
	})
	if err != nil {
		return 0, err
	}
	_ = s.SetPendingLimits(-1, -1)
	if err := sub.Flush(); err != nil {
		return 0, err
	}
	payload := make([]byte, size)
	start := time.Now()
	for i := 0; i < msgs; i++ {
		if err := pub.Publish("bench.pubsub", payload); err != nil {
			return 0, err
		}
	}
	if err := pub.Flush(); err != nil {
		return 0, err
	}
	select {
	case end := <-done:
		return float64(msgs) / end.Sub(start).Seconds(), nil
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("delivered %d of %d", got.Load(), msgs)
	}
}

// benchLatency: the publisher sends at a fixed rate, each payload carrying
// its send time; the subscriber records publish-to-delivery latency.
func benchLatency(cfg config) error {
	fmt.Fprintf(cfg.out, "## Publish-to-delivery latency (%d msgs at %d msgs/s, 128 B)\n\n", cfg.latMsgs, cfg.rate)
	fmt.Fprintln(cfg.out, "| percentile | FlowMesh | nats-server | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	fm, peer, err := both(cfg, func(t *target) ([]time.Duration, error) { return latencyOnce(t.url, cfg.latMsgs, cfg.rate) })
	if err != nil {
		return err
	}
	for _, p := range []float64{50, 90, 99, 99.9} {
		a, b := percentile(fm, p), percentile(peer, p)
		fmt.Fprintf(cfg.out, "| p%g | %v | %v | %s |\n", p, a, b, ratio(float64(a), float64(b)))
	}
	fmt.Fprintln(cfg.out)
	return nil
}

func latencyOnce(url string, msgs, rate int) ([]time.Duration, error) {
	sub, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	pub, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	lat := make([]time.Duration, 0, msgs)
	done := make(chan struct{})
	ch := make(chan time.Duration, msgs)
	s, err := sub.Subscribe("bench.latency", func(m *nats.Msg) {
		sent := int64(binary.LittleEndian.Uint64(m.Data))
		ch <- time.Duration(time.Now().UnixNano() - sent)
		if len(ch) == cap(ch) {
			close(done)
		}
	})
	if err != nil {
		return nil, err
	}
	_ = s.SetPendingLimits(-1, -1)
	sub.Flush()
	payload := make([]byte, 128)
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for i := 0; i < msgs; i++ {
		for time.Now().Before(next) {
			// busy-wait: a timer cannot pace tens of microseconds
		}
		next = next.Add(interval)
		binary.LittleEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := pub.Publish("bench.latency", payload); err != nil {
			return nil, err
		}
		pub.Flush() // each message goes out now, as a latency-sensitive producer sends it
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("delivered %d of %d", len(ch), msgs)
	}
	close(ch)
	for d := range ch {
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i].Round(time.Microsecond / 10)
}

// benchIdle opens idle connections (CONNECT + PING answered) and reports
// the server's resident memory before and after.
func benchIdle(cfg config) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(cfg.idleConns)+64 > lim.Cur {
		// Each side holds one descriptor per connection plus its own few.
		n := int(lim.Cur) - 64
		fmt.Fprintf(cfg.out, "Note: the descriptor limit here is %d (hard limit, not raisable), so %d connections are held instead of %d.\n\n",
			lim.Cur, n, cfg.idleConns)
		cfg.idleConns = n
	}
	fmt.Fprintf(cfg.out, "## Idle connections (%d held open)\n\n", cfg.idleConns)
	fmt.Fprintln(cfg.out, "| | FlowMesh | nats-server | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	type res struct{ base, held int }
	fm, peer, err := both(cfg, func(t *target) (res, error) {
		base := t.rssKiB()
		conns, err := openIdle(t.url, cfg.idleConns)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		if err != nil {
			return res{}, err
		}
		time.Sleep(2 * time.Second) // FlowMesh drops idle output buffers after 1 s; let both settle
		return res{base, t.rssKiB()}, nil
	})
	if err != nil {
		return err
	}
	per := func(r res) float64 { return float64(r.held-r.base) * 1024 / float64(cfg.idleConns) }
	fmt.Fprintf(cfg.out, "| RSS before | %d KiB | %d KiB | |\n", fm.base, peer.base)
	fmt.Fprintf(cfg.out, "| RSS with %d conns | %d KiB | %d KiB | %s |\n", cfg.idleConns, fm.held, peer.held,
		ratio(float64(fm.held), float64(peer.held)))
	fmt.Fprintf(cfg.out, "| bytes per idle conn | %.0f | %.0f | %s |\n\n", per(fm), per(peer), ratio(per(fm), per(peer)))
	return nil
}

func openIdle(url string, n int) ([]net.Conn, error) {
	addr := strings.TrimPrefix(url, "nats://")
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, fmt.Errorf("conn %d: %w", i, err)
		}
		conns = append(conns, c)
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadString('\n'); err != nil { // INFO
			return conns, fmt.Errorf("conn %d: INFO: %w", i, err)
		}
		c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "PONG") {
			return conns, fmt.Errorf("conn %d: PONG: %q %v", i, l, err)
		}
		c.SetDeadline(time.Time{})
	}
	return conns, nil
}

// benchNatsCLI runs `nats bench` (pub and sub in one run each) when the
// nats CLI is installed.
func benchNatsCLI(cfg config) error {
	natsBin, err := exec.LookPath("nats")
	if err != nil {
		fmt.Fprintf(cfg.out, "## nats bench\n\nskipped: the nats CLI is not installed (go install github.com/nats-io/natscli/nats@v0.3.0)\n\n")
		return nil
	}
	fmt.Fprintf(cfg.out, "## `nats bench` (1 publisher, 1 subscriber, %d msgs, median of %d)\n\n", cfg.msgs, cfg.runs)
	fmt.Fprintln(cfg.out, "| size | FlowMesh sub msgs/s | nats-server sub msgs/s | ratio |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|")
	for _, size := range cfg.sizes {
		fm, peer, err := median(cfg, func(t *target) (float64, error) { return natsBenchOnce(natsBin, t.url, cfg.msgs, size) })
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.out, "| %d B | %.0f | %.0f | %s |\n", size, fm, peer, ratio(fm, peer))
	}
	fmt.Fprintln(cfg.out)
	return nil
}

var statsRE = regexp.MustCompile(`subscriber stats: ([0-9,]+) msgs/sec`)

func natsBenchOnce(bin, url string, msgs, size int) (float64, error) {
	common := []string{"--server", url, "--msgs", strconv.Itoa(msgs), "--size", strconv.Itoa(size), "--no-progress"}
	sub := exec.Command(bin, append([]string{"bench", "sub", "bench.cli"}, common...)...)
	var out strings.Builder
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		return 0, err
	}
	time.Sleep(500 * time.Millisecond) // the subscriber has no readiness signal; give it time to subscribe
	pub := exec.Command(bin, append([]string{"bench", "pub", "bench.cli"}, common...)...)
	if b, err := pub.CombinedOutput(); err != nil {
		sub.Process.Kill()
		return 0, fmt.Errorf("nats bench pub: %v: %s", err, b)
	}
	if err := sub.Wait(); err != nil {
		return 0, fmt.Errorf("nats bench sub: %v: %s", err, out.String())
	}
	m := statsRE.FindStringSubmatch(out.String())
	if m == nil {
		return 0, fmt.Errorf("no subscriber stats in %q", out.String())
	}
	return strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
}
