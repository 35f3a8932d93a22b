package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules/posture"
)

// rebuild reads the partition from its first offset up to the high
// watermark it has now, restores and replaces every cluster found, and
// waits until the transitions that caused are written. It returns the
// offset live consumption starts at. The last message of every key is held
// until the end: Replace judges a cluster once with all its objects in, so
// a namespace read before its NetworkPolicy does not open and resolve.
func (c *PostureConsumer) rebuild(ctx context.Context, r *kafka.Reader, part *partition, ps *partState) (int64, error) {
	start := time.Now()
	first, last, err := c.offsets(ctx, part.id)
	if err != nil {
		return 0, err
	}
	if err := r.SetOffset(first); err != nil {
		return 0, fmt.Errorf("posture rebuild: set offset %d: %w", first, err)
	}
	latest := map[string]kafka.Message{}
	for off := first; off < last; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return 0, fmt.Errorf("posture rebuild: partition %d at offset %d: %w", part.id, off, err)
		}
		off = m.Offset + 1
		if m.Value == nil {
			delete(latest, string(m.Key))
			continue
		}
		latest[string(m.Key)] = kafka.Message{Key: m.Key, Value: m.Value, Offset: m.Offset, Time: m.Time}
	}
	byCluster := c.decodeInventory(latest, part.id)
	clusters := make([]string, 0, len(byCluster))
	for cl := range byCluster {
		clusters = append(clusters, cl)
	}
	sort.Strings(clusters)
	hold := newBatchHold()
	for _, cl := range clusters {
		if err := c.restore(ctx, ps, cl); err != nil {
			return 0, err
		}
		ds, _ := c.o.Engine.Replace(cl, byCluster[cl]) // invalid objects counted by decodeInventory and the engine
		// No one change caused a rebuild's transitions: each is stamped
		// with its own time (emit, transitionTime).
		c.emit(ctx, hold, part, kafka.Message{Topic: c.topic, Partition: part.id, Offset: -1}, ds, time.Time{})
		ps.dirty[cl] = true
	}
	if !hold.wait(ctx) {
		return 0, errors.New("posture rebuild: ended before its transitions were written")
	}
	c.writeScores(ctx, ps, true)
	c.m.rebuilds.Inc()
	c.m.rebuildSeconds.Set(time.Since(start).Seconds())
	c.log.Info("posture rebuilt", "partition", part.id, "clusters", len(clusters), "objects", len(latest),
		"offsets", last-first, "took", time.Since(start).Round(time.Millisecond))
	return last, nil
}

// offsets returns the partition's first offset and high watermark.
func (c *PostureConsumer) offsets(ctx context.Context, partition int) (first, last int64, err error) {
	var errs []error
	for _, b := range c.o.Kafka.Brokers {
		conn, err := c.dialer.DialLeader(ctx, "tcp", b, c.topic, partition)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		first, last, err = conn.ReadOffsets()
		_ = conn.Close()
		if err == nil {
			return first, last, nil
		}
		errs = append(errs, err)
	}
	return 0, 0, fmt.Errorf("posture rebuild: offsets of %s/%d: %w", c.topic, partition, errors.Join(errs...))
}

// decodeInventory turns the last message of every key into Objects by
// cluster. What cannot be read is counted and logged, not dead-lettered:
// it was dead-lettered when it was consumed live, and a rebuild runs on
// every assignment.
func (c *PostureConsumer) decodeInventory(latest map[string]kafka.Message, partition int) map[string][]posture.Object {
	out := map[string][]posture.Object{}
	for key, m := range latest {
		o, rec, err := objectOf(m)
		if err != nil {
			c.m.objects.WithLabelValues(resultInvalid).Inc()
			c.lim.Warn(c.log, "rebuild-invalid", "posture rebuild: skipping an object that cannot be read",
				"partition", partition, "offset", m.Offset, "key", key, "err", err)
			continue
		}
		out[rec.Cluster.Name] = append(out[rec.Cluster.Name], o)
	}
	return out
}

// objectOf reads an object record message (not a tombstone) as an Object
// and its record. The object's observed time is the record's (observedAt):
// its change's transitions are written with it (their At), so the opened_at
// the engine keeps for a finding is the one its open transition shows.
func objectOf(m kafka.Message) (posture.Object, *record.Record, error) {
	rec, err := record.Unmarshal(m.Value)
	if err != nil {
		return posture.Object{}, nil, err
	}
	o, _, err := posture.ObjectFromRecord(rec)
	if err != nil {
		return posture.Object{}, nil, err
	}
	o.Observed = observedAt(rec, m)
	return o, rec, nil
}

// restore seeds the engine with the cluster's finding states from the
// state index, once per cluster and partition assignment. The index being
// unreachable is retried until ctx ends: going on without the states
// would repeat transitions and, worse, alerts.
func (c *PostureConsumer) restore(ctx context.Context, ps *partState, cluster string) error {
	if ps.clusters[cluster] {
		return nil
	}
	var states []posture.Decision
	err := c.retryRead(ctx, "restore", "reading the finding states failed; retrying", cluster, func() (err error) {
		states, err = c.o.States(ctx, cluster)
		return err
	})
	if err != nil {
		return fmt.Errorf("posture: restoring cluster %s: %w", cluster, err)
	}
	c.o.Engine.Restore(cluster, states)
	if err := c.restoreUsage(ctx, ps, cluster); err != nil {
		return err
	}
	ps.clusters[cluster] = true
	return nil
}

// retryRead calls read until it succeeds, logging each failure (rate
// limited under key) and trying again a second later; when ctx ends it
// returns the last failure.
func (c *PostureConsumer) retryRead(ctx context.Context, key, msg, cluster string, read func() error) error {
	for {
		err := read()
		if err == nil {
			return nil
		}
		c.lim.Warn(c.log, key, msg, "cluster", cluster, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// batchHold is the hold of a rebuild's transitions: like a message's
// pending, it counts the parts outstanding, and wait returns once all are
// finished and none was lost.
type batchHold struct {
	parts atomic.Int64
	lost  atomic.Bool
	done  chan struct{}
}

func newBatchHold() *batchHold {
	h := &batchHold{done: make(chan struct{})}
	h.parts.Store(1) // the rebuild's own hold, released by wait
	return h
}

func (h *batchHold) add() { h.parts.Add(1) }

func (h *batchHold) finish(ok bool) {
	if !ok {
		h.lost.Store(true)
	}
	if h.parts.Add(-1) == 0 {
		close(h.done)
	}
}

func (h *batchHold) wait(ctx context.Context) bool {
	h.finish(true)
	select {
	case <-h.done:
		return !h.lost.Load()
	case <-ctx.Done():
		return false
	}
}
