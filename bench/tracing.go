package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
)

// The cost of tracing: core pub/sub (1 publisher, 1 subscriber, 128 B)
// and stream writes (batched producer) with tracing off, on at 1%
// sampling and on at 100%, each exporting OTLP/HTTP to a collector in
// this process that reads and drops the spans; with -flowmesh-baseline,
// also a binary built before tracing existed, which shows what "off"
// costs. Runs interleave (a round runs every setting once); medians of
// cfg.runs rounds.

type traceSetting struct {
	name string
	bin  string
	args []string
}

func benchTracing(cfg config) error {
	var exported atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	col := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		exported.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty body is an empty ExportTraceServiceResponse
	})}
	go col.Serve(ln)
	defer col.Close()
	otlp := func(ratio string) []string {
		return []string{"--trace-exporter", "otlp", "--trace-protocol", "http/protobuf",
			"--trace-endpoint", "http://" + ln.Addr().String(), "--trace-sample", ratio}
	}
	settings := []traceSetting{
		{"off (default)", cfg.flowmeshBin, nil},
		{"on, 1% sampled", cfg.flowmeshBin, otlp("0.01")},
		{"on, 100% sampled", cfg.flowmeshBin, otlp("1")},
	}
	if cfg.baselineBin != "" {
		settings = append([]traceSetting{{"before tracing (" + cfg.baselineBin + ")", cfg.baselineBin, nil}}, settings...)
	}
	pub := make([][]float64, len(settings))
	str := make([][]float64, len(settings))
	for i := 0; i < max(cfg.runs, 1); i++ {
		for k, s := range settings {
			p, w, err := traceRound(s, cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			pub[k], str[k] = append(pub[k], p), append(str[k], w)
		}
	}
	fmt.Fprintf(cfg.out, "## Cost of tracing (pub/sub: 1 publisher, 1 subscriber, %d × 128 B; streams: %d × 1 KiB, batched producer; median of %d)\n\n",
		cfg.msgs, cfg.streamMsgs, cfg.runs)
	fmt.Fprintln(cfg.out, "| tracing | pub/sub msgs/s | against off | stream events/s | against off |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|---|")
	off := slices.IndexFunc(settings, func(s traceSetting) bool { return s.name == "off (default)" })
	mp, ms := medianOf(pub[off]), medianOf(str[off])
	for k, s := range settings {
		p, w := medianOf(pub[k]), medianOf(str[k])
		fmt.Fprintf(cfg.out, "| %s | %.0f | %s | %.0f | %s |\n", s.name, p, ratio(p, mp), w, ratio(w, ms))
	}
	fmt.Fprintf(cfg.out, "\nOTLP bytes received by the harness's collector: %d\n\n", exported.Load())
	return nil
}

// traceRound runs both workloads against a fresh node of setting s.
func traceRound(s traceSetting, cfg config) (pubsub, writes float64, err error) {
	port := freePort()
	args := append([]string{"server", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--http-addr", "off",
		"--in-memory", "--log-level", "warn"}, s.args...)
	t, err := start("flowmesh", exec.Command(s.bin, args...), port)
	if err != nil {
		return 0, 0, err
	}
	defer t.stop()
	if pubsub, err = pubSubOnce(t.url, cfg.msgs, 128); err != nil {
		return 0, 0, err
	}
	writes, err = streamWriteRate(t, cfg.streamMsgs, 1024, 4000)
	return pubsub, writes, err
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
