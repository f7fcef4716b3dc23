package monitor

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowmesh/flowmesh/kv"
	commitlog "github.com/flowmesh/flowmesh/log"
	"github.com/flowmesh/flowmesh/queue"
	"github.com/flowmesh/flowmesh/stream"
)

// Metrics are read from the node at scrape time: the engines keep their
// counters (atomics and per-queue state they keep anyway), and /metrics
// turns a snapshot of them into Prometheus families. Nothing on the hot
// path knows Prometheus, so metrics cost nothing until scraped. Labels are
// bounded: queue, topic, group, partition, command, state; never a key or
// a message id.

// Snapshot is the node's state for one scrape.
type Snapshot struct {
	Conns                               int64
	TotalConns, Rejected, SlowConsumers uint64
	StaleConns, Stalls, Holds           uint64
	BytesIn, BytesOut, MsgsIn, MsgsOut  uint64
	ProtocolErrors                      uint64
	Subscriptions                       int
	Logs                                []LogStats
	SyncGroup                           commitlog.SyncGroupStats // the logs' shared interval syncs
	SealedFiles                         commitlog.HandleStats    // the open files of the logs' sealed segments
	Topics                              []stream.TopicInfo
	Groups                              []stream.GroupInfo
	Queues                              []queue.Info
	Workers                             []queue.WorkerInfo
	KV                                  kv.Stats
	KVOps                               map[string]uint64
	// The Redis-compatible port, when it is on.
	RedisPort                   bool
	RedisConns                  int64
	RedisBytesIn, RedisBytesOut uint64
	// The latest jobs dead-lettered, oldest first (a bounded window).
	DeadLetters []DeadLetter
	// The node's Pebble stores ("meta", "kv"): background writes failed
	// since start, and whether they are failing now.
	Stores []StoreHealth
}

// StoreHealth is one Pebble store's background-write health.
type StoreHealth struct {
	Name     string
	Failures uint64
	Failing  bool
}

// DeadLetter is one job that went to its queue's dead-letter queue.
type DeadLetter struct {
	Seq      uint64 // 1, 2, ... in the order the node dead-lettered them
	Queue    string
	ID       uint64
	Attempts int
	Error    string
	TraceID  string // of the job's sampled trace, if it has one
	AtMs     int64
}

// LogStats is one commit log's counters and whose it is.
type LogStats struct {
	Kind      string // "topic" or "queue"
	Name      string
	Partition int // topics; 0 for queues
	commitlog.Stats
}

// Metered is what /metrics needs from the node.
type Metered interface {
	Metrics() Snapshot
}

// metricsHandler serves the node's families plus the Go runtime's and
// the process's.
func metricsHandler(node Metered) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		snapshotCollector{node})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}

// snapshotCollector is an unchecked collector: its families vary with
// the queues and topics that exist.
type snapshotCollector struct{ node Metered }

func (snapshotCollector) Describe(chan<- *prometheus.Desc) {}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("flowmesh_"+name, help, labels, nil)
}

var (
	dConns          = desc("connections", "Client connections open now.")
	dConnsTotal     = desc("connections_total", "Client connections accepted.")
	dRejected       = desc("connections_rejected_total", "Connections refused (over max_connections or during shutdown).")
	dSlow           = desc("slow_consumers_total", "Connections closed for falling behind max_pending.")
	dStale          = desc("stale_connections_total", "Connections closed for not answering keepalive PINGs.")
	dStalls         = desc("producer_stalls_total", "Times a producer was paused for a backed-up destination.")
	dHolds          = desc("read_holds_total", "Times a connection's reads were held while its commands waited on the disk.")
	dBytes          = desc("bytes_total", "Bytes read from and written to client connections.", "direction")
	dMsgs           = desc("messages_total", "Pub/sub messages published (in) and delivered (out).", "direction")
	dProtoErrs      = desc("protocol_errors_total", "Malformed or refused protocol lines.")
	dSubs           = desc("subscriptions", "Pub/sub subscriptions now.")
	dLogBytes       = desc("log_bytes", "Bytes of commit-log segments on disk.", "kind", "name", "partition")
	dLogFsync       = desc("log_fsync_seconds", "Commit-log fsync latency (under interval, a shared syncfs that covered the log counts as its fsync).", "kind", "name", "partition")
	dSyncfs         = desc("log_syncfs_seconds", "Latency of the syncfs calls that made many logs' interval writes durable at once.")
	dSyncfsCovered  = desc("log_syncfs_logs_total", "Log syncs done by a shared syncfs instead of an fsync each.")
	dSyncfsFailed   = desc("log_syncfs_failures_total", "Failed syncfs calls (each log of the round was then fsynced on its own).")
	dSealedOpen     = desc("log_sealed_files_open", "Sealed segments whose file is open (at most the limit, but for ones being read).")
	dSealedLimit    = desc("log_sealed_files_limit", "How many sealed segments may keep their file open while none reads them.")
	dSealedOpens    = desc("log_sealed_file_opens_total", "Sealed segment files opened again for a read.")
	dSealedCloses   = desc("log_sealed_file_closes_total", "Sealed segment files closed to stay within the limit.")
	dTopicEvents    = desc("stream_events_written_total", "Events written to a topic since the node started.", "topic")
	dTopicBytes     = desc("stream_bytes_written_total", "Bytes (encoded batches) written to a topic since the node started.", "topic")
	dTopicRetained  = desc("stream_events_retained", "Events retained in a topic.", "topic")
	dLag            = desc("stream_consumer_lag", "High-water mark minus the group's committed offset.", "topic", "group", "partition")
	dGroupMembers   = desc("stream_group_members", "Live members of a consumer group.", "topic", "group")
	dQueueJobs      = desc("queue_jobs", "Jobs in a queue by state.", "queue", "state")
	dQueueOldest    = desc("queue_oldest_ready_age_seconds", "How long the oldest ready job has waited.", "queue")
	dQueueCount     = desc("queue_jobs_total", "Job events since the node started, by kind.", "queue", "event")
	dQueueProc      = desc("queue_processing_seconds", "Time from reserve to ack.", "queue")
	dQueueLogBytes  = desc("queue_log_bytes", "Bytes of the queue's log on disk.", "queue")
	dWorkers        = desc("workers", "Registered workers by state.", "state")
	dKVOps          = desc("kv_ops_total", "KV commands run, by command (both ports).", "command")
	dKVKeys         = desc("kv_keys", "KV keys (expired ones not yet reaped included).")
	dKVExpired      = desc("kv_expired_keys_total", "KV keys removed because their TTL passed.")
	dKVUnflushed    = desc("kv_unflushed_bytes", "KV key records changed in memory and not yet written to Pebble (durable in the append-only file).")
	dKVAOFBytes     = desc("kv_aof_bytes", "KV append-only file bytes since the last checkpoint (what a restart replays).")
	dRedisConns     = desc("redis_connections", "Connections open now on the Redis-compatible port.")
	dRedisBytes     = desc("redis_bytes_total", "Bytes read from and written to the Redis-compatible port's clients.", "direction")
	dStoreFailures  = desc("store_background_errors_total", "Failed Pebble background writes (flushes, compactions), retried by Pebble.", "store")
	dStoreFailing   = desc("store_failing", "1 while a Pebble store's background writes keep failing (full disk, data dir gone); the node is not ready meanwhile.", "store")
	fsyncBoundsSecs = func() []float64 {
		b := make([]float64, len(commitlog.FsyncBounds))
		for i, d := range commitlog.FsyncBounds {
			b[i] = d.Seconds()
		}
		return b
	}()
)

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.node.Metrics()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(dConns, float64(s.Conns))
	counter(dConnsTotal, float64(s.TotalConns))
	counter(dRejected, float64(s.Rejected))
	counter(dSlow, float64(s.SlowConsumers))
	counter(dStale, float64(s.StaleConns))
	counter(dStalls, float64(s.Stalls))
	counter(dHolds, float64(s.Holds))
	counter(dBytes, float64(s.BytesIn), "in")
	counter(dBytes, float64(s.BytesOut), "out")
	counter(dMsgs, float64(s.MsgsIn), "in")
	counter(dMsgs, float64(s.MsgsOut), "out")
	counter(dProtoErrs, float64(s.ProtocolErrors))
	gauge(dSubs, float64(s.Subscriptions))

	sg := s.SyncGroup
	ch <- histogram(dSyncfs, fsyncBoundsSecs, sg.Buckets[:], time.Duration(sg.SyncfsNanos).Seconds())
	counter(dSyncfsCovered, float64(sg.Covered))
	counter(dSyncfsFailed, float64(sg.Failures))
	gauge(dSealedOpen, float64(s.SealedFiles.Open))
	gauge(dSealedLimit, float64(s.SealedFiles.Limit))
	counter(dSealedOpens, float64(s.SealedFiles.Opens))
	counter(dSealedCloses, float64(s.SealedFiles.Closes))
	written := map[string][2]uint64{}
	for _, l := range s.Logs {
		part := strconv.Itoa(l.Partition)
		gauge(dLogBytes, float64(l.SizeBytes), l.Kind, l.Name, part)
		ch <- histogram(dLogFsync, fsyncBoundsSecs, l.FsyncBuckets[:], time.Duration(l.FsyncNanos).Seconds(), l.Kind, l.Name, part)
		if l.Kind == "topic" {
			w := written[l.Name]
			w[0] += l.Records
			w[1] += l.BytesWritten
			written[l.Name] = w
		}
	}
	for _, t := range s.Topics {
		w := written[t.Name]
		counter(dTopicEvents, float64(w[0]), t.Name)
		counter(dTopicBytes, float64(w[1]), t.Name)
		gauge(dTopicRetained, float64(t.Events), t.Name)
	}
	for _, g := range s.Groups {
		for _, p := range g.Partitions {
			gauge(dLag, float64(p.Lag), g.Topic, g.Group, strconv.Itoa(p.Partition))
		}
		gauge(dGroupMembers, float64(len(g.Members)), g.Topic, g.Group)
	}
	for _, q := range s.Queues {
		gauge(dQueueJobs, float64(q.Ready), q.Name, "ready")
		gauge(dQueueJobs, float64(q.Delayed), q.Name, "delayed")
		gauge(dQueueJobs, float64(q.InFlight), q.Name, "in_flight")
		gauge(dQueueJobs, float64(q.Dead), q.Name, "dead")
		gauge(dQueueOldest, float64(q.OldestMs)/1000, q.Name)
		for _, e := range []struct {
			event string
			n     uint64
		}{{"enqueued", q.Counters.Enqueued}, {"reserved", q.Counters.Reserved}, {"acked", q.Counters.Acked},
			{"nacked", q.Counters.Nacked}, {"expired", q.Counters.Expired}, {"dead_lettered", q.Counters.DeadLettered},
			{"redriven", q.Counters.Redriven}, {"deduplicated", q.Counters.Deduplicated}} {
			counter(dQueueCount, float64(e.n), q.Name, e.event)
		}
		bounds := make([]float64, len(q.Processing.BoundsMs))
		for i, b := range q.Processing.BoundsMs {
			bounds[i] = b / 1000
		}
		ch <- histogram(dQueueProc, bounds, q.Processing.Counts, q.Processing.SumMs/1000, q.Name)
		gauge(dQueueLogBytes, float64(q.Bytes), q.Name)
	}
	states := map[string]int{"idle": 0, "busy": 0, "gone": 0}
	for _, w := range s.Workers {
		states[w.State]++
	}
	for st, n := range states {
		gauge(dWorkers, float64(n), st)
	}
	for cmd, n := range s.KVOps {
		counter(dKVOps, float64(n), cmd)
	}
	gauge(dKVKeys, float64(s.KV.Keys))
	gauge(dKVUnflushed, float64(s.KV.UnflushedBytes))
	gauge(dKVAOFBytes, float64(s.KV.AOFBytes))
	if s.RedisPort {
		gauge(dRedisConns, float64(s.RedisConns))
		counter(dRedisBytes, float64(s.RedisBytesIn), "in")
		counter(dRedisBytes, float64(s.RedisBytesOut), "out")
	}
	counter(dKVExpired, float64(s.KV.Expired))
	for _, st := range s.Stores {
		counter(dStoreFailures, float64(st.Failures), st.Name)
		failing := 0.0
		if st.Failing {
			failing = 1
		}
		gauge(dStoreFailing, failing, st.Name)
	}
}

// histogram turns per-bucket counts (the last one unbounded) into a
// Prometheus histogram, whose buckets are cumulative.
func histogram(d *prometheus.Desc, bounds []float64, counts []uint64, sum float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		if i < len(counts) {
			cum += counts[i]
		}
		buckets[b] = cum
	}
	if len(counts) > len(bounds) {
		cum += counts[len(bounds)]
	}
	return prometheus.MustNewConstHistogram(d, cum, sum, buckets, labels...)
}
