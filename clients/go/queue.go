package flowmesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Queues is the job-queue API of a Conn (Conn.Queue).
type Queues struct{ c *Conn }

// Job is a reserved job.
type Job struct {
	Queue      string
	ID         uint64
	Attempt    int // 1 on the first delivery
	EnqueuedAt time.Time
	Header     Header // nil if none
	Payload    []byte

	conn *Conn      // where acks go
	span trace.Span // a Worker's process span, nil otherwise
}

func parseJob(f *protocol.Frame) (*Job, error) {
	return parseJobArgs(f.Args, f) // <queue> <id> <attempt> <enqueued-ns>
}

func parseJobArgs(a [][]byte, f *protocol.Frame) (*Job, error) {
	id, att, ts := protocol.ParseUint(a[1]), protocol.ParseUint(a[2]), parseNanos(a[3])
	if id < 0 || att < 1 || ts < 0 {
		return nil, fmt.Errorf("flowmesh: bad job frame %q", a)
	}
	j := &Job{Queue: string(a[0]), ID: uint64(id), Attempt: int(att), EnqueuedAt: time.Unix(0, ts), Payload: append([]byte{}, f.Payload...)}
	if f.Header != nil {
		j.Header, _ = decodeHeader(f.Header)
	}
	return j, nil
}

// EnqueueOption configures Enqueue.
type EnqueueOption func(*enqueueOpts)

type enqueueOpts struct {
	delay       time.Duration
	runAt       time.Time
	priority    int
	key         string
	maxAttempts int
	header      Header
}

// Delay makes the job ready after d.
func Delay(d time.Duration) EnqueueOption { return func(o *enqueueOpts) { o.delay = d } }

// RunAt makes the job ready at t.
func RunAt(t time.Time) EnqueueOption { return func(o *enqueueOpts) { o.runAt = t } }

// Priority sets the job's priority (-1000 to 1000; higher first).
func Priority(p int) EnqueueOption { return func(o *enqueueOpts) { o.priority = p } }

// IdempotencyKey makes a second enqueue with the same key, inside the
// queue's dedup window, return the first job's id and store nothing. With a
// key, an enqueue whose connection dropped is sent again after the
// reconnect (safely).
func IdempotencyKey(k string) EnqueueOption { return func(o *enqueueOpts) { o.key = k } }

// MaxAttempts overrides the queue's max attempts for this job.
func MaxAttempts(n int) EnqueueOption { return func(o *enqueueOpts) { o.maxAttempts = n } }

// JobHeader attaches headers (trace_id, causation_id, ...) to the job.
func JobHeader(h Header) EnqueueOption { return func(o *enqueueOpts) { o.header = h } }

// Enqueue adds a job and returns its id once the server has it durable
// per the queue's fsync policy.
func (q *Queues) Enqueue(ctx context.Context, queue string, payload []byte, opts ...EnqueueOption) (uint64, error) {
	p, err := q.newPut(ctx, queue, payload, opts)
	if err != nil {
		return 0, err
	}
	p.cl, p.err = q.c.sendCall(pooledCall(), p.build)
	return q.finishPut(ctx, p)
}

// EnqueueJob is one job of EnqueueBatch.
type EnqueueJob struct {
	Payload []byte
	Options []EnqueueOption
}

// EnqueueBatch enqueues jobs together: they are pipelined on the
// connection (up to MaxInflightWrites at a time), so the server appends
// them in few log batches and one fsync covers many, which is how a
// producer gets throughput under fsync=always. It returns the jobs' ids in
// order. The jobs are independent: one failing does not undo the others;
// the error names the first that failed, and its id is 0.
func (q *Queues) EnqueueBatch(ctx context.Context, queue string, jobs []EnqueueJob) ([]uint64, error) {
	ids := make([]uint64, len(jobs))
	var first error
	puts := make([]*put, 0, min(len(jobs), MaxInflightWrites))
	done := 0
	// finish waits for the puts started so far; like WriteBatch, a batch
	// never waits for a slot while it holds some.
	finish := func() {
		for _, p := range puts {
			id, err := q.finishPut(ctx, p)
			<-q.c.writeSlots
			if err != nil && first == nil {
				first = fmt.Errorf("flowmesh: job %d of the batch: %w", done, err)
			}
			ids[done] = id
			done++
		}
		puts = puts[:0]
	}
	for i, j := range jobs {
		p, err := q.newPut(ctx, queue, j.Payload, j.Options)
		if err != nil {
			finish()
			return ids, fmt.Errorf("flowmesh: job %d of the batch: %w", i, err)
		}
		select {
		case q.c.writeSlots <- struct{}{}:
		default:
			finish()
			if err := q.c.takeWriteSlot(ctx); err != nil {
				return ids, err
			}
		}
		p.cl, p.err = q.c.sendCall(pooledCall(), p.build)
		puts = append(puts, p)
	}
	finish()
	return ids, first
}

// put is one QPUT on its way.
type put struct {
	queue string
	build func([]byte) []byte
	keyed bool // an idempotency key makes a resend after a reconnect safe
	cl    *call
	err   error
	span  trace.Span // the producer span, ended with the reply
}

func (q *Queues) newPut(ctx context.Context, queue string, payload []byte, opts []EnqueueOption) (*put, error) {
	var o enqueueOpts
	for _, opt := range opts {
		opt(&o)
	}
	if o.delay < 0 {
		return nil, errors.New("flowmesh: negative delay")
	}
	if o.key != "" && !protocol.ValidToken([]byte(o.key), 256) {
		return nil, ErrBadKey
	}
	args := []string{queue}
	switch {
	case !o.runAt.IsZero():
		args = append(args, "at="+strconv.FormatInt(o.runAt.UnixMilli(), 10))
	case o.delay > 0:
		args = append(args, "delay="+o.delay.String())
	}
	if o.priority != 0 {
		args = append(args, "priority="+strconv.Itoa(o.priority))
	}
	if o.key != "" {
		args = append(args, "key="+o.key)
	}
	if o.maxAttempts > 0 {
		args = append(args, "max_attempts="+strconv.Itoa(o.maxAttempts))
	}
	h, sp := q.c.stamp(ctx, "enqueue", queue, o.header)
	hdr, err := h.encode()
	if err != nil {
		endSpan(sp, err)
		return nil, err
	}
	if max := q.c.MaxPayload(); max > 0 && len(hdr)+len(payload) > max {
		endSpan(sp, ErrMaxPayload)
		return nil, ErrMaxPayload // the server would close the connection
	}
	return &put{queue: queue, build: func(b []byte) []byte { return protocol.AppendSized(b, "QPUT", args, hdr, payload) },
		keyed: o.key != "", span: sp}, nil
}

// finishPut waits for p's reply; a keyed put whose connection dropped is
// sent again. p's calls are recycled (releaseCall keeps an abandoned one).
func (q *Queues) finishPut(ctx context.Context, p *put) (id uint64, err error) {
	defer func() {
		if p.cl != nil {
			releaseCall(p.cl)
			p.cl = nil
		}
		if p.span.IsRecording() && err == nil {
			p.span.SetAttributes(attribute.String("messaging.message.id", queueMsgID(p.queue, id)))
		}
		endSpan(p.span, err)
	}()
	for attempt := 0; ; attempt++ {
		if p.err != nil {
			return 0, p.err
		}
		err := q.c.wait(ctx, p.cl)
		if errors.Is(err, ErrConnectionLost) && p.keyed && attempt < 10 {
			releaseCall(p.cl)
			p.cl, p.err = q.c.sendCall(pooledCall(), p.build)
			continue
		}
		if err != nil {
			return 0, err
		}
		if len(p.cl.args) < 1 {
			return 0, fmt.Errorf("flowmesh: bad QPUT reply %q", p.cl.args)
		}
		return strconv.ParseUint(string(p.cl.args[0]), 10, 64)
	}
}

// Reserve takes up to max jobs, waiting up to wait for at least one. The
// wait holds this connection's later replies; workers reserve on a
// connection of their own (Worker does).
func (q *Queues) Reserve(ctx context.Context, queue string, max int, wait time.Duration) ([]*Job, error) {
	args := []string{queue, "max=" + strconv.Itoa(max)}
	if wait > 0 {
		args = append(args, "wait="+wait.String())
	}
	cl := &call{done: make(chan struct{}), orphaned: giveBack}
	cl, err := q.c.doCall(ctx, cl, func(b []byte) []byte { return protocol.AppendCommand(b, "QGET", args...) })
	if err != nil {
		return nil, err
	}
	return cl.jobs, nil
}

// giveBack retries at once the jobs of a QGET whose caller stopped waiting
// (its context ended during the long poll): the server reserved them for
// nobody, and they would stay invisible for their whole visibility
// timeout. Their attempt stays counted, as for any reservation.
func giveBack(cl *call) {
	if len(cl.jobs) == 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, j := range cl.jobs {
			_ = j.Retry(ctx, 0, errors.New("reserve abandoned by its caller"))
		}
	}()
}

// Ack completes the job.
func (j *Job) Ack(ctx context.Context) error { return j.ack(ctx, nil) }

func (j *Job) ack(ctx context.Context, lim *replyLimit) error {
	return j.call(ctx, lim, func(b []byte) []byte {
		b = append(append(append(b, "QACK "...), j.Queue...), ' ')
		b = append(strconv.AppendUint(b, j.ID, 10), ' ')
		return append(strconv.AppendInt(b, int64(j.Attempt), 10), "\r\n"...)
	})
}

// Nack fails this attempt with reason: the job is retried per the queue's
// backoff policy, or dead-lettered when its attempts are spent.
func (j *Job) Nack(ctx context.Context, reason error) error { return j.nack(ctx, nil, "", reason) }

// Retry fails this attempt and retries the job after d.
func (j *Job) Retry(ctx context.Context, d time.Duration, reason error) error {
	return j.nack(ctx, nil, "delay="+d.String(), reason)
}

// Fail dead-letters the job now, without retrying.
func (j *Job) Fail(ctx context.Context, reason error) error { return j.nack(ctx, nil, "fail", reason) }

// call sends one of j's commands and waits for its reply: until ctx ends,
// or, with lim, until lim's time passes. Its call is recycled.
func (j *Job) call(ctx context.Context, lim *replyLimit, build func([]byte) []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cl, err := j.conn.sendCall(pooledCall(), build)
	if err != nil {
		return err
	}
	if lim != nil {
		err = lim.wait(cl)
	} else {
		err = j.conn.wait(ctx, cl)
	}
	releaseCall(cl)
	return err
}

// replyLimit bounds a Worker goroutine's waits for its outcomes' replies
// with one reusable timer: a context.WithTimeout per job cost four
// allocations and a tenth of the worker's CPU.
type replyLimit struct {
	d time.Duration
	t *time.Timer
}

func newReplyLimit(d time.Duration) *replyLimit {
	t := time.NewTimer(d)
	t.Stop()
	return &replyLimit{d: d, t: t}
}

// errReplyTimeout is a reply that did not come within a replyLimit.
var errReplyTimeout = errors.New("flowmesh: no reply from the server in time")

// wait is Conn.wait with the limit in place of a context. A Stop or Reset
// timer sends no stale value (Go 1.23 timers), so the timer is reused as
// is.
func (l *replyLimit) wait(cl *call) error {
	l.t.Reset(l.d)
	select {
	case <-cl.done:
		l.t.Stop()
		return cl.err
	case <-l.t.C:
		return cl.abandon(fmt.Errorf("%w (%v)", errReplyTimeout, l.d))
	}
}

func (j *Job) nack(ctx context.Context, lim *replyLimit, opt string, reason error) error {
	args := []string{j.Queue, itoa(j.ID), strconv.Itoa(j.Attempt)}
	if opt != "" {
		args = append(args, opt)
	}
	text := []byte{}
	if reason != nil {
		text = []byte(reason.Error())
	}
	// The server keeps 4 KiB of it (and says how much it cut); a text over
	// max_payload would get the connection closed, so it never goes out
	// whole when it is that long.
	if keep := min(64<<10, max(0, j.conn.MaxPayload()-1024)); keep > 0 && len(text) > keep {
		text = text[:keep]
	}
	return j.call(ctx, lim, func(b []byte) []byte { return protocol.AppendSized(b, "QNACK", args, nil, text) })
}

// Touch extends the job's invisibility by ext (0: the queue's timeout).
func (j *Job) Touch(ctx context.Context, ext time.Duration) error {
	args := []string{j.Queue, itoa(j.ID), strconv.Itoa(j.Attempt)}
	if ext > 0 {
		args = append(args, "ext="+ext.String())
	}
	_, err := j.conn.do(ctx, func(b []byte) []byte { return protocol.AppendCommand(b, "QTOUCH", args...) })
	return err
}

// PermanentError wraps an error that must not be retried: a worker
// function returning it dead-letters the job at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &PermanentError{Err: err} }

// WorkerOption configures Worker.
type WorkerOption func(*workerOpts)

type workerOpts struct {
	concurrency int
	name        string
	touch       time.Duration // 0: a third of the queue's visibility timeout; <0: never
}

// Concurrency sets how many jobs the worker runs at once. Default 1.
func Concurrency(n int) WorkerOption { return func(o *workerOpts) { o.concurrency = n } }

// WorkerName sets the name the server shows for the worker. Default "worker".
func WorkerName(n string) WorkerOption { return func(o *workerOpts) { o.name = n } }

// TouchEvery sets how often the worker extends the visibility timeout of a
// job whose handler is still running (QTOUCH, by the queue's visibility
// timeout), so a long job is not delivered to another worker meanwhile: a
// running job is touched between every d/2 and every 1.5·d.
// Default: a third of the queue's visibility timeout, read when the worker
// starts; 0 or less turns it off.
func TouchEvery(d time.Duration) WorkerOption {
	return func(o *workerOpts) {
		o.touch = d
		if d <= 0 {
			o.touch = -1
		}
	}
}

// Worker runs fn for each job of queue, up to Concurrency at once, until
// ctx ends; then it finishes the jobs it holds and returns. A nil error
// acks the job; an error nacks it (retried per the queue's policy;
// Permanent(err) dead-letters it); a panic is recovered and counts as a
// failure with its stack as the error. The worker registers with the
// server (name, queue, concurrency) and heartbeats on a connection of its
// own, where it consumes the queue (QSUB with a window of Concurrency
// jobs): the server pushes a job whenever one of the worker's places is
// free, and each outcome brings the next job back with its reply.
// Worker returns an error if the queue does not exist or is deleted.
// Closing the Conn stops its workers as a crash would: no more outcomes
// are reported, and the jobs they held come back after their visibility
// timeouts.
func (q *Queues) Worker(ctx context.Context, queue string, fn func(ctx context.Context, job *Job) error, opts ...WorkerOption) error {
	o := workerOpts{concurrency: 1, name: "worker"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.concurrency < 1 {
		return errors.New("flowmesh: concurrency must be at least 1")
	}
	if fn == nil {
		// Caught here: called, it would panic on every job, and each
		// recovered panic is a failure that retries and then dead-letters.
		return errors.New("flowmesh: Worker needs a handler, got nil")
	}
	fetch, err := q.c.sibling(ctx)
	if err != nil {
		return err
	}
	defer fetch.Close()
	// The subscription carries the worker's registration, so that a
	// reconnect registers it again before its QSUB (Conn.hello).
	js := newJobSub("w", queue, o.name, o.concurrency)
	if _, err := fetch.do(ctx, js.appendWorker); err != nil {
		return err
	}
	if o.touch == 0 {
		o.touch = time.Second
		if in, err := q.Info(ctx, queue); err == nil && in.Config.VisibilityTimeout != "" {
			if v, err := time.ParseDuration(in.Config.VisibilityTimeout); err == nil && v > 0 {
				o.touch = v / 3
			}
		}
	}
	// The subscription is registered before its QSUB goes out: a pushed
	// job can arrive before the QSUB's reply.
	fetch.mu.Lock()
	if fetch.jobSubs == nil {
		fetch.jobSubs = make(map[string]*jobSub)
	}
	fetch.jobSubs[js.sid] = js
	fetch.mu.Unlock()
	if _, err := fetch.do(ctx, js.appendSub); err != nil {
		return err
	}
	var tw *toucher
	if o.touch > 0 {
		tw = newToucher(fetch, o.touch)
		defer tw.stop()
	}
	// Jobs run on Concurrency long-lived goroutines: a goroutine per job
	// grew a fresh stack for every handler, and a timer per job for its
	// touches cost as much again.
	var running sync.WaitGroup
	for range o.concurrency {
		running.Add(1)
		go func() {
			defer running.Done()
			lim := newReplyLimit(outcomeReplyLimit)
			for {
				j, ok := js.next()
				if !ok {
					return
				}
				q.runJob(ctx, j, fn, tw, lim)
			}
		}()
	}
	hb := time.NewTicker(10 * time.Second)
	defer hb.Stop()
	for stopping := false; !stopping; {
		select {
		case <-hb.C:
			_ = fetch.write(protocol.AppendCommand(nil, "QHB"))
		case <-js.ended:
			// Deleted queue or closed connection: the jobs already here are
			// still run (their outcomes may fail and be logged).
			js.finish()
			running.Wait()
			return js.err
		case <-q.c.closedCh:
			// The Conn was closed under the worker: it stops as a crashed
			// process would, reporting nothing more; the jobs it held come
			// back when their visibility timeouts pass.
			js.abandon()
			running.Wait()
			return ErrClosed
		case <-ctx.Done():
			stopping = true
		}
	}
	// Stopping: no more pushes, then the jobs already here are run. The
	// server sends the QUNSUB's reply behind every job it pushed to the
	// consumer, so once it is here every job is.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = fetch.do(sctx, func(b []byte) []byte { return protocol.AppendCommand(b, "QUNSUB", js.sid) })
	js.finish()
	running.Wait()
	return nil
}

// jobSub is a Worker's queue consumer on its connection: the jobs the
// server pushes wait here for the worker's goroutines.
type jobSub struct {
	sid, queue string
	worker     string // the worker's name (QWORKER)
	window     int
	ended      chan struct{} // closed by end
	err        error         // why it ended; set before ended is closed

	mu       sync.Mutex
	cond     sync.Cond
	jobs     []*Job
	finished bool // no job will be taken any more once jobs is empty
	once     sync.Once
}

func newJobSub(sid, queue, worker string, window int) *jobSub {
	js := &jobSub{sid: sid, queue: queue, worker: worker, window: window, ended: make(chan struct{})}
	js.cond.L = &js.mu
	return js
}

// appendWorker registers the connection as the worker (concurrency: the
// window).
func (js *jobSub) appendWorker(b []byte) []byte {
	return protocol.AppendCommand(b, "QWORKER", js.worker, js.queue, "concurrency="+strconv.Itoa(js.window))
}

func (js *jobSub) appendSub(b []byte) []byte {
	return protocol.AppendCommand(b, "QSUB", js.queue, js.sid, "window="+strconv.Itoa(js.window))
}

// add queues a pushed job. Reader goroutine: it never blocks.
func (js *jobSub) add(j *Job) {
	js.mu.Lock()
	js.jobs = append(js.jobs, j)
	js.mu.Unlock()
	js.cond.Signal()
}

// next takes the oldest pushed job, waiting for one; false once finish
// was called and none is left.
func (js *jobSub) next() (*Job, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for len(js.jobs) == 0 {
		if js.finished {
			return nil, false
		}
		js.cond.Wait()
	}
	j := js.jobs[0]
	js.jobs[0] = nil
	js.jobs = js.jobs[1:]
	return j, true
}

// finish lets the goroutines return once the queued jobs are taken.
func (js *jobSub) finish() {
	js.mu.Lock()
	js.finished = true
	js.mu.Unlock()
	js.cond.Broadcast()
}

// abandon drops the queued jobs and lets the goroutines return.
func (js *jobSub) abandon() {
	js.mu.Lock()
	clear(js.jobs)
	js.jobs = nil
	js.mu.Unlock()
	js.finish()
}

// end records why the subscription is over and wakes the worker.
func (js *jobSub) end(err error) {
	js.once.Do(func() {
		js.err = err
		close(js.ended)
	})
}

// jobPushed takes a QMSG (a pushed job) or QCLOSED frame. Reader only.
func (c *Conn) jobPushed(f *protocol.Frame) {
	sid := string(f.Args[0])
	c.mu.Lock()
	js := c.jobSubs[sid]
	c.mu.Unlock()
	if js == nil {
		return // the worker is gone; the job comes back after its visibility timeout
	}
	if f.Verb == protocol.VerbQClosed {
		e := closedError(f)
		if e.Code == protocol.CodeShuttingDown {
			return // the node is stopping: the consumer subscribes again when the connection is back
		}
		c.mu.Lock()
		delete(c.jobSubs, sid)
		c.mu.Unlock()
		js.end(e)
		return
	}
	j, err := parseJobArgs(f.Args[1:], f)
	if err != nil {
		c.opts.logger.Warn("flowmesh: dropped a bad job frame", "err", err)
		return
	}
	j.conn = c
	js.add(j)
}

// outcomeReplyLimit is how long a Worker waits for the reply to a job's
// outcome before it logs the outcome as not recorded and takes the next
// job (the server may be hung with the connection still open).
const outcomeReplyLimit = 30 * time.Second

// runJob runs fn on j and reports the outcome on j's connection, where
// the server answers it and pushes the next job in the same write.
func (q *Queues) runJob(ctx context.Context, j *Job, fn func(context.Context, *Job) error, tw *toucher, lim *replyLimit) {
	tw.add(j)
	if j.Header != nil {
		j.span = q.c.process(ctx, j.Queue, j, j.Header, attribute.Int("flowmesh.attempt", j.Attempt))
	}
	ctx = j.Context(ctx)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return fn(ctx, j)
	}()
	defer endSpan(j.span, err) // after the outcome's reply: the span covers the ack
	tw.remove(j)               // before the outcome is sent: a touch after it would only fail
	if q.c.isClosed() {
		return // closed under the worker: as after a crash, the job comes back after its visibility timeout
	}
	// Outcomes are bounded by lim, not ctx: a worker stopping (ctx done)
	// still reports the jobs it finished.
	bg := context.Background()
	var perm *PermanentError
	switch {
	case err == nil:
		err = j.ack(bg, lim)
	case errors.As(err, &perm):
		err = j.nack(bg, lim, "fail", err)
	default:
		err = j.nack(bg, lim, "", err)
	}
	if err != nil {
		q.c.opts.logger.Warn("flowmesh: job outcome not recorded; the job will come back after its visibility timeout",
			"queue", j.Queue, "id", j.ID, "err", err)
	}
}

// toucher extends the visibility timeout of a worker's running jobs: one
// goroutine and one ticker for all of them. Each tick touches the jobs
// whose last touch (or start) is at least half a period old, so a job
// goes at most 1.5 periods untouched (the period is a third of the
// visibility timeout by default) and a job that ends quickly is never
// touched.
type toucher struct {
	c      *Conn
	period time.Duration
	mu     sync.Mutex
	jobs   map[*Job]time.Time // running job -> its last touch or start
	quit   chan struct{}
	done   chan struct{}
}

func newToucher(c *Conn, period time.Duration) *toucher {
	t := &toucher{c: c, period: period, jobs: make(map[*Job]time.Time), quit: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// add starts keeping j alive. A nil toucher (touching off) does nothing.
func (t *toucher) add(j *Job) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.jobs[j] = time.Now()
	t.mu.Unlock()
}

// remove stops keeping j alive: no touch of j is sent after it returns,
// so one sent before is ahead of j's outcome on the connection.
func (t *toucher) remove(j *Job) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.jobs, j)
	t.mu.Unlock()
}

func (t *toucher) stop() {
	close(t.quit)
	<-t.done
}

func (t *toucher) run() {
	defer close(t.done)
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	type sent struct {
		j  *Job
		cl *call
	}
	var out []sent
	for {
		select {
		case <-t.quit:
			return
		case now := <-tick.C:
			out = out[:0]
			t.mu.Lock()
			for j, last := range t.jobs {
				if now.Sub(last) < t.period/2 {
					continue
				}
				// Sent under the lock: remove cannot return between the
				// check and the send.
				cl, err := t.c.send(func(b []byte) []byte {
					return protocol.AppendCommand(b, "QTOUCH", j.Queue, itoa(j.ID), strconv.Itoa(j.Attempt))
				})
				if err != nil {
					break // the connection is closed
				}
				t.jobs[j] = now
				out = append(out, sent{j, cl})
			}
			t.mu.Unlock()
			for _, s := range out {
				ctx, cancel := context.WithTimeout(context.Background(), t.period)
				err := t.c.wait(ctx, s.cl)
				cancel()
				if err != nil {
					t.c.opts.logger.Warn("flowmesh: job not touched; it may be delivered again", "queue", s.j.Queue, "id", s.j.ID, "err", err)
				}
			}
		}
	}
}

// sibling opens another connection to the same server with the same
// options.
func (c *Conn) sibling(ctx context.Context) (*Conn, error) {
	o := c.opts
	opts := []Option{func(x *options) { *x = o }}
	return Connect(ctx, "nats://"+c.addr, opts...)
}

// QueueConfig are a queue's settings; zero fields take the server's
// defaults.
type QueueConfig struct {
	MaxAttempts       int
	VisibilityTimeout time.Duration
	BackoffBase       time.Duration
	BackoffMax        time.Duration
	DedupWindow       time.Duration
	Fsync             string
	MaxJobBytes       int // payload, header and key of one job
}

func (qc QueueConfig) args() []string {
	var a []string
	if qc.MaxAttempts > 0 {
		a = append(a, "max_attempts="+strconv.Itoa(qc.MaxAttempts))
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"visibility_timeout", qc.VisibilityTimeout}, {"backoff_base", qc.BackoffBase}, {"backoff_max", qc.BackoffMax}, {"dedup_window", qc.DedupWindow}} {
		if d.v > 0 {
			a = append(a, d.k+"="+d.v.String())
		}
	}
	if qc.Fsync != "" {
		a = append(a, "fsync="+qc.Fsync)
	}
	if qc.MaxJobBytes > 0 {
		a = append(a, "max_job_bytes="+strconv.Itoa(qc.MaxJobBytes))
	}
	return a
}

func (q *Queues) command(ctx context.Context, verb string, args ...string) (*call, error) {
	return q.c.do(ctx, func(b []byte) []byte { return protocol.AppendCommand(b, verb, args...) })
}

// Create creates a queue.
func (q *Queues) Create(ctx context.Context, name string, cfg QueueConfig) error {
	_, err := q.command(ctx, "QCREATE", append([]string{name}, cfg.args()...)...)
	return err
}

// Delete deletes a queue and its jobs.
func (q *Queues) Delete(ctx context.Context, name string) error {
	_, err := q.command(ctx, "QDELETE", name)
	return err
}

// Pause stops delivery (enqueues go on); Resume restarts it.
func (q *Queues) Pause(ctx context.Context, name string) error {
	_, err := q.command(ctx, "QPAUSE", name)
	return err
}

// Resume restarts delivery after Pause.
func (q *Queues) Resume(ctx context.Context, name string) error {
	_, err := q.command(ctx, "QRESUME", name)
	return err
}

// QueueInfo is a queue's state and counters.
type QueueInfo struct {
	Name   string `json:"name"`
	Config struct {
		MaxAttempts       int    `json:"max_attempts"`
		VisibilityTimeout string `json:"visibility_timeout"` // a Go duration
		BackoffBase       string `json:"backoff_base"`
		BackoffMax        string `json:"backoff_max"`
		DedupWindow       string `json:"dedup_window"`
		Fsync             string `json:"fsync"`
		MaxJobBytes       int    `json:"max_job_bytes"`
		Paused            bool   `json:"paused"`
	} `json:"config"`
	Ready    int   `json:"ready"`
	Delayed  int   `json:"delayed"`
	InFlight int   `json:"in_flight"`
	Dead     int   `json:"dead"`
	OldestMs int64 `json:"oldest_ready_ms"`
	Counters struct {
		Enqueued     uint64 `json:"enqueued"`
		Reserved     uint64 `json:"reserved"`
		Acked        uint64 `json:"acked"`
		Nacked       uint64 `json:"nacked"`
		Expired      uint64 `json:"expired"`
		DeadLettered uint64 `json:"dead_lettered"`
		Redriven     uint64 `json:"redriven"`
		Deduplicated uint64 `json:"deduplicated"`
	} `json:"counters"`
	// Rates are per second over the last 10 s.
	Rates struct {
		Enqueued     float64 `json:"enqueued"`
		Acked        float64 `json:"acked"`
		Nacked       float64 `json:"nacked"`
		Expired      float64 `json:"expired"`
		DeadLettered float64 `json:"dead_lettered"`
	} `json:"rates"`
	// Processing is the reserve-to-ack time distribution: Counts[i] jobs
	// took at most BoundsMs[i] (the last count has no bound).
	Processing struct {
		BoundsMs []float64 `json:"bounds_ms"`
		Counts   []uint64  `json:"counts"`
		SumMs    float64   `json:"sum_ms"`
		Count    uint64    `json:"count"`
	} `json:"processing"`
}

// WorkerInfo is a worker as the server sees it (QWORKERS).
type WorkerInfo struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Queues      []string `json:"queues"`
	Concurrency int      `json:"concurrency"`
	State       string   `json:"state"` // idle, busy or gone
	InFlight    int      `json:"in_flight"`
	Processed   uint64   `json:"processed"`
	Failed      uint64   `json:"failed"`
	PerSecond   float64  `json:"per_second"` // completions per second since it joined
	AvgMs       float64  `json:"avg_ms"`     // mean processing time
	LastSeenMs  int64    `json:"last_seen_ms"`
	UptimeMs    int64    `json:"uptime_ms"`
}

// Workers lists the workers the server knows: those registered now and,
// for a while, those gone.
func (q *Queues) Workers(ctx context.Context) ([]WorkerInfo, error) {
	cl, err := q.command(ctx, "QWORKERS")
	if err != nil {
		return nil, err
	}
	var ws []WorkerInfo
	if err := json.Unmarshal(cl.data, &ws); err != nil {
		return nil, fmt.Errorf("flowmesh: bad QWORKERS reply: %w", err)
	}
	return ws, nil
}

// Info returns a queue's stats.
func (q *Queues) Info(ctx context.Context, name string) (*QueueInfo, error) {
	cl, err := q.command(ctx, "QINFO", name)
	if err != nil {
		return nil, err
	}
	var in QueueInfo
	if err := json.Unmarshal(cl.data, &in); err != nil {
		return nil, fmt.Errorf("flowmesh: bad QINFO reply: %w", err)
	}
	return &in, nil
}

// BrowsedJob is a job as Browse shows it.
type BrowsedJob struct {
	ID         uint64 `json:"id"`
	State      string `json:"state"`
	Priority   int    `json:"priority"`
	Attempts   int    `json:"attempts"`
	EnqueuedAt int64  `json:"enqueued_at"`
	At         int64  `json:"at"`
	LastError  string `json:"last_error"`
	Key        string `json:"key"`
	Payload    []byte `json:"payload"`
}

// Browse lists jobs in a state ("ready", "delayed", "in_flight", "dead")
// from id from on, changing nothing; next is where the next page starts
// (0 with no more pages). A page can hold fewer than limit jobs and still
// have a next: one call looks at a bounded number of jobs, so browsing a
// rare state of a large queue takes several calls.
func (q *Queues) Browse(ctx context.Context, name, state string, from uint64, limit int) (jobs []BrowsedJob, next uint64, err error) {
	cl, err := q.command(ctx, "QBROWSE", name, state, "from="+itoa(from), "limit="+strconv.Itoa(limit))
	if err != nil {
		return nil, 0, err
	}
	var page struct {
		Jobs []BrowsedJob `json:"jobs"`
		Next *uint64      `json:"next"`
	}
	if err := json.Unmarshal(cl.data, &page); err != nil {
		return nil, 0, fmt.Errorf("flowmesh: bad QBROWSE reply: %w", err)
	}
	if page.Next != nil {
		next = *page.Next
	}
	return page.Jobs, next, nil
}

// Redrive moves a dead-lettered job (or all, with all) back to the queue.
func (q *Queues) Redrive(ctx context.Context, name string, id uint64, all bool) (int, error) {
	arg := itoa(id)
	if all {
		arg = "all"
	}
	cl, err := q.command(ctx, "QREDRIVE", name, arg)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(cl.args[0]))
}

// Purge drops the ready and delayed jobs, or the dead-lettered ones.
func (q *Queues) Purge(ctx context.Context, name string, dead bool) (int, error) {
	args := []string{name}
	if dead {
		args = append(args, "dead")
	}
	cl, err := q.command(ctx, "QPURGE", args...)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(cl.args[0]))
}
