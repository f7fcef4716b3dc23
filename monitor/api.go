package monitor

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/flowmesh/flowmesh/kv"
	"github.com/flowmesh/flowmesh/queue"
	"github.com/flowmesh/flowmesh/stream"
)

// The JSON REST API (read side) for the web UI and curl users; described
// by docs/openapi.yaml.

// API is what the REST routes read from the node.
type API interface {
	Queues() []queue.Info
	Queue(name string) (queue.Info, error)
	// BrowseQueue is a page of jobs in a state, from an ID on; next is
	// where the following page starts (more false at the end).
	BrowseQueue(name, state string, from uint64, limit int) (jobs []queue.JobView, next uint64, more bool, err error)
	Topics() []stream.TopicInfo
	Topic(name string) (stream.TopicInfo, error)
	Groups(topic string) ([]stream.GroupInfo, error)
	Group(topic, group string) (stream.GroupInfo, error)
	Workers() []queue.WorkerInfo
	KV() KVInfo
	// Config is the node's configuration as it runs.
	Config() any
}

// KVInfo is the KV engine's state.
type KVInfo struct {
	kv.Stats
	Ops map[string]uint64 `json:"ops"` // commands run, by name
}

// ErrNotFound is what an API method returns for a name that does not
// exist (wrapped or not): the route answers 404.
var ErrNotFound = errors.New("not found")

// ErrBadRequest marks an argument the route should answer 400 for.
var ErrBadRequest = errors.New("bad request")

func apiRoutes(mux *http.ServeMux, a API) {
	get := func(path string, fn func(r *http.Request) (any, error)) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn(r)
			w.Header().Set("Content-Type", "application/json")
			if err != nil {
				code := http.StatusInternalServerError
				switch {
				case errors.Is(err, ErrNotFound):
					code = http.StatusNotFound
				case errors.Is(err, ErrBadRequest):
					code = http.StatusBadRequest
				}
				w.WriteHeader(code)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
				return
			}
			_ = json.NewEncoder(w).Encode(v)
		})
	}
	get("/api/v1/queues", func(*http.Request) (any, error) { return a.Queues(), nil })
	get("/api/v1/queues/{name}", func(r *http.Request) (any, error) { return a.Queue(r.PathValue("name")) })
	get("/api/v1/queues/{name}/jobs", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		state := q.Get("state")
		if state == "" {
			state = "ready"
		}
		from, limit := uint64(0), 100
		if s := q.Get("from"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, errors.Join(ErrBadRequest, errors.New("from: want a job id"))
			}
			from = n
		}
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1000 {
				return nil, errors.Join(ErrBadRequest, errors.New("limit: want 1 to 1000"))
			}
			limit = n
		}
		jobs, next, more, err := a.BrowseQueue(r.PathValue("name"), state, from, limit)
		if err != nil {
			return nil, err
		}
		page := struct {
			Jobs []queue.JobView `json:"jobs"`
			Next *uint64         `json:"next,omitempty"`
		}{Jobs: jobs}
		if page.Jobs == nil {
			page.Jobs = []queue.JobView{}
		}
		if more {
			page.Next = &next
		}
		return page, nil
	})
	get("/api/v1/topics", func(*http.Request) (any, error) { return a.Topics(), nil })
	get("/api/v1/topics/{name}", func(r *http.Request) (any, error) { return a.Topic(r.PathValue("name")) })
	get("/api/v1/topics/{name}/groups", func(r *http.Request) (any, error) { return a.Groups(r.PathValue("name")) })
	get("/api/v1/topics/{name}/groups/{group}", func(r *http.Request) (any, error) {
		return a.Group(r.PathValue("name"), r.PathValue("group"))
	})
	get("/api/v1/workers", func(*http.Request) (any, error) { return a.Workers(), nil })
	get("/api/v1/kv", func(*http.Request) (any, error) { return a.KV(), nil })
	get("/api/v1/config", func(*http.Request) (any, error) { return a.Config(), nil })
}
