package queue

import (
	"bytes"
	"testing"
)

// FuzzRecords: the two records a queue reads back at recovery, a job's
// state (Pebble) and a job record's header (the log), decode any bytes
// without panicking, and what decodes encodes back to the same record.
// Both stores checksum what they hold; this is the last line when a
// record is damaged all the same, or written by another version.
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
	f.Fuzz(func(t *testing.T, state, header []byte) {
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
