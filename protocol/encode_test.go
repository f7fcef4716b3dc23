package protocol

import (
	"strconv"
	"testing"
)

// TestAppendSWrite: the in-place encoder writes what AppendSized writes
// with the same arguments as strings, and the parser reads it back.
func TestAppendSWrite(t *testing.T) {
	for _, tc := range []struct {
		name, key, producer string
		partition           int
		seq                 uint64
		hdr, payload        []byte
	}{
		{name: "plain", partition: -1, payload: []byte("v")},
		{name: "key", key: "cust-42", partition: -1, payload: []byte("value")},
		{name: "partition", partition: 7, payload: []byte{}},
		{name: "producer", producer: "producer=p1", seq: 18446744073709551615, partition: -1, payload: []byte("x")},
		{name: "all", key: "k", partition: 0, producer: "producer=abc", seq: 3, hdr: []byte("NATS/1.0\r\ntrace_id: t\r\n\r\n"), payload: []byte("body")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"orders"}
			if tc.key != "" {
				args = append(args, "key="+tc.key)
			}
			if tc.partition >= 0 {
				args = append(args, "partition="+strconv.Itoa(tc.partition))
			}
			if tc.producer != "" {
				args = append(args, tc.producer, "seq="+strconv.FormatUint(tc.seq, 10))
			}
			want := AppendSized(nil, "SWRITE", args, tc.hdr, tc.payload)
			got := AppendSWrite(nil, "orders", tc.key, tc.partition, tc.producer, tc.seq, tc.hdr, tc.payload)
			if string(got) != string(want) {
				t.Fatalf("got %q, want %q", got, want)
			}
			p := NewParser(NewTable(StreamSpecs()...), Limits{})
			var f Frame
			n, _, err := p.Next(got, &f)
			if err != nil || n != len(got) || string(f.Payload) != string(tc.payload) || len(f.Args) != len(args) {
				t.Fatalf("parsed %d of %d bytes: %+v, %v", n, len(got), f, err)
			}
		})
	}
}

// TestAppendOKNums: the numeric OK encoder writes what AppendOK writes
// with the numbers as arguments.
func TestAppendOKNums(t *testing.T) {
	for _, tc := range []struct {
		suffix string
		nums   []uint64
		want   string
	}{
		{"", nil, "+OK\r\n"},
		{"", []uint64{0, 7}, "+OK 0 7\r\n"},
		{"duplicate", []uint64{3, 18446744073709551615}, "+OK 3 18446744073709551615 duplicate\r\n"},
		{"duplicate", []uint64{42}, "+OK 42 duplicate\r\n"},
	} {
		if got := string(AppendOKNums([]byte("x"), tc.suffix, tc.nums...)); got != "x"+tc.want {
			t.Errorf("AppendOKNums(%q, %v) = %q, want %q", tc.suffix, tc.nums, got, "x"+tc.want)
		}
	}
}
