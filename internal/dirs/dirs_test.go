package dirs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDiscardAndSweep(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "orders", "0"), 0o755)
	if err := Discard(root, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "orders")); !os.IsNotExist(err) {
		t.Fatalf("directory still there: %v", err)
	}
	if err := Discard(root, "never-was"); err != nil {
		t.Fatalf("missing directory: %v", err)
	}
	os.MkdirAll(filepath.Join(root, trashPrefix+"old-1"), 0o755)
	Sweep(root)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) { // removal is in the background
		entries, _ := os.ReadDir(root)
		if len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v", entries)
		}
	}
}

// MkdirAll fsyncs the parent of every directory it creates, and nothing
// when the directory exists.
func TestMkdirAllSyncsParents(t *testing.T) {
	root := t.TempDir()
	var synced []string
	rec := func(d string) error { synced = append(synced, d); return nil }
	dir := filepath.Join(root, "orders", "3")
	if err := mkdirAll(dir, 0o755, rec); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("not created: %v", err)
	}
	want := []string{root, filepath.Join(root, "orders")}
	if !slices.Equal(synced, want) {
		t.Fatalf("synced %q, want %q", synced, want)
	}
	synced = nil
	if err := mkdirAll(dir, 0o755, rec); err != nil || len(synced) != 0 {
		t.Fatalf("existing dir: %v, synced %q", err, synced)
	}
	if err := MkdirAll(filepath.Join(root, "orders", "4"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkdirAll(filepath.Join(root, "orders", "3", "x"), 0o755, func(string) error { return errors.New("disk gone") }); err == nil {
		t.Fatal("a failed fsync was not reported")
	}
}

// TestDeleting: Wait holds a creation of a name while its deletion is
// under way, with the lock released meanwhile, and returns with it held.
func TestDeleting(t *testing.T) {
	var mu sync.Mutex
	d := Deleting{}
	mu.Lock()
	done := d.Add(&mu, "orders")
	d.Wait(&mu, "other") // another name: no wait
	mu.Unlock()
	waited := make(chan struct{})
	go func() {
		mu.Lock()
		d.Wait(&mu, "orders")
		if _, ok := d["orders"]; ok {
			t.Error("Wait returned while the name is being deleted")
		}
		mu.Unlock()
		close(waited)
	}()
	mu.Lock() // Wait released the lock while it waits
	select {
	case <-waited:
		t.Fatal("Wait returned before the deletion was done")
	default:
	}
	mu.Unlock()
	done()
	<-waited
}
