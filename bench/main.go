package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	flowmeshBin   string
	peerBin       string
	msgs          int
	sizes         []int
	rate          int
	latMsgs       int
	idleConns     int
	runs          int
	jsBin         string // nats-server with JetStream for the streams workload
	dataDir       string // where durable brokers keep their data
	streamMsgs    int
	catchUp       int
	streamRate    int
	rabbitBin     string
	jobs          int
	jobWindow     int
	delayed       int
	redisBin      string
	redisBenchBin string
	kvRequests    int
	kvKeys        int
	idleLogs      int
	cpuProfile    string // prefix of CPU profiles of FlowMesh's durable runs; "" for none
	baselineBin   string // a flowmesh built before a change, for the tracing workload's "before" row
	out           io.Writer
}

func main() {
	var cfg config
	var sizes string
	flag.StringVar(&cfg.flowmeshBin, "flowmesh", "", "flowmesh binary (default: go build ./cmd/flowmesh)")
	flag.StringVar(&cfg.peerBin, "nats-server", "nats-server", "nats-server binary")
	flag.IntVar(&cfg.msgs, "msgs", 2_000_000, "messages per throughput run")
	flag.StringVar(&sizes, "sizes", "16,1024", "message sizes for pubsub, comma-separated")
	flag.IntVar(&cfg.rate, "rate", 20_000, "messages per second for the latency run")
	flag.IntVar(&cfg.latMsgs, "lat-msgs", 100_000, "messages in the latency run")
	flag.IntVar(&cfg.idleConns, "conns", 20_000, "idle connections for the idle run")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of each throughput figure; the median is printed")
	flag.StringVar(&cfg.jsBin, "jetstream-server", "nats-server", "nats-server binary for the streams workload (2.10+ for sync_interval)")
	flag.StringVar(&cfg.dataDir, "data-dir", "", "parent of the durable brokers' data dirs (default: the temp dir)")
	flag.IntVar(&cfg.streamMsgs, "stream-msgs", 200_000, "events in the stream write run")
	flag.IntVar(&cfg.catchUp, "catch-up", 1_000_000, "retained events in the catch-up read run")
	flag.IntVar(&cfg.streamRate, "stream-rate", 2_000, "events per second in the stream latency run")
	flag.StringVar(&cfg.rabbitBin, "rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server for the queues workload")
	flag.IntVar(&cfg.jobs, "jobs", 100_000, "jobs in the queue throughput run")
	flag.IntVar(&cfg.jobWindow, "job-window", 8, "jobs in flight per worker in the queue throughput run (FlowMesh Concurrency, RabbitMQ prefetch)")
	flag.IntVar(&cfg.delayed, "delayed", 100_000, "delayed jobs waiting in the delayed-job run")
	flag.StringVar(&cfg.redisBin, "redis-server", "redis-server", "redis-server for the kv workload")
	flag.StringVar(&cfg.redisBenchBin, "redis-benchmark", "redis-benchmark", "redis-benchmark for the kv workload")
	flag.IntVar(&cfg.kvRequests, "kv-requests", 2_000_000, "requests per pipelined redis-benchmark test (a quarter unpipelined)")
	flag.IntVar(&cfg.kvKeys, "kv-keys", 1_000_000, "keys loaded for the memory and disk footprint")
	flag.IntVar(&cfg.idleLogs, "idle-logs", 1000, "partitions / streams in the idlelogs workload")
	flag.StringVar(&cfg.baselineBin, "flowmesh-baseline", "", "a flowmesh binary built before tracing, for the tracing workload's baseline row")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of each durable FlowMesh run to `prefix`N.pprof")
	flag.Parse()
	cfg.out = os.Stdout
	for _, s := range strings.Split(sizes, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n <= 0 {
			fatalf("bad size %q", s)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	workloads := flag.Args()
	if len(workloads) == 0 {
		workloads = []string{"pubsub", "latency", "idle", "natscli"}
	}
	raiseFileLimit()
	if err := run(cfg, workloads); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func run(cfg config, workloads []string) error {
	if cfg.flowmeshBin == "" {
		dir, err := os.MkdirTemp("", "flowmesh-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.flowmeshBin = filepath.Join(dir, "flowmesh")
		build := exec.Command("go", "build", "-o", cfg.flowmeshBin, "./cmd/flowmesh")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building flowmesh: %w", err)
		}
	}
	fmt.Fprintf(cfg.out, "# FlowMesh vs nats-server, %s, %d CPUs\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), numCPU())
	for _, w := range workloads {
		var err error
		switch w {
		case "pubsub":
			err = benchPubSub(cfg)
		case "latency":
			err = benchLatency(cfg)
		case "idle":
			err = benchIdle(cfg)
		case "natscli":
			err = benchNatsCLI(cfg)
		case "streams":
			err = benchStreams(cfg)
		case "idlelogs":
			err = benchIdleLogs(cfg)
		case "partitions":
			err = benchPartitions(cfg)
		case "queues":
			err = benchQueues(cfg)
		case "kv":
			err = benchKV(cfg)
		case "metrics":
			err = benchMetrics(cfg)
		case "tracing":
			err = benchTracing(cfg)
		default:
			err = fmt.Errorf("unknown workload %q", w)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
	}
	return nil
}

// target is one running broker.
type target struct {
	name string
	url  string
	cmd  *exec.Cmd
}

func startFlowMesh(cfg config) (*target, error) {
	port := freePort()
	cmd := exec.Command(cfg.flowmeshBin, "server", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--http-addr", "off", "--in-memory", "--log-level", "warn", "--max-connections", "100000")
	return start("flowmesh", cmd, port)
}

func startNATS(cfg config) (*target, error) {
	port := freePort()
	conf := fmt.Sprintf("port: %d\nhost: 127.0.0.1\nmax_connections: 100000\n", port)
	f, err := os.CreateTemp("", "nats-*.conf")
	if err != nil {
		return nil, err
	}
	f.WriteString(conf)
	f.Close()
	cmd := exec.Command(cfg.peerBin, "-c", f.Name())
	return start("nats-server", cmd, port)
}

func start(name string, cmd *exec.Cmd, port int) (*target, error) {
	return startWithin(name, cmd, port, 10*time.Second)
}

func startWithin(name string, cmd *exec.Cmd, port int, within time.Duration) (*target, error) {
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // both log to stderr; the figures are the output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("%s did not listen on %s", name, addr)
		}
		time.Sleep(20 * time.Millisecond) // no readiness signal from a child process but its port
	}
	return &target{name: name, url: "nats://" + addr, cmd: cmd}, nil
}

func (t *target) stop() {
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = t.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the CPU time (user and system) the target's process and its
// descendants have used, from /proc/<pid>/stat, in clock ticks of 10 ms
// (Linux reports them in USER_HZ, 100 on every architecture the harness
// runs on); -1 if unknown. The descendants count because a peer's start
// script may run the broker as its child (rabbitmq-server runs the Erlang
// VM that way), and a child's time reaches its parent's figures only once
// the child has exited and been waited for.
func (t *target) cpuTime() time.Duration {
	root := t.cmd.Process.Pid
	self, ok := procStat(root)
	if !ok {
		return -1
	}
	total := self.cpu
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		if st, ok := procStat(pid); ok {
			parent[pid], cpu[pid] = st.ppid, st.cpu
		}
	}
	for pid, c := range cpu {
		for p, hops := parent[pid], 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == root {
				total += c
				break
			}
		}
	}
	return total
}

type procFigures struct {
	ppid int
	cpu  time.Duration
}

// procStat reads a process's parent and CPU time (user and system) from
// /proc/<pid>/stat.
func procStat(pid int) (procFigures, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procFigures{}, false
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after its closing one. ppid is field 4, utime and stime
	// fields 14 and 15: the 2nd, 12th and 13th after it.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procFigures{}, false
	}
	ppid, err0 := strconv.Atoi(f[1])
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return procFigures{}, false
	}
	return procFigures{ppid: ppid, cpu: time.Duration(u+s) * 10 * time.Millisecond}, true
}

// ownCPU is the CPU time (user and system) the harness's own process has
// used: its clients' side of a workload.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssKiB reads the resident set size of the target's process.
func (t *target) rssKiB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmRSS:"), "kB")), &kb)
			return kb
		}
	}
	return -1
}

// both runs fn against FlowMesh and nats-server, each on a fresh process.
func both[T any](cfg config, fn func(t *target) (T, error)) (fm, peer T, err error) {
	for _, starter := range []func(config) (*target, error){startFlowMesh, startNATS} {
		t, err := starter(cfg)
		if err != nil {
			return fm, peer, err
		}
		r, err := fn(t)
		t.stop()
		if err != nil {
			return fm, peer, fmt.Errorf("%s: %w", t.name, err)
		}
		if t.name == "flowmesh" {
			fm = r
		} else {
			peer = r
		}
	}
	return fm, peer, nil
}

// median runs fn cfg.runs times, alternating the brokers inside both, and
// returns the median of each side: one noisy run on a shared machine does
// not decide a ratio.
func median(cfg config, fn func(t *target) (float64, error)) (fm, peer float64, err error) {
	var fms, peers []float64
	for i := 0; i < max(cfg.runs, 1); i++ {
		a, b, err := both(cfg, fn)
		if err != nil {
			return 0, 0, err
		}
		fms, peers = append(fms, a), append(peers, b)
	}
	slices.Sort(fms)
	slices.Sort(peers)
	return fms[len(fms)/2], peers[len(peers)/2], nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// raiseFileLimit lifts the descriptor limit for the harness and the servers
// it starts (they inherit it): the idle run holds tens of thousands of
// sockets on each side. As root the hard limit can go up too.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &want)
	}
	if want > lim.Max {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return
		}
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func ratio(fm, peer float64) string {
	if peer == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", fm/peer)
}
