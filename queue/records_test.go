package queue

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzRecords: the records a queue reads back at recovery, a job's state,
// a state record of the log (many states) and a job record's header,
// decode any bytes without panicking, and what decodes encodes back to the
// same record. The log (and Pebble, for states an older version kept
// there) checksums what it holds; this is the last line when a record is
// damaged all the same, or written by another version.
func FuzzRecords(f *testing.F) {
	for _, j := range []Job{
		{Where: Ready, Attempts: 0},
		{Where: Delayed, Attempts: 2, ReadyAt: 1_700_000_000_000_000_000},
		{Where: InFlight, Attempts: 1, Deadline: -5, LastError: "timeout"},
		{Where: Dead, Attempts: 9, DeadAt: 42, LastError: string(make([]byte, 300))},
	} {
		f.Add(encodeState(&j), encodeJobHeader(nil, -3, 5, 1<<40, []byte("NATS/1.0\r\nk: v\r\n\r\n")))
	}
	f.Add([]byte{ackedMarker}, encodeJobHeader(nil, 0, 0, 0, nil))
	f.Add([]byte{}, []byte{})
	f.Add([]byte{byte(InFlight), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte{1, 0x80})
	f.Add(encodeStateRecords([]op{{id: 7, val: encodeState(&Job{Where: InFlight, Attempts: 1, Deadline: 9})}, {id: 1 << 40}})[0].Value, []byte{stateRecordKind})
	f.Fuzz(func(t *testing.T, state, header []byte) {
		var ops []op
		if err := decodeStateRecord(state, func(id uint64, st []byte) { ops = append(ops, op{id: id, val: bytes.Clone(st)}) }); err == nil && len(ops) > 0 {
			var back []op
			for _, r := range encodeStateRecords(ops) {
				if err := decodeStateRecord(r.Value, func(id uint64, st []byte) { back = append(back, op{id: id, val: bytes.Clone(st)}) }); err != nil {
					t.Fatalf("state record %x: re-encoded, does not decode: %v", state, err)
				}
			}
			if !slices.EqualFunc(ops, back, func(a, b op) bool { return a.id == b.id && bytes.Equal(a.val, b.val) }) {
				t.Fatalf("state record %x: %v came back as %v", state, ops, back)
			}
		}
		var j Job
		if acked, err := decodeState(state, &j); err == nil && !acked {
			var back Job
			if acked2, err := decodeState(encodeState(&j), &back); err != nil || acked2 || !sameState(&j, &back) {
				t.Fatalf("state %x decoded to %+v, which encodes to a record decoding to %+v (%v, acked %v)", state, j, back, err, acked2)
			}
		}
		prio, maxAttempts, runAt, hdr, err := decodeJobHeader(header)
		if err != nil {
			return
		}
		p2, m2, r2, h2, err := decodeJobHeader(encodeJobHeader(nil, prio, maxAttempts, runAt, hdr))
		if err != nil || p2 != prio || m2 != maxAttempts || r2 != runAt || !bytes.Equal(h2, hdr) {
			t.Fatalf("job header %x: (%d %d %d %q) came back as (%d %d %d %q, %v)", header, prio, maxAttempts, runAt, hdr, p2, m2, r2, h2, err)
		}
	})
}

func sameState(a, b *Job) bool {
	return a.Where == b.Where && a.Attempts == b.Attempts && a.ReadyAt == b.ReadyAt &&
		a.Deadline == b.Deadline && a.DeadAt == b.DeadAt && a.LastError == b.LastError
}

// TestStateRecordsSplit: a round's state changes too many for one record
// (a purge of a million jobs) go in several, each under maxStateRecord,
// and read back in order.
func TestStateRecordsSplit(t *testing.T) {
	var ops []op
	for i := range 50000 {
		o := op{id: uint64(i) * 3}
		if i%2 == 0 {
			o.val = encodeState(&Job{Where: Dead, Attempts: 2, DeadAt: int64(i), LastError: "boom"})
		}
		ops = append(ops, o)
	}
	recs := encodeStateRecords(ops)
	if len(recs) < 2 {
		t.Fatalf("%d ops in %d record", len(ops), len(recs))
	}
	i := 0
	for _, r := range recs {
		if len(r.Value) > maxStateRecord || !isStateRecord(r.Headers) {
			t.Fatalf("record of %d bytes, header %x", len(r.Value), r.Headers)
		}
		err := decodeStateRecord(r.Value, func(id uint64, st []byte) {
			want := ops[i].val
			if want == nil {
				want = ackedState
			}
			if id != ops[i].id || !bytes.Equal(st, want) {
				t.Fatalf("change %d: job %d %x, want %d %x", i, id, st, ops[i].id, want)
			}
			i++
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if i != len(ops) {
		t.Fatalf("%d changes read back of %d", i, len(ops))
	}
}
