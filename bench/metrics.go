package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"time"
)

// The cost of metrics: core pub/sub throughput with the monitoring port
// off, and on with /metrics scraped every 100 ms (a hundred times a
// usual 10 s scrape interval), one after the other, median of cfg.runs.

func benchMetrics(cfg config) error {
	fmt.Fprintf(cfg.out, "## Cost of metrics (1 publisher, 1 subscriber, %d × 128 B msgs, median of %d)\n\n", cfg.msgs, cfg.runs)
	fmt.Fprintln(cfg.out, "| monitoring | msgs/s | against off |")
	fmt.Fprintln(cfg.out, "|---|---|---|")
	var off, on []float64
	for i := 0; i < max(cfg.runs, 1); i++ {
		for _, scrape := range []bool{false, true} {
			port, httpPort := freePort(), freePort()
			httpAddr := "off"
			if scrape {
				httpAddr = fmt.Sprintf("127.0.0.1:%d", httpPort)
			}
			cmd := exec.Command(cfg.flowmeshBin, "server", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
				"--http-addr", httpAddr, "--in-memory", "--log-level", "warn")
			t, err := start("flowmesh", cmd, port)
			if err != nil {
				return err
			}
			stop := make(chan struct{})
			if scrape {
				go func() {
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							if resp, err := http.Get("http://" + httpAddr + "/metrics"); err == nil {
								io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
							}
						}
					}
				}()
			}
			r, err := pubSubOnce(t.url, cfg.msgs, 128)
			close(stop)
			t.stop()
			if err != nil {
				return err
			}
			if scrape {
				on = append(on, r)
			} else {
				off = append(off, r)
			}
		}
	}
	slices.Sort(off)
	slices.Sort(on)
	mOff, mOn := off[len(off)/2], on[len(on)/2]
	fmt.Fprintf(cfg.out, "| off | %.0f | — |\n| on, /metrics scraped every 100 ms | %.0f | %s |\n\n", mOff, mOn, ratio(mOn, mOff))
	return nil
}
