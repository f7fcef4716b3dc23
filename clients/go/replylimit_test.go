package flowmesh

import (
	"errors"
	"testing"
	"time"
)

// TestReplyLimit: a Worker's outcome wait ends with errReplyTimeout when
// no reply comes, leaving the call abandoned (the reader may still fill
// it in, so it is never recycled); the same limit then serves the next
// outcomes, answered before or after the wait began, with no stale fire
// of its timer from the wait that timed out.
func TestReplyLimit(t *testing.T) {
	lim := newReplyLimit(20 * time.Millisecond)

	silent := pooledCall()
	if err := lim.wait(silent); !errors.Is(err, errReplyTimeout) {
		t.Fatalf("unanswered call: %v, want errReplyTimeout", err)
	}
	if silent.state.Load() != callAbandoned {
		t.Fatalf("timed-out call state %d, want abandoned", silent.state.Load())
	}

	lim.d = time.Hour // a stale fire would now be the only way to time out
	answered := pooledCall()
	answered.err = errors.New("QACK refused")
	answered.state.Store(callAnswered)
	close(answered.done)
	if err := lim.wait(answered); err == nil || err.Error() != "QACK refused" {
		t.Fatalf("answered call: %v, want its reply's error", err)
	}

	late := pooledCall()
	go func() {
		late.state.Store(callAnswered)
		close(late.done)
	}()
	if err := lim.wait(late); err != nil {
		t.Fatalf("call answered during the wait: %v", err)
	}
	releaseCall(late)
}
