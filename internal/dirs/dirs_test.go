package dirs

import (
	"os"
	"path/filepath"
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
