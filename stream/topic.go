package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"

	commitlog "github.com/flowmesh/flowmesh/log"
)

// Topic is one topic: its partitions' logs, its settings and its producer
// table.
type Topic struct {
	name    string
	e       *Engine
	cfg     atomic.Pointer[Config]
	parts   atomic.Pointer[[]*commitlog.Log] // grows, never shrinks
	growMu  sync.Mutex
	rr      atomic.Uint64 // round robin for unkeyed writes
	tail    broadcast     // signalled when any partition gets new events
	prod    producers
	deleted atomic.Bool
}

// Event is one event as read back.
type Event struct {
	Partition int
	Offset    uint64
	Time      int64  // Unix nanoseconds, stamped by the server
	Key       []byte // nil if none
	Header    []byte // the NATS/1.0 header block as written; nil if none
	Value     []byte
}

// Write is one event to store.
type Write struct {
	Key, Header, Value []byte
	Partition          int    // -1: by key, or round robin without one
	Producer           []byte // with Seq: an idempotent write; nil: not
	Seq                uint64
}

// Position is where a write landed.
type Position struct {
	Partition int
	Offset    uint64
	Duplicate bool // the write was a retry of one already stored
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// Config is the topic's settings.
func (t *Topic) Config() Config { return *t.cfg.Load() }

func (t *Topic) setConfig(c Config) {
	t.cfg.Store(&c)
	for _, l := range t.logs() {
		l.Tune(c.tuning())
	}
}

func (t *Topic) logs() []*commitlog.Log {
	if p := t.parts.Load(); p != nil {
		return *p
	}
	return nil
}

// grow opens partition logs up to cfg.Partitions.
func (t *Topic) grow(cfg Config) error {
	t.growMu.Lock()
	defer t.growMu.Unlock()
	cur := t.logs()
	next := append([]*commitlog.Log(nil), cur...)
	for p := len(cur); p < cfg.Partitions; p++ {
		l, err := t.e.openLog(t.name, p, cfg, t.tail.signal)
		if err != nil {
			for _, l := range next[len(cur):] {
				l.Close()
			}
			return err
		}
		next = append(next, l)
	}
	t.parts.Store(&next)
	return nil
}

func (t *Topic) close() error {
	var errs []error
	for _, l := range t.logs() {
		if err := l.Close(); err != nil && !errors.Is(err, commitlog.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// partition picks the partition of a write: explicit, by key hash, or
// round robin. FNV-1a is stable across versions and restarts, which the
// key → partition mapping must be.
func (t *Topic) partition(w *Write, n int) (int, error) {
	if w.Partition >= 0 {
		if w.Partition >= n {
			return 0, fmt.Errorf("%w: %q has partitions 0-%d, not %d", ErrPartitionNotFound, t.name, n-1, w.Partition)
		}
		return w.Partition, nil
	}
	if len(w.Key) > 0 {
		h := fnv.New32a()
		h.Write(w.Key)
		return int(h.Sum32() % uint32(n)), nil
	}
	return int(t.rr.Add(1) % uint64(n)), nil
}

// recordHeaderPool holds scratch buffers for the stream's record headers:
// the log copies them into the batch before Append returns.
var recordHeaderPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Write stores one event and calls cb once it is durable per the topic's
// fsync policy (or failed). It never blocks on the disk; cb runs on a log's
// writer goroutine, or at once for an error or a duplicate.
func (t *Topic) Write(w *Write, cb func(Position, error)) {
	if t.deleted.Load() {
		cb(Position{}, fmt.Errorf("%w: %q", ErrTopicNotFound, t.name))
		return
	}
	cfg := t.cfg.Load()
	if n := len(w.Key) + len(w.Header) + len(w.Value); n > cfg.MaxEventBytes {
		cb(Position{}, fmt.Errorf("%w: %d bytes, %q takes at most %d", ErrTooLarge, n, t.name, cfg.MaxEventBytes))
		return
	}
	logs := t.logs()
	p, err := t.partition(w, len(logs))
	if err != nil {
		cb(Position{}, err)
		return
	}
	var pr *producer
	seq := w.Seq
	if w.Producer != nil {
		if pr = t.prod.begin(w.Producer, w.Seq, cb); pr == nil {
			return // a duplicate (answered or queued) or refused
		}
	}
	bp := recordHeaderPool.Get().(*[]byte)
	hdr := encodeRecordHeader((*bp)[:0], w.Producer, w.Seq, w.Header)
	recs := [1]commitlog.Record{{Key: w.Key, Headers: hdr, Value: w.Value}}
	done := func(off uint64, err error) {
		pos := Position{Partition: p, Offset: off}
		var retries []func(Position, error)
		if pr != nil {
			retries = t.prod.finish(pr, seq, pos, err)
		}
		if err != nil {
			err = fmt.Errorf("stream: write to %s/%d: %w", t.name, p, err)
		}
		cb(pos, err)
		pos.Duplicate = err == nil
		for _, r := range retries {
			r(pos, err)
		}
	}
	logs[p].Append(recs[:], done)
	if cap(hdr) <= 64<<10 { // keep small buffers only
		if hdr != nil {
			*bp = hdr[:0]
		}
		recordHeaderPool.Put(bp)
	}
}

// Record header layout (the log's Headers field of a stream record):
//
//	empty                                 no producer, no headers
//	flags(1) [uvarint len | producer | uvarint seq] [header block]
//
// flags bit 0: producer id and sequence follow. The rest, if any, is the
// event's NATS/1.0 header block as the producer sent it.
const flagProducer = 1

func encodeRecordHeader(dst, producer []byte, seq uint64, header []byte) []byte {
	if producer == nil && len(header) == 0 {
		return nil
	}
	if producer == nil {
		dst = append(dst, 0)
		return append(dst, header...)
	}
	dst = append(dst, flagProducer)
	dst = binary.AppendUvarint(dst, uint64(len(producer)))
	dst = append(dst, producer...)
	dst = binary.AppendUvarint(dst, seq)
	return append(dst, header...)
}

// decodeRecordHeader splits a record's headers into the producer, its
// sequence and the event's header block.
func decodeRecordHeader(b []byte) (producer []byte, seq uint64, header []byte, err error) {
	if len(b) == 0 {
		return nil, 0, nil, nil
	}
	flags, rest := b[0], b[1:]
	if flags&flagProducer != 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return nil, 0, nil, errors.New("stream: bad producer id in record")
		}
		producer, rest = rest[k:k+int(n)], rest[k+int(n):]
		seq, k = binary.Uvarint(rest)
		if k <= 0 {
			return nil, 0, nil, errors.New("stream: bad producer sequence in record")
		}
		rest = rest[k:]
	}
	if len(rest) > 0 {
		header = rest
	}
	return producer, seq, header, nil
}

// Partitions is the partition count.
func (t *Topic) Partitions() int { return len(t.logs()) }

func (t *Topic) log(p int) (*commitlog.Log, error) {
	logs := t.logs()
	if p < 0 || p >= len(logs) {
		return nil, fmt.Errorf("%w: %q has partitions 0-%d, not %d", ErrPartitionNotFound, t.name, len(logs)-1, p)
	}
	return logs[p], nil
}

// Read returns up to max events of partition p from offset on (about
// maxBytes at most, at least one if any is there), and the offset to read
// next. Reading at the high-water mark returns nothing; below the low-water
// mark or past the high-water mark, ErrOutOfRange.
func (t *Topic) Read(p int, offset uint64, max, maxBytes int) ([]Event, uint64, error) {
	l, err := t.log(p)
	if err != nil {
		return nil, offset, err
	}
	recs, err := l.Read(offset, maxBytes, nil)
	if err != nil {
		return nil, offset, t.readErr(l, p, offset, err)
	}
	return t.events(recs, p, offset, max, nil)
}

// partReader reads one partition for a consumer group with buffers kept
// from one read to the next: the events it returns are valid until its
// next read.
type partReader struct {
	r   *commitlog.Reader
	evs []Event
}

// readInto is Read through a group's partReader: no allocation per event
// or per batch once the buffers have grown.
func (t *Topic) readInto(pr *partReader, p int, offset uint64, max, maxBytes int) ([]Event, uint64, error) {
	l, err := t.log(p)
	if err != nil {
		return nil, offset, err
	}
	if pr.r == nil {
		pr.r = l.NewReader()
	}
	recs, err := pr.r.ReadN(offset, max, maxBytes)
	if err != nil {
		return nil, offset, t.readErr(l, p, offset, err)
	}
	var evs []Event
	evs, next, err := t.events(recs, p, offset, max, pr.evs[:0])
	pr.evs = evs
	return evs, next, err
}

func (t *Topic) readErr(l *commitlog.Log, p int, offset uint64, err error) error {
	if errors.Is(err, commitlog.ErrOutOfRange) {
		return fmt.Errorf("%w: %s/%d %s: %w", ErrOutOfRange, t.name, p, holds(l.LowWater(), l.HighWater()), err)
	}
	return fmt.Errorf("stream: read %s/%d at %d: %w", t.name, p, offset, err)
}

// holds says which offsets a partition has, for errors: the high-water
// mark is the next offset, not one it holds.
func holds(low, high uint64) string {
	if high <= low {
		return fmt.Sprintf("holds no events (next offset %d)", high)
	}
	return fmt.Sprintf("holds offsets %d-%d", low, high-1)
}

// events turns up to max records into events, appended to dst.
func (t *Topic) events(recs []commitlog.Record, p int, offset uint64, max int, dst []Event) ([]Event, uint64, error) {
	if len(recs) > max {
		recs = recs[:max]
	}
	if dst == nil {
		dst = make([]Event, 0, len(recs))
	}
	next := offset
	for _, r := range recs {
		_, _, hdr, err := decodeRecordHeader(r.Headers)
		if err != nil {
			return dst, next, fmt.Errorf("stream: %s/%d offset %d: %w", t.name, p, r.Offset, err)
		}
		dst = append(dst, Event{Partition: p, Offset: r.Offset, Time: r.Timestamp, Key: r.Key, Header: hdr, Value: r.Value})
		next = r.Offset + 1
	}
	return dst, next, nil
}

// Seek positions: the first offset of p at or after a time (Unix ns), or
// the earliest retained or the latest (the high-water mark).
func (t *Topic) SeekTime(p int, ts int64) (uint64, error) {
	l, err := t.log(p)
	if err != nil {
		return 0, err
	}
	off, err := l.SeekTime(ts)
	if err != nil {
		return 0, fmt.Errorf("stream: seek %s/%d: %w", t.name, p, err)
	}
	return off, nil
}

// Bounds returns the low- and high-water marks of partition p.
func (t *Topic) Bounds(p int) (low, high uint64, err error) {
	l, err := t.log(p)
	if err != nil {
		return 0, 0, err
	}
	return l.LowWater(), l.HighWater(), nil
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	Partition int    `json:"partition"`
	Low       uint64 `json:"low"`  // first retained offset
	High      uint64 `json:"high"` // next offset to be written
	Bytes     int64  `json:"bytes"`
	Segments  int    `json:"segments"`
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string          `json:"name"`
	Config     Config          `json:"config"`
	Partitions []PartitionInfo `json:"partitions"`
	Events     uint64          `json:"events"` // retained
	Bytes      int64           `json:"bytes"`
}

// Info describes the topic and each partition.
func (t *Topic) Info() TopicInfo {
	ti := TopicInfo{Name: t.name, Config: t.Config()}
	for p, l := range t.logs() {
		st := l.Stats()
		ti.Partitions = append(ti.Partitions, PartitionInfo{Partition: p, Low: st.LowWater, High: st.HighWater, Bytes: st.SizeBytes, Segments: st.Segments})
		ti.Events += st.HighWater - st.LowWater
		ti.Bytes += st.SizeBytes
	}
	return ti
}

// LogStats returns each partition's commit-log counters, by partition.
func (t *Topic) LogStats() []commitlog.Stats {
	logs := t.logs()
	out := make([]commitlog.Stats, len(logs))
	for p, l := range logs {
		out[p] = l.Stats()
	}
	return out
}

// broadcast wakes every waiter at once; it costs nothing while nobody
// waits (the common case for a topic without live consumers).
type broadcast struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting bool
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting = true
	return b.ch
}

func (b *broadcast) signal() {
	b.mu.Lock()
	if b.waiting {
		close(b.ch)
		b.ch = make(chan struct{})
		b.waiting = false
	}
	b.mu.Unlock()
}
