package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/monitor"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetrics runs a little of everything (pub/sub, a stream with a
// consumer group, a queue with a worker, KV), then scrapes /metrics,
// parses it with the Prometheus text parser and checks that every family
// the monitor promises is there, with values that follow the workload.
func TestMetrics(t *testing.T) {
	s := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Fsync: "always", RESPAddr: "127.0.0.1:0"})
	rc := dialRESP(t, s.RESPAddr().String(), 5*time.Second)
	if r := rc.do([]string{"PING"}); r != "PONG" {
		t.Fatalf("redis port: %#v", r)
	}
	w := dial(t, s)
	w.send("SUB greet 1\r\nPUB greet 2\r\nhi\r\n")
	w.expect("MSG greet 1 2", "hi")
	w.send("TCREATE orders partitions=2\r\nSWRITE orders key=a 3\r\none\r\nSWRITE orders key=a 3\r\ntwo\r\n")
	w.expect("+OK 2")
	w.line() // the writes' positions: they vary with the key's partition
	w.line()
	w.send("QPUT jobs 1\r\nx\r\nQPUT jobs 1\r\ny\r\n")
	w.expect("+OK 0", "+OK 1")
	// The QGET goes after the enqueues' replies: a job enters the queue when
	// it is durable, so a QGET pipelined behind its QPUT may not see it yet.
	w.send("QGET jobs max=1\r\n")
	job := w.line() // JOB jobs <id> 1 <ns> 1
	w.line()        // payload
	w.expect("+OK 1")
	var id string
	if _, err := fmtSscan(job[len("JOB jobs "):], &id); err != nil {
		t.Fatalf("job frame %q", job)
	}
	w.send("QACK jobs " + id + " 1\r\n")
	w.expect("+OK")
	w.send("KV SET k v\r\nKV GET k\r\nKV GET nope\r\n")
	w.expect("RES 5", "+OK", "", "RES 7", "$1", "v", "", "RES 3", "_", "")
	// A committed group offset, for the lag family.
	w.send("GRESET orders billing earliest\r\n")
	w.line()

	resp, err := http.Get("http://" + s.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{
		"flowmesh_connections", "flowmesh_connections_total", "flowmesh_bytes_total", "flowmesh_messages_total",
		"flowmesh_slow_consumers_total", "flowmesh_protocol_errors_total", "flowmesh_subscriptions",
		"flowmesh_log_bytes", "flowmesh_log_fsync_seconds", "flowmesh_log_syncfs_seconds", "flowmesh_log_syncfs_logs_total",
		"flowmesh_log_syncfs_failures_total", "flowmesh_log_sealed_files_open", "flowmesh_log_sealed_files_limit",
		"flowmesh_log_sealed_file_opens_total", "flowmesh_log_sealed_file_closes_total",
		"flowmesh_stream_events_written_total", "flowmesh_stream_bytes_written_total", "flowmesh_stream_events_retained",
		"flowmesh_queue_jobs", "flowmesh_queue_oldest_ready_age_seconds", "flowmesh_queue_jobs_total",
		"flowmesh_queue_processing_seconds", "flowmesh_workers",
		"flowmesh_kv_ops_total", "flowmesh_kv_keys", "flowmesh_kv_expired_keys_total",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
	} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("family %s missing", name)
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return metricValue(m)
		}
		t.Fatalf("%s%v missing", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"flowmesh_connections", nil, 1},
		{"flowmesh_subscriptions", nil, 1},
		{"flowmesh_messages_total", map[string]string{"direction": "in"}, 1},
		{"flowmesh_stream_events_written_total", map[string]string{"topic": "orders"}, 2},
		{"flowmesh_stream_events_retained", map[string]string{"topic": "orders"}, 2},
		{"flowmesh_queue_jobs", map[string]string{"queue": "jobs", "state": "ready"}, 1},
		{"flowmesh_queue_jobs_total", map[string]string{"queue": "jobs", "event": "enqueued"}, 2},
		{"flowmesh_queue_jobs_total", map[string]string{"queue": "jobs", "event": "acked"}, 1},
		{"flowmesh_queue_processing_seconds", map[string]string{"queue": "jobs"}, 1}, // sample count
		{"flowmesh_kv_ops_total", map[string]string{"command": "get"}, 2},
		{"flowmesh_kv_ops_total", map[string]string{"command": "set"}, 1},
		{"flowmesh_kv_keys", nil, 1},
		{"flowmesh_kv_ops_total", map[string]string{"command": "ping"}, 1},
		{"flowmesh_redis_connections", nil, 1},
		{"flowmesh_stream_consumer_lag", map[string]string{"topic": "orders", "group": "billing", "partition": "0"}, 2},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Fsyncs happened (fsync=always) and the histogram counted them.
	if n := value("flowmesh_log_fsync_seconds", map[string]string{"kind": "queue", "name": "jobs"}); n < 1 {
		t.Errorf("queue log fsyncs counted: %v", n)
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// TestAutoscale: the monitoring port recommends workers per queue under
// its configured policy (the default elsewhere), with reasons; a policy
// that names nothing is refused at start.
func TestAutoscale(t *testing.T) {
	pol := monitor.ScalePolicy{Queue: "jobs", MinWorkers: 1, MaxWorkers: 5, BacklogPerWorker: 10}
	s := startServer(t, Config{HTTPAddr: "127.0.0.1:0", Autoscale: []monitor.ScalePolicy{pol}})
	w := dial(t, s)
	w.send("QWORKER w1 jobs concurrency=4\r\n")
	w.line()
	for i := 0; i < 35; i++ {
		w.send("QPUT jobs 1\r\nx\r\n")
		w.line()
	}
	w.send("QPUT other 1\r\nx\r\n")
	w.line()
	resp, err := http.Get("http://" + s.HTTPAddr().String() + "/api/v1/autoscale")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []monitor.Recommendation
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatal(err)
	}
	got := map[string]monitor.Recommendation{}
	for _, r := range recs {
		got[r.Target] = r
	}
	if r := got["queue:jobs"]; r.ScaleFrom != 1 || r.ScaleTo != 4 || len(r.BasedOn) == 0 ||
		!strings.Contains(r.BasedOn[0], "backlog 35 at 10 per worker") {
		t.Fatalf("queue:jobs = %+v (all: %+v)", r, recs)
	}
	if r := got["queue:other"]; r.ScaleFrom != 0 || r.ScaleTo != 1 {
		t.Fatalf("queue:other under the default policy = %+v", r)
	}

	for path, code := range map[string]int{"/api/v1/autoscale/queue/jobs": 200, "/api/v1/autoscale/queue/nope": 404} {
		resp, err := http.Get("http://" + s.HTTPAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		var r monitor.Recommendation
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != code || (code == 200 && r.ScaleTo != 4) {
			t.Fatalf("%s: %d %+v", path, resp.StatusCode, r)
		}
	}

	bad := Config{Autoscale: []monitor.ScalePolicy{{MinWorkers: 1}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "autoscale[0] must name a queue") {
		t.Fatalf("policy naming nothing: %v", err)
	}
}
