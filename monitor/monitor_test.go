package monitor

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// readyNode is a Node whose readiness the test sets; /readyz calls
// nothing else.
type readyNode struct {
	Node
	err error
}

func (n readyNode) Ready() error { return n.err }

// /readyz answers 503 with the reason while the node is not ready (a
// failing store), 200 once it is.
func TestReadyz(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		body string
	}{
		{nil, http.StatusOK, "ready\n"},
		{errors.New("store /data/kv/db: 3 background writes failed in a row: no space left on device"),
			http.StatusServiceUnavailable, "not ready: store /data/kv/db: 3 background writes failed in a row: no space left on device\n"},
	} {
		rec := httptest.NewRecorder()
		Handler(readyNode{err: tc.err}).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != tc.code || string(body) != tc.body {
			t.Errorf("ready err %v: %d %q, want %d %q", tc.err, rec.Code, body, tc.code, tc.body)
		}
	}
}
