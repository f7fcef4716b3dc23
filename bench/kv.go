package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The KV cache against Redis (Debian's redis-server), measured with
// redis-benchmark on both ports: FlowMesh's Redis-compatible port with its
// data on disk (the interval policy: every reply after its write reached
// the append-only file, fsynced every 10 ms) and redis-server twice, with
// an append-only file fsynced every second (the durable setting closest
// to FlowMesh's) and with no persistence at all; then both fsyncing every
// write before its reply (FlowMesh's always, Redis' appendfsync always).

// kvTarget is a started server with its Redis port and data dir.
type kvTarget struct {
	*target
	port int
	dir  string
}

func startKVTarget(cfg config, name string) (*kvTarget, error) {
	dir, err := os.MkdirTemp(cfg.dataDir, "kv-bench-")
	if err != nil {
		return nil, err
	}
	port := freePort()
	var cmd *exec.Cmd
	switch name {
	case "flowmesh":
		cmd = exec.Command(cfg.flowmeshBin, "server", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
			"--http-addr", "off", "--resp-addr", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dir, "--log-level", "warn")
	case "redis-aof":
		cmd = exec.Command(cfg.redisBin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
	case "redis":
		cmd = exec.Command(cfg.redisBin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no")
	case "flowmesh-always":
		cmd = exec.Command(cfg.flowmeshBin, "server", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
			"--http-addr", "off", "--resp-addr", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dir, "--log-level", "warn",
			"--fsync", "always")
	case "redis-always":
		cmd = exec.Command(cfg.redisBin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	}
	t, err := start(name, cmd, port)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &kvTarget{target: t, port: port, dir: dir}, nil
}

func (k *kvTarget) stop() {
	k.target.stop()
	os.RemoveAll(k.dir)
}

var rpsLine = regexp.MustCompile(`([A-Z]+): ([0-9.]+) requests per second`)

// redisBenchmark runs redis-benchmark -q and returns requests/s by test.
func redisBenchmark(cfg config, port int, args ...string) (map[string]float64, error) {
	all := append([]string{"-p", strconv.Itoa(port), "-q"}, args...)
	out, err := exec.Command(cfg.redisBenchBin, all...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark %v: %v\n%s", all, err, out)
	}
	res := map[string]float64{}
	for _, m := range rpsLine.FindAllStringSubmatch(strings.ReplaceAll(string(out), "\r", "\n"), -1) {
		res[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	return res, nil
}

type kvRun struct {
	label string
	tests []string // redis-benchmark tests, run one invocation each, in order, on the same server
	n     int      // requests per test
	args  []string // the rest of redis-benchmark's arguments
}

// kvFigure is one test's result: requests/s and the server's CPU time
// per request (user and system, from /proc; the rate moves with what
// else this shared machine runs, the CPU per request much less).
type kvFigure struct {
	rps float64
	cpu time.Duration
}

// kvMedians runs each redis-benchmark command against each target, cfg.runs
// times (targets alternating, each a fresh process and data dir), and
// returns the median figures by run, target and test.
func kvMedians(cfg config, runs []kvRun, names []string) ([]map[string]map[string]kvFigure, error) {
	var out []map[string]map[string]kvFigure
	for _, r := range runs {
		res := map[string]map[string][]kvFigure{}
		for i := 0; i < max(cfg.runs, 1); i++ {
			for _, name := range names {
				t, err := startKVTarget(cfg, name)
				if err != nil {
					return nil, err
				}
				if res[name] == nil {
					res[name] = map[string][]kvFigure{}
				}
				for _, test := range r.tests {
					before := t.cpuTime()
					m, err := redisBenchmark(cfg, t.port, append([]string{"-t", strings.ToLower(test), "-n", strconv.Itoa(r.n)}, r.args...)...)
					after := t.cpuTime()
					if err != nil {
						t.stop()
						return nil, fmt.Errorf("%s: %w", name, err)
					}
					fig := kvFigure{rps: m[test], cpu: -1}
					if before >= 0 && after >= before {
						fig.cpu = (after - before) / time.Duration(r.n)
					}
					res[name][test] = append(res[name][test], fig)
				}
				t.stop()
			}
		}
		med := map[string]map[string]kvFigure{}
		for _, name := range names {
			med[name] = map[string]kvFigure{}
			for _, test := range r.tests {
				var rps []float64
				var cpu []time.Duration
				for _, f := range res[name][test] {
					rps = append(rps, f.rps)
					cpu = append(cpu, f.cpu)
				}
				slices.Sort(rps)
				slices.Sort(cpu)
				med[name][test] = kvFigure{rps: rps[len(rps)/2], cpu: cpu[len(cpu)/2]}
			}
		}
		out = append(out, med)
	}
	return out, nil
}

// perReq formats a CPU time per request, "?" if it could not be read.
func perReq(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

func benchKV(cfg config) error {
	fmt.Fprintf(cfg.out, "## KV cache vs Redis (%s, redis-benchmark)\n\n", cfg.redisBin)
	fmt.Fprintln(cfg.out, "| workload | FlowMesh | Redis, AOF everysec | ratio | Redis, no persistence | ratio | server CPU per request: FlowMesh / Redis AOF / Redis |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|---|---|---|")
	common := []string{"-c", "50", "-r", "100000", "-d", "100"}
	runs := []kvRun{
		{"50 clients, -P 1", []string{"SET", "GET"}, cfg.kvRequests / 4, append([]string{"-P", "1"}, common...)},
		{"50 clients, -P 16", []string{"SET", "GET"}, cfg.kvRequests, append([]string{"-P", "16"}, common...)},
	}
	names := []string{"flowmesh", "redis-aof", "redis"}
	meds, err := kvMedians(cfg, runs, names)
	if err != nil {
		return err
	}
	for i, r := range runs {
		for _, test := range r.tests {
			fm, aof, plain := meds[i]["flowmesh"][test], meds[i]["redis-aof"][test], meds[i]["redis"][test]
			fmt.Fprintf(cfg.out, "| %s, %s, 100 B values, 100k keys | %.0f/s | %.0f/s | %s | %.0f/s | %s | %s / %s / %s |\n",
				test, r.label, fm.rps, aof.rps, ratio(fm.rps, aof.rps), plain.rps, ratio(fm.rps, plain.rps),
				perReq(fm.cpu), perReq(aof.cpu), perReq(plain.cpu))
		}
	}
	fmt.Fprintln(cfg.out)

	// Every write fsynced before its reply: FlowMesh's always policy
	// against Redis' appendfsync always. Fewer requests: the disk bounds it.
	fmt.Fprintln(cfg.out, "| workload, every write fsynced before its reply | FlowMesh, fsync always | Redis, appendfsync always | ratio | server CPU per request: FlowMesh / Redis |")
	fmt.Fprintln(cfg.out, "|---|---|---|---|---|")
	runs = []kvRun{
		{"50 clients, -P 1", []string{"SET"}, cfg.kvRequests / 20, append([]string{"-P", "1"}, common...)},
		{"50 clients, -P 16", []string{"SET"}, cfg.kvRequests / 4, append([]string{"-P", "16"}, common...)},
	}
	if meds, err = kvMedians(cfg, runs, []string{"flowmesh-always", "redis-always"}); err != nil {
		return err
	}
	for i, r := range runs {
		fm, rd := meds[i]["flowmesh-always"]["SET"], meds[i]["redis-always"]["SET"]
		fmt.Fprintf(cfg.out, "| SET, %s, 100 B values, 100k keys | %.0f/s | %.0f/s | %s | %s / %s |\n", r.label, fm.rps, rd.rps,
			ratio(fm.rps, rd.rps), perReq(fm.cpu), perReq(rd.cpu))
	}
	fmt.Fprintln(cfg.out)
	return kvFootprint(cfg, names)
}

// kvFootprint loads cfg.kvKeys keys of 100 B into each target and reports
// the memory (resident set growth) and disk (data dir) per key.
func kvFootprint(cfg config, names []string) error {
	fmt.Fprintf(cfg.out, "| %d keys × 100 B (random bytes) | memory per key (RSS growth) | disk per key (data dir) |\n|---|---|---|\n", cfg.kvKeys)
	for _, name := range names {
		t, err := startKVTarget(cfg, name)
		if err != nil {
			return err
		}
		before := t.rssKiB()
		if err := loadKeys(t.port, cfg.kvKeys, 100); err != nil {
			t.stop()
			return fmt.Errorf("%s: %w", name, err)
		}
		// Let the writers settle (Pebble's flushes, Redis' AOF rewrite
		// buffer) before measuring.
		time.Sleep(2 * time.Second)
		after := t.rssKiB()
		disk := dirBytes(t.dir)
		t.stop()
		fmt.Fprintf(cfg.out, "| %s | %.0f B | %.0f B |\n", name, float64(after-before)*1024/float64(cfg.kvKeys), float64(disk)/float64(cfg.kvKeys))
	}
	fmt.Fprintln(cfg.out)
	return nil
}

// loadKeys writes key:0..n-1 with size-byte random values (compression
// must not flatter either side), pipelined 1000 at a time, and checks
// every reply.
func loadKeys(port, n, size int) error {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	rnd := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, size)
	for i := 0; i < n; {
		var b strings.Builder
		j := i
		for ; j < n && j < i+1000; j++ {
			key := "key:" + strconv.Itoa(j)
			for k := range val {
				val[k] = byte(rnd.Uint32())
			}
			fmt.Fprintf(&b, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(val), val)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return err
		}
		for ; i < j; i++ {
			line, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if line != "+OK\r\n" {
				return fmt.Errorf("SET %d: %q", i, line)
			}
		}
	}
	return nil
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
