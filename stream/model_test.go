package stream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowmesh/flowmesh/internal/seeds"

	"github.com/flowmesh/flowmesh/kv/store"
)

// TestTopicAgainstModel drives a topic with random writes (keyed, unkeyed,
// to a named partition, with headers, idempotent with new sequences and
// with retries of old ones), time passing, partitions added and restarts,
// and checks every answer against a plain model: positions, duplicates,
// reads from random offsets, seeks by time and bounds.
// FLOWMESH_STREAM_MODEL_SEEDS sets how many seeds run (default 6).
func TestTopicAgainstModel(t *testing.T) {
	seeds.Run(t, "FLOWMESH_STREAM_MODEL_SEEDS", 1, 6, func(t *testing.T, seed uint64) { runTopicModel(t, seed, 300) })
}

type modelEvent struct {
	key, header, value string
	time               int64
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func runTopicModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 13))
	dir := t.TempDir()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var st *store.Store
	var e *Engine
	open := func() {
		var err error
		if st, err = store.Open(dir+"/meta", store.Options{Logger: quiet}); err != nil {
			t.Fatal(err)
		}
		if e, err = Open(Options{Dir: dir + "/streams", Store: st, Defaults: defaults(3), Logger: quiet, Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
	}
	closeAll := func() {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	open()
	defer func() { closeAll() }()
	tp, err := e.Create("m", defaults(3))
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]modelEvent{nil, nil, nil}
	keyPart := map[string]int{}                // the partition a key went to, since the last growth
	writes := map[string]map[uint64]Position{} // producer -> seq -> where it was stored
	last := map[string]uint64{}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		tail := log
		if len(tail) > 25 {
			tail = tail[len(tail)-25:]
		}
		t.Fatalf("seed %d step %d: %s\n  %s", seed, len(log), fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
	}
	for step := 0; step < steps; step++ {
		switch r := rng.IntN(100); {
		case r < 45: // a write
			w := Write{Partition: -1, Value: []byte(fmt.Sprint("v", step))}
			if rng.IntN(2) == 0 {
				w.Key = []byte(fmt.Sprint("key", rng.IntN(5)))
			} else if rng.IntN(3) == 0 {
				w.Partition = rng.IntN(len(parts))
			}
			if rng.IntN(3) == 0 {
				w.Header = []byte(fmt.Sprintf("NATS/1.0\r\nTrace: t%d\r\n\r\n", step))
			}
			prod := ""
			if rng.IntN(2) == 0 {
				prod = fmt.Sprint("p", rng.IntN(3))
				last[prod] += uint64(1 + rng.IntN(3)) // sequences need not be dense
				w.Producer, w.Seq = []byte(prod), last[prod]
			}
			pos, err := tryWrite(tp, w)
			log = append(log, fmt.Sprintf("write key=%q part=%d prod=%s/%d -> %+v %v", w.Key, w.Partition, prod, w.Seq, pos, err))
			if err != nil || pos.Duplicate {
				fail("write: %+v %v", pos, err)
			}
			if w.Partition >= 0 && pos.Partition != w.Partition {
				fail("written to partition %d, asked for %d", pos.Partition, w.Partition)
			}
			if k := string(w.Key); k != "" && w.Partition < 0 {
				if p, ok := keyPart[k]; ok && p != pos.Partition {
					fail("key %s went to partition %d, before to %d", k, pos.Partition, p)
				}
				keyPart[k] = pos.Partition
			}
			if pos.Offset != uint64(len(parts[pos.Partition])) {
				fail("offset %d in partition %d, which held %d events", pos.Offset, pos.Partition, len(parts[pos.Partition]))
			}
			parts[pos.Partition] = append(parts[pos.Partition], modelEvent{string(w.Key), string(w.Header), string(w.Value), clk.Now().UnixNano()})
			if prod != "" {
				if writes[prod] == nil {
					writes[prod] = map[uint64]Position{}
				}
				writes[prod][w.Seq] = pos
			}
		case r < 55: // a retry of an idempotent write: stored once
			var prods []string
			for p := range writes {
				prods = append(prods, p)
			}
			if len(prods) == 0 {
				continue
			}
			slices.Sort(prods)
			prod := prods[rng.IntN(len(prods))]
			var seqs []uint64
			for s := range writes[prod] {
				seqs = append(seqs, s)
			}
			slices.Sort(seqs)
			seq := seqs[rng.IntN(len(seqs))]
			want := writes[prod][seq]
			pos, err := tryWrite(tp, Write{Partition: -1, Value: []byte("retry"), Producer: []byte(prod), Seq: seq})
			log = append(log, fmt.Sprintf("retry %s/%d -> %+v %v", prod, seq, pos, err))
			if err != nil || !pos.Duplicate || pos.Partition != want.Partition || pos.Offset != want.Offset {
				fail("retry of %s/%d: %+v %v, want the first write's %+v", prod, seq, pos, err, want)
			}
		case r < 65: // time passes
			d := time.Duration(rng.IntN(3000)) * time.Millisecond
			clk.Add(d)
			log = append(log, fmt.Sprint("time +", d))
		case r < 80: // read from a random offset
			p := rng.IntN(len(parts))
			off := uint64(rng.IntN(len(parts[p]) + 1))
			max := 1 + rng.IntN(5)
			evs, next, err := tp.Read(p, off, max, 1<<20)
			log = append(log, fmt.Sprintf("read %d@%d max %d -> %d events, next %d, %v", p, off, max, len(evs), next, err))
			if err != nil {
				fail("read: %v", err)
			}
			want := parts[p][off:]
			if len(want) > max {
				want = want[:max]
			}
			if len(evs) != len(want) || next != off+uint64(len(evs)) {
				fail("read %d events, next %d; want %d, next %d", len(evs), next, len(want), off+uint64(len(want)))
			}
			for i, ev := range evs {
				w := want[i]
				if ev.Offset != off+uint64(i) || string(ev.Key) != w.key || string(ev.Header) != w.header ||
					string(ev.Value) != w.value || ev.Time != w.time || ev.Partition != p {
					fail("event %d: %+v, want %+v", off+uint64(i), ev, w)
				}
			}
		case r < 88: // seek by time, and the bounds
			p := rng.IntN(len(parts))
			ts := time.Unix(1_700_000_000, 0).UnixNano() + int64(rng.IntN(int(clk.Now().UnixNano()-time.Unix(1_700_000_000, 0).UnixNano())+1))
			off, err := tp.SeekTime(p, ts)
			want := uint64(len(parts[p]))
			for i, ev := range parts[p] {
				if ev.time >= ts {
					want = uint64(i)
					break
				}
			}
			log = append(log, fmt.Sprintf("seek %d to %d -> %d %v", p, ts, off, err))
			if err != nil || off != want {
				fail("seek: %d %v, want %d", off, err, want)
			}
			low, high, err := tp.Bounds(p)
			if err != nil || low != 0 || high != uint64(len(parts[p])) {
				fail("bounds %d-%d %v, want 0-%d", low, high, err, len(parts[p]))
			}
		case r < 92: // more partitions
			if len(parts) >= 6 {
				continue
			}
			n := len(parts) + 1
			if _, err := e.Alter("m", func(c *Config) error { c.Partitions = n; return nil }); err != nil {
				fail("alter: %v", err)
			}
			parts = append(parts, nil)
			clear(keyPart) // keys map to partitions anew
			log = append(log, fmt.Sprint("partitions ", n))
		default: // restart
			closeAll()
			open()
			if tp, err = e.Topic("m", false); err != nil {
				t.Fatal(err)
			}
			if tp.Partitions() != len(parts) {
				fail("%d partitions after a restart, want %d", tp.Partitions(), len(parts))
			}
			log = append(log, "restart")
		}
	}
	// Everything again, from the start, after a last restart.
	closeAll()
	open()
	if tp, err = e.Topic("m", false); err != nil {
		t.Fatal(err)
	}
	for p, want := range parts {
		evs, _, err := tp.Read(p, 0, len(want)+1, 64<<20)
		if err != nil || len(evs) != len(want) {
			fail("partition %d after a restart: %d events %v, want %d", p, len(evs), err, len(want))
		}
		for i, ev := range evs {
			if !bytes.Equal(ev.Value, []byte(want[i].value)) || ev.Time != want[i].time {
				fail("partition %d event %d after a restart: %+v, want %+v", p, i, ev, want[i])
			}
		}
	}
}
