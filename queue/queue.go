package queue

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/internal/repeatlog"
	"github.com/flowmesh/flowmesh/kv/store"
	commitlog "github.com/flowmesh/flowmesh/log"
)

// A queue's durable state is its commit log (Dir/<queue>/):
//
//   - job records: every job as enqueued. The record's offset is the
//     job's ID, its key the idempotency key, its headers the job header
//     (priority, max attempts, run-at time, then the producer's NATS/1.0
//     block) and its value the payload. An enqueue is acknowledged when
//     its record is durable per the queue's fsync policy, through the
//     log's group commit.
//   - state records, behind them: every state change of a job (reserved,
//     nacked, delayed, dead, acknowledged or purged: the 'A' marker), as
//     the queue's goroutine gathers them, one record (or a few) per round
//     for all the acks, nacks and reservations that came meanwhile. They
//     share the log's group commit with the enqueues of the moment and
//     are durable before they are acknowledged or delivered.
//
// Recovery reads the log from the released mark on, job records and the
// state records behind them in order (a job's state records come after
// its own record). In-flight jobs come back in flight with their
// deadline, so they are delivered again once it passes, the attempt
// counted. As the oldest jobs are acknowledged, the queue releases the log
// below its oldest live job (or the oldest job whose idempotency key is
// still inside the dedup window) and the log deletes whole segments below
// it, state records with them: disk use follows the live jobs.
//
// Until 2026-12-04 the states were Pebble keys (keyspace Q,
// "s/<queue>\x00<ID, 8 bytes big-endian>"); recovery still reads them
// first (a state record overrides one), and release deletes them as the
// log moves past their jobs.

// Queue is one job queue.
type Queue struct {
	e    *Engine
	name string
	log  *commitlog.Log
	rdr  *commitlog.Reader // the queue goroutine's
	// persistLog spaces the lines of a store that keeps failing: one a
	// batch would be a thousand a second.
	persistLog repeatlog.Log

	mu      sync.Mutex
	cfg     Config
	st      *State
	keys    map[string][]func(uint64, bool, error) // enqueues with a key whose append is in flight
	waiters []*waiter
	// consumers get jobs pushed while they have room (consumer.go);
	// nextConsumer is whose turn is first.
	consumers    []*Consumer
	cancelled    []func() // Cancel's done calls, run after the next deliveries
	dead         []Job    // dead-lettered by advance, announced after the next batch
	nextConsumer int
	ready        []delivery // reservations decided, waiting for their write
	ops          []op       // state changes not yet written
	opsCbs       []func(error)
	released     uint64
	// applied: every record below it is in the state machine (its
	// append's completion ran). The log publishes records before it
	// completes their appends, so its high-water mark can include a job
	// the state does not hold yet: the log is released up to here, never
	// past a job about to be added.
	applied uint64
	// pebbleStatesTo: job states an older version kept in Pebble remain
	// below this ID (found at recovery, deleted as the log is released
	// past them); 0: none left.
	pebbleStatesTo uint64
	closed         error
	recovery       RecoveryStats
	hist           histogram // processing time: reserve to ack
	rates          rates

	// fresh holds the payloads of jobs enqueued and not yet delivered, up
	// to freshMax bytes: most jobs are reserved soon after they are
	// enqueued, and reading each back from the log (a pread of its batch)
	// was a fifth of the server's time in the enqueue-reserve-ack loop.
	fresh      map[uint64]freshJob
	freshBytes int

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// RecoveryStats say what opening the queue took.
type RecoveryStats struct {
	Jobs     int           `json:"jobs"`
	Duration time.Duration `json:"duration_ns"`
}

type op struct {
	id  uint64
	val []byte // encoded state; nil: the 'A' marker
}

type waiter struct {
	holder     *Worker     // nil for an anonymous reserver
	gone       func() bool // the reserver went away (its connection closed); nil: never
	max        int
	visibility time.Duration
	deadline   int64 // Unix ns; 0: answer at once
	cb         func([]Delivery, error)
	standing   bool // a Consumer's: answered many times, never with an error for one batch
}

type freshJob struct{ hdr, payload []byte }

const (
	freshMax    = 64 << 20 // bytes of payloads kept for delivery
	freshMaxJob = 16 << 10 // larger jobs are read from the log
)

// Delivery is a reserved job handed to a worker.
type Delivery struct {
	ID         uint64
	Attempt    int
	Priority   int
	EnqueuedAt int64
	Deadline   int64
	Header     []byte // the producer's NATS/1.0 block, nil if none
	Payload    []byte
	LastError  string
	Trace      *[TraceSize]byte // the job's sampled trace context, if any
}

func stateKeyPrefix(q string) []byte { return []byte("s/" + q + "\x00") }

func stateKey(q string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(stateKeyPrefix(q), id)
}

func logMetaPrefix(q string) string { return "q:" + q + "/" }

// State record: where(1) | uvarint attempts | varint time | uvarint len | last error.
const ackedMarker = 'A'

func encodeState(j *Job) []byte {
	b := []byte{byte(j.Where)}
	b = binary.AppendUvarint(b, uint64(j.Attempts))
	var t int64
	switch j.Where {
	case Delayed:
		t = j.ReadyAt
	case InFlight:
		t = j.Deadline
	case Dead:
		t = j.DeadAt
	}
	b = binary.AppendVarint(b, t)
	b = binary.AppendUvarint(b, uint64(len(j.LastError)))
	return append(b, j.LastError...)
}

func decodeState(b []byte, j *Job) (acked bool, err error) {
	if len(b) == 1 && b[0] == ackedMarker {
		return true, nil
	}
	if len(b) < 1 {
		return false, errors.New("empty state")
	}
	j.Where = Where(b[0])
	b = b[1:]
	a, n := binary.Uvarint(b)
	if n <= 0 {
		return false, errors.New("bad attempts")
	}
	j.Attempts, b = int(a), b[n:]
	t, n := binary.Varint(b)
	if n <= 0 {
		return false, errors.New("bad time")
	}
	b = b[n:]
	switch j.Where {
	case Delayed:
		j.ReadyAt = t
	case InFlight:
		j.Deadline = t
	case Dead:
		j.DeadAt = t
	case Ready:
	default:
		return false, fmt.Errorf("bad state %d", j.Where)
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return false, errors.New("bad error text")
	}
	j.LastError = string(b[n : n+int(l)])
	return false, nil
}

// State records: the log's records of job state changes, told from job
// records by their header, one byte stateRecordKind (a job header starts
// with its version, 1). Value: for each change, uvarint job ID | uvarint
// length | the state as encodeState writes it, or the 'A' marker.
const stateRecordKind = 2

// maxStateRecord bounds one state record's value, far under the log's
// batch limit.
const maxStateRecord = 256 << 10

var stateRecordHeader = []byte{stateRecordKind}

// encodeStateRecords packs ops into state records.
func encodeStateRecords(ops []op) []commitlog.Record {
	var recs []commitlog.Record
	var v []byte
	for _, o := range ops {
		val := o.val
		if val == nil {
			val = ackedState
		}
		if len(v) > 0 && len(v)+len(val)+2*binary.MaxVarintLen64 > maxStateRecord {
			recs = append(recs, commitlog.Record{Headers: stateRecordHeader, Value: v})
			v = nil
		}
		v = binary.AppendUvarint(v, o.id)
		v = binary.AppendUvarint(v, uint64(len(val)))
		v = append(v, val...)
	}
	return append(recs, commitlog.Record{Headers: stateRecordHeader, Value: v})
}

var ackedState = []byte{ackedMarker}

// isStateRecord reports whether a log record is a state record.
func isStateRecord(hdr []byte) bool { return len(hdr) == 1 && hdr[0] == stateRecordKind }

// decodeStateRecord calls fn for each change in a state record's value.
func decodeStateRecord(v []byte, fn func(id uint64, state []byte)) error {
	for len(v) > 0 {
		id, n := binary.Uvarint(v)
		if n <= 0 {
			return errors.New("queue: bad job ID in state record")
		}
		v = v[n:]
		l, n := binary.Uvarint(v)
		if n <= 0 || uint64(len(v)-n) < l {
			return errors.New("queue: bad state length in state record")
		}
		fn(id, v[n:n+int(l)])
		v = v[n+int(l):]
	}
	return nil
}

// Job record header: uvarint version(1) | varint priority | uvarint max
// attempts | varint run-at (Unix ns, 0: at once) | the producer's header block.
func encodeJobHeader(dst []byte, prio, maxAttempts int, runAt int64, hdr []byte) []byte {
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, int64(prio))
	dst = binary.AppendUvarint(dst, uint64(maxAttempts))
	dst = binary.AppendVarint(dst, runAt)
	return append(dst, hdr...)
}

func decodeJobHeader(b []byte) (prio, maxAttempts int, runAt int64, hdr []byte, err error) {
	if len(b) < 1 || b[0] != 1 {
		return 0, 0, 0, nil, errors.New("queue: bad job record header")
	}
	b = b[1:]
	p, n := binary.Varint(b)
	if n <= 0 {
		return 0, 0, 0, nil, errors.New("queue: bad priority in job record")
	}
	b = b[n:]
	m, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, 0, nil, errors.New("queue: bad max attempts in job record")
	}
	b = b[n:]
	r, n := binary.Varint(b)
	if n <= 0 {
		return 0, 0, 0, nil, errors.New("queue: bad run-at in job record")
	}
	b = b[n:]
	if len(b) > 0 {
		hdr = b
	}
	return int(p), int(m), r, hdr, nil
}

func (e *Engine) openQueue(name string, cfg Config) (*Queue, error) {
	start := time.Now()
	pol, _ := commitlog.ParseSyncPolicy(cfg.Fsync)
	l, err := commitlog.Open(filepath.Join(e.opts.Dir, name), commitlog.Options{
		FS: e.opts.FS, Codec: commitlog.CodecS2, Sync: pol, SyncInterval: e.opts.FsyncInterval,
		SegmentBytes: e.opts.SegmentBytes, PreallocateBytes: e.opts.PreallocateBytes, Logger: e.opts.Logger, Now: e.opts.Now,
		SyncGroup: e.opts.SyncGroup, Handles: e.opts.Handles, Meta: e.opts.Store.Namespace(store.KeyspaceLog, logMetaPrefix(name)),
		OnPublish: e.opts.afterPublish,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: open %q: %w", name, err)
	}
	q := &Queue{e: e, name: name, log: l, rdr: l.NewReader(), cfg: cfg, st: NewState(cfg.policy(), e.opts.Rand), hist: newHistogram(),
		keys: make(map[string][]func(uint64, bool, error)), wake: make(chan struct{}, 1), fresh: make(map[uint64]freshJob),
		stop: make(chan struct{}), done: make(chan struct{})}
	q.st.SetPaused(cfg.Paused)
	if err := q.recover(); err != nil {
		l.Close()
		return nil, err
	}
	q.recovery.Duration = time.Since(start)
	if q.recovery.Jobs > 0 {
		e.opts.Logger.Info("queue: recovered", "queue", name, "jobs", q.recovery.Jobs, "took", q.recovery.Duration)
	}
	go q.run()
	return q, nil
}

// recover rebuilds the state machine from the log: its job records, then
// the state records behind them, each change applying to a job read
// before it (a job's state records come after its own record, so all of
// a live job's are above the released mark). States an older version kept
// in Pebble are read first; a state record overrides them.
func (q *Queue) recover() error {
	q.released = q.log.Released()
	states := make(map[uint64][]byte)
	prefix := stateKeyPrefix(q.name)
	err := q.e.opts.Store.Scan(store.KeyspaceQueue, prefix, func(k, v []byte) bool {
		if len(k) == len(prefix)+8 {
			states[binary.BigEndian.Uint64(k[len(prefix):])] = append([]byte(nil), v...)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("queue: recover %q: %w", q.name, err)
	}
	for id := range states {
		q.pebbleStatesTo = max(q.pebbleStatesTo, id+1)
	}
	now := q.e.opts.Now().UnixNano()
	type found struct {
		j     *Job
		acked bool
	}
	var jobs []found // in log order: by ID
	apply := func(f *found, st []byte) {
		j := f.j
		j.Where, j.Attempts, j.ReadyAt, j.Deadline, j.DeadAt, j.LastError = 0, 0, 0, 0, 0, ""
		acked, err := decodeState(st, j)
		if err != nil {
			q.e.opts.Logger.Error("queue: unreadable job state; job made ready", "queue", q.name, "id", f.j.ID, "err", err)
			f.j.Where = Ready
		}
		f.acked = acked
	}
	rdr := q.log.NewReader()
	for off := q.released; off < q.log.HighWater(); {
		recs, err := rdr.Read(off, 4<<20)
		if err != nil {
			return fmt.Errorf("queue: recover %q at job %d: %w", q.name, off, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			off = r.Offset + 1
			if isStateRecord(r.Headers) {
				err := decodeStateRecord(r.Value, func(id uint64, st []byte) {
					i, ok := slices.BinarySearchFunc(jobs, id, func(f found, id uint64) int { return cmp.Compare(f.j.ID, id) })
					if ok {
						apply(&jobs[i], st)
					} // else: a job below the released mark, gone
				})
				if err != nil {
					q.e.opts.Logger.Error("queue: unreadable state record; the changes after its last readable one are lost", "queue", q.name, "offset", r.Offset, "err", err)
				}
				continue
			}
			j := &Job{ID: r.Offset, EnqueuedAt: r.Timestamp, Key: string(r.Key), Size: len(r.Value)}
			prio, maxAtt, runAt, hdr, err := decodeJobHeader(r.Headers)
			if err != nil {
				q.e.opts.Logger.Error("queue: unreadable job skipped", "queue", q.name, "id", r.Offset, "err", err)
				continue
			}
			if q.e.opts.TraceOf != nil && hdr != nil {
				j.Trace = q.e.opts.TraceOf(hdr)
			}
			j.Priority, j.MaxAttempts = prio, maxAtt
			if runAt > now {
				j.Where, j.ReadyAt = Delayed, runAt
			} else {
				j.Where = Ready
			}
			jobs = append(jobs, found{j: j})
			if st, ok := states[j.ID]; ok {
				apply(&jobs[len(jobs)-1], st)
			}
		}
	}
	q.applied = q.log.HighWater()
	for _, f := range jobs {
		if f.acked {
			// Its key still answers inside the dedup window.
			q.st.RememberKey(f.j.Key, f.j.ID, f.j.EnqueuedAt, now)
			continue
		}
		q.st.Restore(f.j, now)
		q.recovery.Jobs++
	}
	// The queue opens as of now: delayed jobs that came due and visibility
	// timeouts that passed while the node was down are applied before
	// anyone looks (their writes go with the goroutine's first batch).
	q.mu.Lock()
	q.advance(now)
	q.mu.Unlock()
	return nil
}

// LogStats returns the counters of the queue's commit log.
func (q *Queue) LogStats() commitlog.Stats { return q.log.Stats() }

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// Config is the queue's settings.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg
}

func (q *Queue) setConfig(c Config) {
	q.mu.Lock()
	q.cfg = c
	q.st.SetPolicy(c.policy())
	q.st.SetPaused(c.Paused)
	q.mu.Unlock()
	pol, _ := commitlog.ParseSyncPolicy(c.Fsync)
	q.log.Tune(commitlog.Tuning{Sync: pol, Codec: commitlog.CodecS2})
	q.kick()
}

func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// EnqueueRequest is one job to add.
type EnqueueRequest struct {
	Payload     []byte
	Header      []byte // the producer's NATS/1.0 block (trace ids travel here)
	Delay       time.Duration
	RunAt       time.Time // if set, instead of Delay
	Priority    int
	Key         string           // idempotency key
	MaxAttempts int              // 0: the queue's
	Trace       *[TraceSize]byte // the enqueue's sampled trace context, if any
}

// Enqueue adds a job and calls cb with its ID once it is durable per the
// queue's fsync policy, or with the first job's ID and dup=true if Key was
// used inside the dedup window. It never blocks on the disk.
func (q *Queue) Enqueue(r *EnqueueRequest, cb func(id uint64, dup bool, err error)) {
	if r.Delay < 0 || r.Delay > MaxDelay {
		cb(0, false, ErrBadDelay)
		return
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > MaxAttemptsLimit {
		cb(0, false, ErrBadAttempts)
		return
	}
	wall := q.e.opts.Now()
	now := wall.UnixNano()
	runAt := int64(0)
	switch {
	case !r.RunAt.IsZero() && r.RunAt.After(wall.Add(MaxDelay)):
		cb(0, false, fmt.Errorf("%w: run at %v", ErrBadDelay, r.RunAt))
		return
	case !r.RunAt.IsZero() && r.RunAt.After(wall):
		runAt = r.RunAt.UnixNano()
	case r.RunAt.IsZero() && r.Delay > 0:
		runAt = now + int64(r.Delay)
	}
	// A run-at time in the past (even before 1678, where UnixNano would
	// not hold it) means now: runAt stays 0.
	q.mu.Lock()
	if q.closed != nil {
		err := q.closed
		q.mu.Unlock()
		cb(0, false, err)
		return
	}
	if n := len(r.Payload) + len(r.Header) + len(r.Key); n > q.cfg.MaxJobBytes {
		max := q.cfg.MaxJobBytes
		q.mu.Unlock()
		cb(0, false, fmt.Errorf("%w: %d bytes, %q takes at most %d", ErrTooLarge, n, q.name, max))
		return
	}
	if r.Key != "" {
		if id, ok := q.st.Dedup(r.Key, now); ok {
			q.st.counts.Deduplicated++
			q.mu.Unlock()
			cb(id, true, nil)
			return
		}
		if pending, ok := q.keys[r.Key]; ok {
			// The first enqueue with this key is still being written: this
			// one gets its answer.
			q.keys[r.Key] = append(pending, func(id uint64, _ bool, err error) { cb(id, err == nil, err) })
			q.mu.Unlock()
			return
		}
		q.keys[r.Key] = nil
	}
	q.mu.Unlock()
	hdr := encodeJobHeader(make([]byte, 0, 16+len(r.Header)), r.Priority, r.MaxAttempts, runAt, r.Header)
	key, prio, maxAtt, size, tr := r.Key, r.Priority, r.MaxAttempts, len(r.Payload), r.Trace
	var fresh *freshJob
	if n := len(r.Payload) + len(r.Header); n <= freshMaxJob {
		// A second copy, made here because r's bytes are the caller's and
		// the log's copy is inside a batch being built.
		fresh = &freshJob{hdr: cloneBytes(r.Header), payload: append([]byte{}, r.Payload...)}
	}
	recs := [1]commitlog.Record{{Key: []byte(r.Key), Headers: hdr, Value: r.Payload}}
	q.log.Append(recs[:], func(id uint64, err error) {
		q.mu.Lock()
		var others []func(uint64, bool, error)
		if key != "" {
			others = q.keys[key]
			delete(q.keys, key)
		}
		if err == nil {
			q.applied = max(q.applied, id+1)
			ts := q.e.opts.Now().UnixNano()
			q.st.Enqueue(&Job{ID: id, Priority: prio, MaxAttempts: maxAtt, EnqueuedAt: ts, Key: key, Size: size, Trace: tr}, runAt)
			if fresh != nil && q.freshBytes+len(fresh.payload)+len(fresh.hdr) <= freshMax {
				q.fresh[id] = *fresh
				q.freshBytes += len(fresh.payload) + len(fresh.hdr)
			}
		}
		q.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("queue: enqueue to %q: %w", q.name, err)
		} else {
			q.kick() // a waiting worker may take it
		}
		cb(id, false, err)
		for _, o := range others {
			o(id, false, err)
		}
	})
}

// Reserve asks for up to max jobs, waiting up to wait for at least one
// (long poll); visibility 0 takes the queue's. cb runs on the queue's
// goroutine once the reservations are durable, with the jobs (none if the
// wait ran out) or an error.
func (q *Queue) Reserve(max int, wait, visibility time.Duration, cb func([]Delivery, error)) {
	q.ReserveFor(nil, nil, max, wait, visibility, cb)
}

// ReserverGone wakes the queue to end the waiting reserves whose gone
// function now reports true (their connection closed; they are answered
// with ErrClosed). Without it they would wait for a job or their deadline,
// holding a node's shutdown drain that long.
func (q *Queue) ReserverGone() { q.kick() }

// ReserveFor is Reserve on behalf of a registered worker (nil: none),
// whose counters then follow the jobs it holds, whichever connection acks
// them. gone, if set, says the reserver has left: a waiting reserve whose
// connection closed must not take jobs nobody will process.
func (q *Queue) ReserveFor(wk *Worker, gone func() bool, max int, wait, visibility time.Duration, cb func([]Delivery, error)) {
	if max < 1 {
		cb(nil, fmt.Errorf("%w: reserve of %d jobs", ErrBadConfig, max))
		return
	}
	if visibility > MaxDelay {
		cb(nil, fmt.Errorf("%w: visibility %v, at most %v", ErrBadConfig, visibility, MaxDelay))
		return
	}
	now := q.e.opts.Now()
	w := &waiter{holder: wk, gone: gone, max: max, visibility: visibility, cb: cb}
	q.mu.Lock()
	if q.closed != nil {
		err := q.closed
		q.mu.Unlock()
		cb(nil, err)
		return
	}
	// Decide now, so the reservation sees the queue as the commands before
	// it left it (a pipelined QPAUSE, an ack); only the write and the
	// delivery wait for the queue's goroutine.
	q.advance(now.UnixNano())
	if len(q.waiters) == 0 {
		if jobs := q.st.Reserve(max, now.UnixNano(), visibility); len(jobs) > 0 {
			for _, j := range jobs {
				j.Holder = wk
				q.ops = append(q.ops, op{id: j.ID, val: encodeState(j)})
			}
			wk.reserved(len(jobs))
			q.ready = append(q.ready, delivery{w: w, jobs: jobs})
			q.mu.Unlock()
			q.kick()
			return
		}
	}
	// Checked under q.mu, as EndLongPolls ends the waits under it: a
	// reserve either sees the drain or is among the waits it ends.
	if wait <= 0 || q.e.draining.Load() {
		q.mu.Unlock()
		cb(nil, nil)
		return
	}
	w.deadline = now.Add(wait).UnixNano()
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	q.kick()
}

// Ack completes a reserved job (attempt is the one it was delivered with);
// cb runs once that is durable, with how long the job was in flight.
func (q *Queue) Ack(id uint64, attempt int, cb func(took time.Duration, err error)) {
	var took time.Duration
	var wk *Worker
	q.change(func(err error) {
		if err == nil {
			wk.done(true, took)
		}
		cb(took, err)
	}, func() ([]op, error) {
		var reservedAt int64
		j := q.st.Lookup(id)
		if j != nil {
			reservedAt = j.ReservedAt
			wk = holderWorker(j.Holder)
		}
		if err := q.st.Ack(id, attempt); err != nil {
			return nil, err
		}
		if j != nil {
			letGo(j)
		}
		if reservedAt > 0 {
			took = time.Duration(q.e.opts.Now().UnixNano() - reservedAt)
			q.hist.observe(took)
		}
		return []op{{id: id}}, nil
	})
}

// JobTrace is the sampled trace context of a job the queue holds, or nil.
func (q *Queue) JobTrace(id uint64) *[TraceSize]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.st.Lookup(id); j != nil {
		return j.Trace
	}
	return nil
}

// Nack fails a reserved attempt: the job is retried or dead-lettered per
// o and the queue's policy.
func (q *Queue) Nack(id uint64, attempt int, o NackOpts, cb func(Where, time.Duration, error)) {
	var where Where
	var took time.Duration
	var wk *Worker
	var dead Job // a copy of the job, if this nack dead-lettered it
	q.change(func(err error) {
		if err == nil {
			wk.done(false, took)
			if where == Dead && q.e.opts.DeadLettered != nil {
				q.e.opts.DeadLettered(q, dead)
			}
		}
		cb(where, took, err)
	}, func() ([]op, error) {
		if j := q.st.Lookup(id); j != nil && j.Where == InFlight && j.Attempts == attempt {
			took = time.Duration(q.e.opts.Now().UnixNano() - j.ReservedAt)
			wk = holderWorker(j.Holder)
			letGo(j)
		}
		w, err := q.st.Nack(id, attempt, q.e.opts.Now().UnixNano(), o)
		if err != nil {
			return nil, err
		}
		where = w
		j := q.st.Lookup(id)
		if w == Dead {
			dead = *j
		}
		return []op{{id: id, val: encodeState(j)}}, nil
	})
}

// Touch extends a reserved job's visibility timeout.
func (q *Queue) Touch(id uint64, attempt int, ext time.Duration, cb func(error)) {
	q.change(cb, func() ([]op, error) {
		if err := q.st.Touch(id, attempt, q.e.opts.Now().UnixNano(), ext); err != nil {
			return nil, err
		}
		return []op{{id: id, val: encodeState(q.st.Lookup(id))}}, nil
	})
}

// change applies fn to the state at once (so no later reserve sees the
// old state) and queues its writes; cb runs when they are durable.
func (q *Queue) change(cb func(error), fn func() ([]op, error)) {
	q.mu.Lock()
	if q.closed != nil {
		err := q.closed
		q.mu.Unlock()
		cb(err)
		return
	}
	ops, err := fn()
	if err != nil {
		q.mu.Unlock()
		cb(err)
		return
	}
	q.ops = append(q.ops, ops...)
	q.opsCbs = append(q.opsCbs, cb)
	q.mu.Unlock()
	q.kick()
}

// run is the queue's goroutine: it applies time, writes state changes in
// batches, serves waiting reservers and releases acknowledged log space.
func (q *Queue) run() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastRelease := time.Time{}
	for {
		now := q.e.opts.Now()
		q.mu.Lock()
		q.advance(now.UnixNano())
		q.rates.sample(now.UnixNano(), q.st.counts)
		dead := q.dead // announced once their state write below is durable
		q.dead = nil
		deliveries := append(q.ready, q.serveWaiters(now.UnixNano())...)
		deliveries = append(deliveries, q.serveConsumers(now.UnixNano())...)
		q.ready = nil
		ops, cbs := q.ops, q.opsCbs
		q.ops, q.opsCbs = nil, nil
		// Consumers cancelled by now get no job after these deliveries.
		cancelled := q.cancelled
		q.cancelled = nil
		q.mu.Unlock()

		err := q.persist(ops)
		for _, cb := range cbs {
			cb(err)
		}
		if err == nil {
			for _, j := range dead {
				q.e.opts.DeadLettered(q, j)
			}
		}
		q.deliver(deliveries, err)
		for _, done := range cancelled {
			done()
		}
		if now.Sub(lastRelease) >= 100*time.Millisecond {
			q.release(now)
			lastRelease = now
		}

		q.mu.Lock()
		next := int64(0)
		if t, ok := q.st.NextWake(); ok {
			next = t
		}
		for _, w := range q.waiters {
			if w.deadline > 0 && (next == 0 || w.deadline < next) {
				next = w.deadline
			}
		}
		busy := len(q.ops) > 0 || len(q.ready) > 0 || len(q.cancelled) > 0 || q.readyForWaiters() || q.readyForConsumers()
		q.mu.Unlock()
		if busy {
			continue
		}
		d := time.Hour
		if next > 0 {
			d = max(time.Duration(next-q.e.opts.Now().UnixNano()), 0)
		}
		timer.Reset(d)
		select {
		case <-q.wake:
		case <-timer.C:
		case <-q.stop:
			return
		}
	}
}

// advance applies time to the state: due delayed jobs become ready, and
// in-flight jobs whose visibility timeout passed go back to the queue or
// to the dead letters. Their state writes join the next batch, their
// holders get their places back (a consumer's window), and the
// dead-lettered ones are announced by the goroutine after that batch is
// durable. Both the goroutine and a reserve (which decides as of its
// arrival) call it. q.mu held.
func (q *Queue) advance(now int64) {
	_, expired := q.st.Advance(now)
	for _, j := range expired {
		q.ops = append(q.ops, op{id: j.ID, val: encodeState(j)})
		if j.Where == Dead && q.e.opts.DeadLettered != nil {
			q.dead = append(q.dead, *j)
		}
		if wk := holderWorker(j.Holder); wk != nil {
			wk.done(false, time.Duration(now-j.ReservedAt))
		}
		letGo(j)
	}
}

// readyForWaiters reports whether a waiter could be served now. q.mu held.
func (q *Queue) readyForWaiters() bool {
	return len(q.waiters) > 0 && q.st.ready.Len() > 0 && !q.st.paused
}

type delivery struct {
	w    *waiter
	jobs []*Job
	err  error
}

// serveWaiters reserves jobs for waiters in arrival order and answers the
// ones whose wait ran out. q.mu held.
func (q *Queue) serveWaiters(now int64) []delivery {
	var out []delivery
	keep := q.waiters[:0]
	for _, w := range q.waiters {
		if w.gone != nil && w.gone() {
			out = append(out, delivery{w: w, err: ErrClosed})
			continue
		}
		jobs := q.st.Reserve(w.max, now, w.visibility)
		if len(jobs) > 0 {
			for _, j := range jobs {
				j.Holder = w.holder
				q.ops = append(q.ops, op{id: j.ID, val: encodeState(j)})
			}
			w.holder.reserved(len(jobs))
			out = append(out, delivery{w: w, jobs: jobs})
			continue
		}
		if w.deadline <= now {
			out = append(out, delivery{w: w})
			continue
		}
		keep = append(keep, w)
	}
	clear(q.waiters[len(keep):])
	q.waiters = keep
	return out
}

// deliver reads the reserved jobs' payloads and answers their waiters.
// Queue goroutine only.
func (q *Queue) deliver(ds []delivery, persistErr error) {
	var recs []commitlog.Record // the last read: consecutive offsets from recs[0]
	for _, d := range ds {
		if d.err != nil {
			d.w.cb(nil, d.err)
			continue
		}
		if persistErr != nil && len(d.jobs) > 0 {
			// The reservation is not durable: deliver nothing a crash could
			// forget. The jobs stay reserved and come back when their
			// visibility timeout passes (a consumer gets the places in its
			// window back then; it is not ended by one failed write).
			if !d.w.standing {
				d.w.cb(nil, fmt.Errorf("queue: reserve from %q: %w", q.name, persistErr))
			}
			continue
		}
		out := make([]Delivery, 0, len(d.jobs))
		var err error
		q.mu.Lock()
		cached := make([]freshJob, len(d.jobs))
		for i, j := range d.jobs {
			if f, ok := q.fresh[j.ID]; ok {
				cached[i] = f
				delete(q.fresh, j.ID)
				q.freshBytes -= len(f.payload) + len(f.hdr)
			}
		}
		q.mu.Unlock()
		for i, j := range d.jobs {
			if f := cached[i]; f.payload != nil {
				out = append(out, Delivery{ID: j.ID, Attempt: j.Attempts, Priority: j.Priority, EnqueuedAt: j.EnqueuedAt,
					Deadline: j.Deadline, Header: f.hdr, Payload: f.payload, LastError: j.LastError, Trace: j.Trace})
				continue
			}
			// Jobs reserved together are mostly neighbours in the log: one
			// read (one batch decoded) serves a run of them.
			if len(recs) == 0 || j.ID < recs[0].Offset || j.ID-recs[0].Offset >= uint64(len(recs)) {
				var rerr error
				if recs, rerr = q.rdr.Read(j.ID, 64<<10); rerr != nil || len(recs) == 0 || recs[0].Offset != j.ID {
					err = fmt.Errorf("queue: read job %d of %q: %v", j.ID, q.name, rerr)
					recs = nil
					break
				}
			}
			r := recs[j.ID-recs[0].Offset]
			_, _, _, hdr, _ := decodeJobHeader(r.Headers)
			out = append(out, Delivery{ID: j.ID, Attempt: j.Attempts, Priority: j.Priority, EnqueuedAt: j.EnqueuedAt,
				Deadline: j.Deadline, Header: cloneBytes(hdr), Payload: cloneBytes(r.Value), LastError: j.LastError, Trace: j.Trace})
		}
		d.w.cb(out, err)
	}
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// persist writes state changes as state records in the queue's log,
// behind the enqueues: one fsync stream per queue (an fsync under the
// always policy, shared through the log's group commit with the enqueues
// of the moment). They were a Pebble batch before: a second fsync per
// round, Pebble's memtable inserts, flushes and compactions for records
// that live a few milliseconds.
func (q *Queue) persist(ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	recs := encodeStateRecords(ops)
	errs := make(chan error, len(recs))
	// One append per record: a record stays under the log's batch limit,
	// and a purge of a million jobs is many records.
	for i := range recs {
		q.log.Append(recs[i:i+1], func(off uint64, err error) {
			if err == nil {
				q.mu.Lock()
				q.applied = max(q.applied, off+1)
				q.mu.Unlock()
			}
			errs <- err
		})
	}
	var err error
	for range recs {
		err = cmp.Or(err, <-errs)
	}
	if err != nil {
		q.persistLog.Log(q.e.opts.Logger, slog.LevelError, "queue: job states not written", err, "queue", q.name)
		return err
	}
	return nil
}

// release lets the log drop what no live job needs: below the oldest job
// still held, and below the oldest job whose key is still in the dedup
// window, but never past what the state machine has applied (a job the
// log has published and whose enqueue is completing is not held yet).
// The mark is saved before the old Pebble states below it are deleted,
// so a crash between the two leaves states (harmless), never resurrected
// jobs.
func (q *Queue) release(now time.Time) {
	q.mu.Lock()
	lw := q.st.LowWater(q.applied)
	// Only jobs with an idempotency key hold the log for the dedup
	// window; a queue whose jobs have none releases right behind its
	// oldest live job, so acknowledged jobs' state keys are deleted while
	// they are still in Pebble's memtable, not flushed and compacted.
	if floor, ok := q.st.DedupFloor(now.UnixNano()); ok && floor < lw {
		lw = floor
	}
	prev := q.released
	q.mu.Unlock()
	if lw <= prev {
		return
	}
	if err := q.log.SetLowWater(lw); err != nil {
		q.e.opts.Logger.Warn("queue: low-water mark not saved", "queue", q.name, "err", err)
		return
	}
	if q.pebbleStatesTo > 0 {
		// States an older version kept in Pebble: deleted as the log
		// moves past their jobs, until none is left.
		b := q.e.opts.Store.NewBatch()
		b.DeleteRange(store.KeyspaceQueue, stateKey(q.name, 0), stateKey(q.name, lw))
		if err := b.Commit(); err != nil {
			q.e.opts.Logger.Warn("queue: old job states not deleted", "queue", q.name, "err", err)
		} else if lw >= q.pebbleStatesTo {
			q.pebbleStatesTo = 0
		}
	}
	q.mu.Lock()
	q.released = lw
	q.mu.Unlock()
}

// shutdown stops the goroutine and fails whoever waits.
func (q *Queue) shutdown(err error) {
	q.mu.Lock()
	if q.closed != nil {
		q.mu.Unlock()
		return
	}
	q.closed = err
	waiters := q.waiters
	q.waiters = nil
	consumers := q.consumers
	q.consumers = nil
	for _, c := range consumers {
		c.closed = true
	}
	q.mu.Unlock()
	close(q.stop)
	<-q.done
	// Write what was decided before the stop.
	q.mu.Lock()
	ops, cbs := q.ops, q.opsCbs
	q.ops, q.opsCbs = nil, nil
	cancelled := q.cancelled
	q.cancelled = nil
	q.mu.Unlock()
	defer func() {
		for _, done := range cancelled {
			done()
		}
	}()
	perr := q.persist(ops)
	for _, cb := range cbs {
		cb(perr)
	}
	for _, w := range waiters {
		w.cb(nil, err)
	}
	for _, c := range consumers {
		c.w.cb(nil, err)
	}
}

func (q *Queue) close() error {
	if err := q.log.Close(); err != nil && !errors.Is(err, commitlog.ErrClosed) {
		return err
	}
	return nil
}

// Info describes a queue.
type Info struct {
	Name       string        `json:"name"`
	Config     Config        `json:"config"`
	Ready      int           `json:"ready"`
	Delayed    int           `json:"delayed"`
	InFlight   int           `json:"in_flight"`
	Dead       int           `json:"dead"`
	OldestMs   int64         `json:"oldest_ready_ms"`
	Counters   Counters      `json:"counters"`
	Bytes      int64         `json:"bytes"` // on disk, log
	Recovery   RecoveryStats `json:"recovery"`
	Processing HistogramView `json:"processing"` // reserve to ack
	Rates      Rates         `json:"rates"`      // per second, last 10 s
}

// Info returns the queue's stats.
func (q *Queue) Info() Info {
	now := q.e.opts.Now().UnixNano()
	q.mu.Lock()
	st := q.st.Stats(now)
	in := Info{Name: q.name, Config: q.cfg, Ready: st.Ready, Delayed: st.Delayed, InFlight: st.InFlight, Dead: st.Dead,
		OldestMs: st.OldestReadyAge.Milliseconds(), Counters: st.Counters, Recovery: q.recovery, Processing: q.hist.view(),
		Rates: q.rates.perSecond(now, st.Counters)}
	q.rates.sample(now, st.Counters)
	q.mu.Unlock()
	in.Bytes = q.log.Stats().SizeBytes
	return in
}
