package dirs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// MkdirAll creates dir and its missing parents, and makes each new
// directory's name durable by fsyncing the directory that holds it. A log
// fsyncs its files and its own directory, but a crash could still lose
// the entry of the directory itself in its parent, and with it every
// fsynced file under it (POSIX promises nothing without the parent's
// fsync; a journaling file system usually orders it anyway).
func MkdirAll(dir string, perm os.FileMode) error {
	return mkdirAll(dir, perm, syncDir)
}

func mkdirAll(dir string, perm os.FileMode, sync func(string) error) error {
	// The directories to create, deepest first.
	var missing []string
	for d := filepath.Clean(dir); ; {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- { // from the top, as they were created
		if err := sync(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
