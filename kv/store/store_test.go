package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestStore(t *testing.T) {
	for _, mem := range []bool{true, false} {
		t.Run(fmt.Sprintf("in_memory=%v", mem), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{InMemory: mem, Sync: true, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(KeyspaceLog, []byte("x")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing key: %v", err)
			}
			for i := 0; i < 5; i++ {
				s.Set(KeyspaceStream, []byte(fmt.Sprintf("orders/%d", i)), []byte{byte(i)})
			}
			s.Set(KeyspaceQueue, []byte("orders/9"), []byte("other keyspace"))
			s.Set(KeyspaceStream, []byte("ordersX"), []byte("other prefix"))
			var keys []string
			s.Scan(KeyspaceStream, []byte("orders/"), func(k, v []byte) bool {
				keys = append(keys, string(k))
				return true
			})
			if fmt.Sprint(keys) != "[orders/0 orders/1 orders/2 orders/3 orders/4]" {
				t.Fatalf("scan = %v", keys)
			}
			s.Delete(KeyspaceStream, []byte("orders/0"))
			ns := s.Namespace(KeyspaceLog, "topic/orders/0/")
			if err := ns.Set("low_water", []byte("8bytes!!")); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := ns.Get("low_water"); !ok || err != nil || string(v) != "8bytes!!" {
				t.Fatalf("namespace get: %q %v %v", v, ok, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if mem {
				return
			}
			s, err = Open(dir, Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Get(KeyspaceStream, []byte("orders/0")); !errors.Is(err, ErrNotFound) {
				t.Fatal("deleted key back after reopen")
			}
			if v, _ := s.Get(KeyspaceStream, []byte("orders/3")); len(v) != 1 || v[0] != 3 {
				t.Fatalf("after reopen: %v", v)
			}
		})
	}
}

func TestUpperBound(t *testing.T) {
	for in, want := range map[string]string{"a": "b", "a\xff": "b", "\xff\xff": ""} {
		if got := string(upperBound([]byte(in))); got != want {
			t.Errorf("upperBound(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBatch(t *testing.T) {
	s, err := Open(t.TempDir(), Options{InMemory: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 3; i++ {
		s.Set(KeyspaceStream, []byte(fmt.Sprintf("o/orders/%d", i)), []byte{1})
	}
	s.Set(KeyspaceStream, []byte("o/ordersX/0"), []byte{1})
	b := s.NewBatch()
	b.DeletePrefix(KeyspaceStream, []byte("o/orders/"))
	b.Set(KeyspaceStream, []byte("t/new"), []byte("v"))
	b.Delete(KeyspaceStream, []byte("absent"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	s.Scan(KeyspaceStream, nil, func(k, v []byte) bool { keys = append(keys, string(k)); return true })
	if fmt.Sprint(keys) != "[o/ordersX/0 t/new]" {
		t.Fatalf("after batch: %v", keys)
	}
}
