package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowmesh/flowmesh/kv/store"
)

// Idempotent producers.
//
// A producer names itself with an id and numbers its writes 1, 2, 3...; a
// write whose (id, seq) the topic has seen is not stored again and is
// answered with the first write's position. The table remembers the last
// dedupWindow sequences of each producer (a retry comes within the
// producer's in-flight window, far below that); an older one fails with
// ErrOutOfSequence rather than being stored twice or silently dropped.
// Sequences need not be dense: any sequence above the last one is new.
//
// Durability: each stored record carries its producer id and sequence in
// its headers, and the table is saved to Pebble every 10 s and on close
// together with, per partition, the offset below which every idempotent
// write has been folded in. Recovery loads the snapshot and re-reads each
// partition from that offset, so the table is exact after a crash.
// Producers unseen for producerTTL are forgotten.

// dedupWindow bounds how far back a retry is recognised. A producer must
// not have more idempotent writes in flight than this (the Go SDK keeps at
// most MaxInflightWrites): a retry of a write older than the window cannot
// be told from a write the topic never got, so it is refused.
const (
	dedupWindow = 1024
	producerTTL = 7 * 24 * time.Hour
)

type producers struct {
	mu      sync.Mutex
	m       map[string]*producer
	covered []uint64 // per partition: idempotent writes below it are in m
	dirty   bool
}

type producer struct {
	last uint64 // highest sequence seen
	seen int64  // Unix ns of the last write
	ring []doneWrite
	// retries holds the callbacks of retries that came while the first
	// write of their sequence was in flight; nil until one does.
	retries map[uint64][]func(Position, error)
}

// doneWrite is one remembered write, at ring[seq % dedupWindow] (24
// bytes: a producer's whole window is 24 KiB). seq 0 marks an empty slot:
// sequences start at 1. inFlight: the write is being stored; its position
// is not known yet. The slot doubles as the in-flight mark so that a write
// costs no allocation here: a map entry and a waiter list per write were a
// sixth of the server's CPU for batched writes.
type doneWrite struct {
	seq       uint64
	offset    uint64
	partition uint32
	inFlight  bool
}

func (d doneWrite) pos() Position { return Position{Partition: int(d.partition), Offset: d.offset} }

func (ps *producers) init() {
	if ps.m == nil {
		ps.m = make(map[string]*producer)
	}
}

func (ps *producers) get(id []byte) *producer {
	ps.init()
	pr := ps.m[string(id)]
	if pr == nil {
		pr = &producer{ring: make([]doneWrite, dedupWindow)}
		ps.m[string(id)] = pr
	}
	return pr
}

// begin registers (id, seq). It returns the producer if the write is new
// and must be stored (then finish must follow, with that producer), or
// nil if cb was already handled: answered as a duplicate, queued behind
// the same write in flight, or failed (too old, or too far ahead of a
// write still in flight). A write that failed is forgotten, so its retry
// is new.
func (ps *producers) begin(id []byte, seq uint64, cb func(Position, error)) *producer {
	ps.mu.Lock()
	pr := ps.get(id)
	pr.seen = time.Now().UnixNano()
	d := &pr.ring[seq%dedupWindow]
	switch {
	case d.seq == seq && seq != 0 && !d.inFlight:
		pos := d.pos()
		ps.mu.Unlock()
		pos.Duplicate = true
		cb(pos, nil)
		return nil
	case d.seq == seq && seq != 0:
		if pr.retries == nil {
			pr.retries = make(map[uint64][]func(Position, error))
		}
		pr.retries[seq] = append(pr.retries[seq], cb)
		ps.mu.Unlock()
		return nil
	case pr.last >= dedupWindow && seq <= pr.last-dedupWindow:
		last := pr.last
		ps.mu.Unlock()
		cb(Position{}, fmt.Errorf("%w: producer %q sequence %d, last %d, window %d", ErrOutOfSequence, id, seq, last, dedupWindow))
		return nil
	case d.inFlight:
		// The slot's write, dedupWindow or more sequences back, is still
		// in flight: more writes in flight than the window remembers.
		held := d.seq
		ps.mu.Unlock()
		cb(Position{}, fmt.Errorf("%w: producer %q sequence %d while %d is in flight, window %d", ErrOutOfSequence, id, seq, held, dedupWindow))
		return nil
	}
	*d = doneWrite{seq: seq, inFlight: true}
	pr.last = max(pr.last, seq)
	ps.dirty = true
	ps.mu.Unlock()
	return pr
}

// finish records the outcome of pr's write seq and returns the callbacks
// of its retries, which the caller answers (marked Duplicate) after the
// write's own.
func (ps *producers) finish(pr *producer, seq uint64, pos Position, err error) []func(Position, error) {
	ps.mu.Lock()
	d := &pr.ring[seq%dedupWindow]
	if err == nil {
		*d = doneWrite{seq: seq, offset: pos.Offset, partition: uint32(pos.Partition)}
		for len(ps.covered) <= pos.Partition {
			ps.covered = append(ps.covered, 0)
		}
		// Callbacks of one log run in offset order, so every idempotent
		// write below this offset has been folded in too.
		ps.covered[pos.Partition] = max(ps.covered[pos.Partition], pos.Offset+1)
	} else if d.seq == seq {
		*d = doneWrite{}
	}
	var retries []func(Position, error)
	if pr.retries != nil {
		retries = pr.retries[seq]
		delete(pr.retries, seq)
	}
	ps.mu.Unlock()
	return retries
}

// replay folds a stored record into the table (recovery).
func (ps *producers) replay(id []byte, seq uint64, pos Position, ts int64) {
	pr := ps.get(id)
	pr.seen = max(pr.seen, ts)
	pr.last = max(pr.last, seq)
	if d := &pr.ring[seq%dedupWindow]; d.seq <= seq {
		*d = doneWrite{seq: seq, offset: pos.Offset, partition: uint32(pos.Partition)}
	}
}

// snapshot is the saved form of the table.
type snapshot struct {
	Covered   []uint64                  `json:"covered"`
	Producers map[string]producerRecord `json:"producers"`
}

type producerRecord struct {
	Last    uint64      `json:"last"`
	Seen    int64       `json:"seen"`
	Entries [][3]uint64 `json:"entries"` // seq, partition, offset
}

func producerKey(topic string) []byte { return []byte("p/" + topic) }

// saveProducers writes the table to Pebble if it changed (or always, with
// force), dropping producers unseen for producerTTL.
func (t *Topic) saveProducers(force bool) {
	ps := &t.prod
	ps.mu.Lock()
	if !ps.dirty && !force || t.deleted.Load() {
		ps.mu.Unlock()
		return
	}
	snap := snapshot{Covered: append([]uint64(nil), ps.covered...), Producers: make(map[string]producerRecord, len(ps.m))}
	cutoff := time.Now().Add(-producerTTL).UnixNano()
	for id, pr := range ps.m {
		if pr.seen < cutoff {
			delete(ps.m, id)
			continue
		}
		rec := producerRecord{Last: pr.last, Seen: pr.seen}
		for _, d := range pr.ring {
			if d.seq != 0 && !d.inFlight {
				rec.Entries = append(rec.Entries, [3]uint64{d.seq, uint64(d.partition), d.offset})
			}
		}
		snap.Producers[id] = rec
	}
	ps.dirty = false
	ps.mu.Unlock()
	b, _ := json.Marshal(snap)
	if err := t.e.opts.Store.Set(store.KeyspaceStream, producerKey(t.name), b); err != nil {
		t.e.opts.Logger.Warn("stream: producer table not saved; recovery will re-read more", "topic", t.name, "err", err)
		ps.mu.Lock()
		ps.dirty = true
		ps.mu.Unlock()
	}
}

// loadProducers rebuilds the table: the snapshot, then every record
// written after it.
func (t *Topic) loadProducers() error {
	ps := &t.prod
	ps.init()
	var snap snapshot
	b, err := t.e.opts.Store.Get(store.KeyspaceStream, producerKey(t.name))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("stream: load producers of %q: %w", t.name, err)
	default:
		if err := json.Unmarshal(b, &snap); err != nil {
			t.e.opts.Logger.Warn("stream: producer snapshot unreadable; rebuilding from the logs", "topic", t.name, "err", err)
			snap = snapshot{}
		}
	}
	for id, rec := range snap.Producers {
		pr := ps.get([]byte(id))
		pr.last, pr.seen = rec.Last, rec.Seen
		for _, e := range rec.Entries {
			pr.ring[e[0]%dedupWindow] = doneWrite{seq: e[0], offset: e[2], partition: uint32(e[1])}
		}
	}
	scanned := 0
	for p, l := range t.logs() {
		from := l.LowWater()
		if p < len(snap.Covered) {
			from = max(from, snap.Covered[p])
		}
		ps.covered = append(ps.covered, from)
		for off := from; off < l.HighWater(); {
			recs, err := l.Read(off, 4<<20, nil)
			if err != nil || len(recs) == 0 {
				// A damaged range cannot hold a dedup entry we could use;
				// say so and go on from the next segment's data.
				t.e.opts.Logger.Warn("stream: producer recovery stopped early", "topic", t.name, "partition", p, "offset", off, "err", err)
				break
			}
			for _, r := range recs {
				if id, seq, _, err := decodeRecordHeader(r.Headers); err == nil && id != nil {
					ps.replay(id, seq, Position{Partition: p, Offset: r.Offset}, r.Timestamp)
				}
				off = r.Offset + 1
				scanned++
			}
			ps.covered[p] = off
		}
	}
	if scanned > 0 {
		ps.dirty = true
		t.e.opts.Logger.Info("stream: producer table recovered", "topic", t.name, "producers", len(ps.m), "events_rescanned", scanned)
	}
	return nil
}
