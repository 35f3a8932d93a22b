package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// UsageStore is what the posture consumer needs of the RBAC usage store
// (elasticsearch.UsageStore): the stored snapshot of a cluster, writing
// one, and the uses of a period read from the audit data stream.
type UsageStore interface {
	Load(ctx context.Context, cluster string) (rbacusage.Snapshot, error)
	Save(ctx context.Context, cluster string, snap rbacusage.Snapshot) error
	Uses(ctx context.Context, cluster string, from, to time.Time) ([]rbacusage.Use, elasticsearch.UseStats, error)
}

// usageState is one cluster's progress through its audit trail on this
// member: read up to readTo, and the tuples changed but not yet saved.
type usageState struct {
	watchStart time.Time
	readTo     time.Time
	unsaved    map[string]rbacusage.Usage // by Grant.Key
	saved      bool                       // the watch document is written
}

type usageMetrics struct {
	reads   *prometheus.CounterVec
	reasons *prometheus.CounterVec
	tuples  *prometheus.GaugeVec
}

func newUsageMetrics() *usageMetrics {
	const ns, sub = "kubesift", "rbac_usage"
	m := &usageMetrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reads_total", Help: "Reads of the audit data stream for RBAC uses and writes of the usage index, by step (read, save) and result (ok, error)."}, []string{"step", "result"}),
		reasons: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reasons_total", Help: "Distinct authorization reasons met per read, by result: parsed (an RBAC grant), other (another authorizer's), invalid (RBAC's, not parsed)."}, []string{"result"}),
		tuples: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "tuples", Help: "(binding, role, subject) tuples of RBAC usage kept, per cluster owned by this member."}, []string{"cluster"}),
	}
	for _, s := range []string{"read", "save"} {
		for _, r := range []string{"ok", "error"} {
			m.reads.WithLabelValues(s, r)
		}
	}
	for _, r := range []string{"parsed", "other", "invalid"} {
		m.reasons.WithLabelValues(r)
	}
	return m
}

func (m *usageMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.reads, m.reasons, m.tuples}
}

// restoreUsage seeds the engine with the cluster's stored usage, once per
// cluster and assignment, before its inventory is judged. A cluster never
// watched before starts its watch now, and the watch document is written
// at the first read. The store being unreachable is retried until ctx
// ends, as the finding states are: judging without the stored usage would
// call used bindings unused.
func (c *PostureConsumer) restoreUsage(ctx context.Context, ps *partState, cluster string) error {
	if c.o.Usage == nil {
		return nil
	}
	var snap rbacusage.Snapshot
	err := c.retryRead(ctx, "usage-restore", "reading the RBAC usage failed; retrying", cluster, func() (err error) {
		snap, err = c.o.Usage.Load(ctx, cluster)
		return err
	})
	if err != nil {
		return fmt.Errorf("posture: restoring the RBAC usage of cluster %s: %w", cluster, err)
	}
	c.o.Engine.RestoreUsage(cluster, snap.WatchStart, snap.Usages)
	c.o.Engine.UsageReadTo(cluster, snap.ReadTo)
	st := &usageState{readTo: snap.ReadTo, unsaved: map[string]rbacusage.Usage{}, saved: !snap.WatchStart.IsZero()}
	st.watchStart = c.o.Engine.StartWatch(cluster, time.Now())
	ps.usage[cluster] = st
	return nil
}

// readUsage reads every owned cluster's new uses, judges the usage checks
// again (with the new uses, and, when the read succeeded, for time having
// passed), writes the transitions and then the changed usage. A failed
// read or save is counted, logged and tried again at the next tick: reads
// restart from the last saved point minus the lookback, and merging a use
// twice changes nothing, so nothing is lost and nothing is counted twice.
func (c *PostureConsumer) readUsage(ctx context.Context, part *partition, ps *partState) {
	cfg := c.pc.Posture.RBACUsage
	for cl, st := range ps.usage {
		to := time.Now().UTC()
		from := time.Time{}
		if !st.readTo.IsZero() {
			from = st.readTo.Add(-cfg.Lookback)
		}
		uses, stats, err := c.o.Usage.Uses(ctx, cl, from, to)
		c.um.reasons.WithLabelValues("parsed").Add(float64(stats.Parsed))
		c.um.reasons.WithLabelValues("other").Add(float64(stats.Other))
		c.um.reasons.WithLabelValues("invalid").Add(float64(stats.Invalid))
		if stats.InvalidErr != nil {
			c.lim.Warn(c.log, "usage-reason", "authorization reasons that look like RBAC's do not parse; their uses are not counted",
				"cluster", cl, "count", stats.Invalid, "first", stats.InvalidErr)
		}
		if err != nil {
			c.um.reads.WithLabelValues("read", "error").Inc()
			c.lim.Warn(c.log, "usage-read", "reading RBAC uses failed; trying again at the next tick", "cluster", cl, "err", err)
			to = st.readTo // nothing read: the next read starts where this one did
		} else {
			c.um.reads.WithLabelValues("read", "ok").Inc()
			c.o.Engine.UsageReadTo(cl, to)
		}
		var ds []posture.Decision
		if err == nil {
			// Only a complete read lets time passing turn a binding unused:
			// after a failed one, its latest use may be among the unread.
			ds = c.o.Engine.ObserveUsageRejudgeAll(cl, uses)
		} else {
			ds = c.o.Engine.ObserveUsage(cl, uses)
		}
		if len(ds) > 0 {
			hold := newBatchHold()
			c.emit(ctx, hold, part, kafka.Message{Topic: c.topic, Partition: part.id, Offset: -1}, ds, time.Now())
			ps.dirty[cl] = true
			if !hold.wait(ctx) {
				return // generation over: the next owner reads again from the saved point
			}
		}
		for _, u := range c.o.Engine.UsageChanged(cl) {
			st.unsaved[u.Grant.Key()] = u
		}
		if err != nil && len(st.unsaved) == 0 && st.saved {
			continue
		}
		c.saveUsage(ctx, cl, st, to)
	}
}

// saveUsage writes the changed tuples and the watch document (read up to
// to); on failure they stay unsaved for the next tick.
func (c *PostureConsumer) saveUsage(ctx context.Context, cl string, st *usageState, to time.Time) {
	snap := rbacusage.Snapshot{WatchStart: st.watchStart, ReadTo: to}
	for _, u := range st.unsaved {
		snap.Usages = append(snap.Usages, u)
	}
	if err := c.o.Usage.Save(ctx, cl, snap); err != nil {
		c.um.reads.WithLabelValues("save", "error").Inc()
		c.lim.Warn(c.log, "usage-save", "writing the RBAC usage failed; trying again at the next tick", "cluster", cl, "err", err)
		return
	}
	c.um.reads.WithLabelValues("save", "ok").Inc()
	clear(st.unsaved)
	st.saved, st.readTo = true, to
	c.um.tuples.WithLabelValues(cl).Set(float64(c.o.Engine.UsageTuples(cl)))
}
