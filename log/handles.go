package log

import (
	"fmt"
	"os"
	"sync"

	"github.com/flowmesh/flowmesh/internal/fdlimit"
)

// Handles bounds how many sealed segments keep their file open, across
// every log that shares it. A sealed segment is read rarely (a consumer
// catching up, a rewind, a replay), yet a log that rolls often piles them
// up: 256 MiB segments written at 50 MB/s are 17k a day, and partitions
// multiply that. Kept open, they would take the process to its open-file
// limit, after which new segments, partitions and connections fail. So a
// sealed segment's file is opened when a reader pins it and, once no
// reader holds it, kept open among the most recently used, up to the
// limit; past it, the least recently used is closed. Active segments are
// always open and not counted.
//
// One mutex guards every segment's pin count, its open file when sealed,
// and the list: pins come a read call at a time (a batch of records), not
// a record at a time.
type Handles struct {
	mu    sync.Mutex
	limit int
	open  int      // sealed segments whose file is open
	head  *segment // most recently released; lruNext goes towards older
	tail  *segment

	opens  uint64 // files opened again for a reader
	closes uint64 // files closed to stay within the limit
}

// NewHandles returns a cache of at most limit open sealed segments
// (at least 1).
func NewHandles(limit int) *Handles { return &Handles{limit: max(limit, 1)} }

// DefaultHandleLimit is a quarter of the open-file limit, at most 4096.
// A segment read after its file was closed costs one open(2) more; its
// pages stay in the page cache either way.
func DefaultHandleLimit() int { return min(4096, max(64, fdlimit.Limit()/4)) }

// defaultHandles serves the logs opened without Options.Handles.
var defaultHandles = NewHandles(DefaultHandleLimit())

// HandleStats is a snapshot of a Handles.
type HandleStats struct {
	Limit, Open   int
	Opens, Closes uint64
}

// Stats returns a snapshot.
func (h *Handles) Stats() HandleStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HandleStats{Limit: h.limit, Open: h.open, Opens: h.opens, Closes: h.closes}
}

// pin makes s's file usable until unpin: false if retention removed s.
// A sealed segment whose file was closed is opened again (read-only:
// nothing writes to a sealed segment).
func (h *Handles) pin(s *segment, fs FS) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.doomed {
		return false, nil
	}
	if s.f == nil {
		f, err := fs.OpenFile(s.path, os.O_RDONLY, 0)
		if err != nil {
			return false, fmt.Errorf("log: %w", err)
		}
		if err := checkFileLimit(f, "open segment "+s.path); err != nil {
			f.Close()
			return false, err
		}
		s.f = f
		h.open++
		h.opens++
		h.trim()
	} else if s.listed {
		h.unlink(s)
	}
	s.refs++
	return true, nil
}

// unpin ends a pin. The last one closes a removed segment's file, or
// lists a sealed one as closable.
func (h *Handles) unpin(s *segment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	switch {
	case s.doomed:
		h.closeFile(s)
	case s.sealed:
		h.push(s)
		h.trim()
	}
}

// seal counts s among the sealed segments: nothing writes to it any
// more, so its file may be closed while nothing pins it.
func (h *Handles) seal(s *segment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.sealed {
		return
	}
	s.sealed = true
	if s.f == nil {
		return
	}
	h.open++
	if s.refs == 0 && !s.doomed {
		h.push(s)
		h.trim()
	}
}

// remove marks s removed; its file closes now or at its last unpin.
func (h *Handles) remove(s *segment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.doomed = true
	if s.refs == 0 {
		h.closeFile(s)
	}
}

// closeFile closes s's file, if open, and forgets it. Call with h.mu held
// and no pin on s.
func (h *Handles) closeFile(s *segment) error {
	if s.listed {
		h.unlink(s)
	}
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if s.sealed {
		h.open--
	}
	return err
}

// trim closes the least recently used listed files while over the limit.
func (h *Handles) trim() {
	for h.open > h.limit && h.tail != nil {
		h.closeFile(h.tail)
		h.closes++
	}
}

func (h *Handles) push(s *segment) {
	s.listed, s.lruPrev, s.lruNext = true, nil, h.head
	if h.head != nil {
		h.head.lruPrev = s
	} else {
		h.tail = s
	}
	h.head = s
}

func (h *Handles) unlink(s *segment) {
	if s.lruPrev != nil {
		s.lruPrev.lruNext = s.lruNext
	} else {
		h.head = s.lruNext
	}
	if s.lruNext != nil {
		s.lruNext.lruPrev = s.lruPrev
	} else {
		h.tail = s.lruPrev
	}
	s.listed, s.lruPrev, s.lruNext = false, nil, nil
}
