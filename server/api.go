package server

import (
	"errors"
	"fmt"

	"github.com/flowmesh/flowmesh/monitor"
	"github.com/flowmesh/flowmesh/queue"
	"github.com/flowmesh/flowmesh/stream"
)

// The monitor's REST API reads the node through these (monitor.API).

func apiErr(err error) error {
	if errors.Is(err, queue.ErrQueueNotFound) || errors.Is(err, stream.ErrTopicNotFound) ||
		errors.Is(err, stream.ErrGroupNotFound) {
		return fmt.Errorf("%w: %v", monitor.ErrNotFound, err)
	}
	return err
}

func (m monitorNode) Queues() []queue.Info { return m.s.Metrics().Queues }

func (m monitorNode) Queue(name string) (queue.Info, error) {
	q, err := m.s.queues.Queue(name, false)
	if err != nil {
		return queue.Info{}, apiErr(err)
	}
	return q.Info(), nil
}

func (m monitorNode) BrowseQueue(name, state string, from uint64, limit int) ([]queue.JobView, uint64, bool, error) {
	where, ok := whereNames[state]
	if !ok {
		return nil, 0, false, fmt.Errorf("%w: state %q: want ready, delayed, in_flight or dead", monitor.ErrBadRequest, state)
	}
	q, err := m.s.queues.Queue(name, false)
	if err != nil {
		return nil, 0, false, apiErr(err)
	}
	return q.Browse(where, from, limit)
}

func (m monitorNode) Topics() []stream.TopicInfo {
	out := []stream.TopicInfo{}
	for _, name := range m.s.streams.Topics() {
		if t, err := m.s.streams.Topic(name, false); err == nil {
			out = append(out, t.Info())
		}
	}
	return out
}

func (m monitorNode) Topic(name string) (stream.TopicInfo, error) {
	t, err := m.s.streams.Topic(name, false)
	if err != nil {
		return stream.TopicInfo{}, apiErr(err)
	}
	return t.Info(), nil
}

func (m monitorNode) Groups(topic string) ([]stream.GroupInfo, error) {
	names, err := m.s.streams.Groups(topic)
	if err != nil {
		return nil, apiErr(err)
	}
	out := []stream.GroupInfo{}
	for _, g := range names {
		if gi, err := m.s.streams.GroupInfo(topic, g); err == nil {
			out = append(out, gi)
		}
	}
	return out, nil
}

func (m monitorNode) Group(topic, group string) (stream.GroupInfo, error) {
	names, err := m.s.streams.Groups(topic)
	if err != nil {
		return stream.GroupInfo{}, apiErr(err)
	}
	for _, g := range names {
		if g == group {
			gi, err := m.s.streams.GroupInfo(topic, group)
			return gi, apiErr(err)
		}
	}
	return stream.GroupInfo{}, fmt.Errorf("%w: group %q of topic %q", monitor.ErrNotFound, group, topic)
}

func (m monitorNode) Workers() []queue.WorkerInfo { return m.s.queues.Workers() }

func (m monitorNode) KV() monitor.KVInfo {
	return monitor.KVInfo{Stats: m.s.kv.Stats(), Ops: m.s.KVOps()}
}

func (m monitorNode) Config() any { return m.s.cfg }
