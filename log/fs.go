package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/flowmesh/flowmesh/internal/dirs"
)

// FS is the file system the log uses, so tests can inject faults (a full
// disk, a failing fsync) and crashes.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	Rename(from, to string) error
	// List returns the names of the directory's entries, sorted.
	List(dir string) ([]string, error)
	MkdirAll(dir string, perm os.FileMode) error
	// Lock takes an exclusive lock on name for the life of the process,
	// failing at once if another process holds it.
	Lock(name string) (io.Closer, error)
	// SyncDir makes a directory's entries (created, removed files) durable.
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Writer
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// OSFS is the real file system.
type OSFS struct{}

func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}
func (OSFS) Remove(name string) error                    { return os.Remove(name) }
func (OSFS) Rename(from, to string) error                { return os.Rename(from, to) }
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return dirs.MkdirAll(dir, perm) }

func (OSFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrLocked is returned when another process has the data directory open.
var ErrLocked = errors.New("log: data directory is in use by another process")

func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, filepath.Dir(name))
		}
		return nil, fmt.Errorf("log: lock %s: %w", name, err)
	}
	return f, nil // closing the file releases the lock
}
