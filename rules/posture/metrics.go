package posture

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the engine did. Atomics bumped on the hot path, read at
// scrape time by the Collector, as the rules engine does.
type Stats struct {
	Applied, Unchanged, Ignored, Invalid, Deleted atomic.Uint64
	Evaluations                                   atomic.Uint64
	Opened, Resolved, Reopened                    atomic.Uint64
}

func (s *Stats) count(ignored bool, err error) {
	switch {
	case err != nil:
		s.Invalid.Add(1)
	case ignored:
		s.Ignored.Add(1)
	}
}

func (s *Stats) transition(st State) {
	switch st {
	case StateOpen:
		s.Opened.Add(1)
	case StateResolved:
		s.Resolved.Add(1)
	case StateReopened:
		s.Reopened.Add(1)
	}
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return e.stats }

// Collector exposes the engine's counters to Prometheus.
type Collector struct {
	e                          *Engine
	objects, evals, trans, inv *prometheus.Desc
}

// Collector returns a prometheus.Collector for the engine.
func (e *Engine) Collector() *Collector {
	return &Collector{
		e: e,
		objects: prometheus.NewDesc("kubesift_posture_objects_total",
			"Objects given to the posture engine by result: applied, unchanged (same uid and resourceVersion), ignored (kind or version not judged), invalid (identity fields missing), deleted.", []string{"result"}, nil),
		evals: prometheus.NewDesc("kubesift_posture_evaluations_total", "(check, object) evaluations.", nil, nil),
		trans: prometheus.NewDesc("kubesift_posture_transitions_total", "Finding transitions by state reached.", []string{"state"}, nil),
		inv:   prometheus.NewDesc("kubesift_posture_inventory_objects", "Objects in a cluster's inventory.", []string{"cluster"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.objects, c.evals, c.trans, c.inv} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.stats
	for result, v := range map[string]*atomic.Uint64{"applied": &s.Applied, "unchanged": &s.Unchanged, "ignored": &s.Ignored, "invalid": &s.Invalid, "deleted": &s.Deleted} {
		ch <- prometheus.MustNewConstMetric(c.objects, prometheus.CounterValue, float64(v.Load()), result)
	}
	ch <- prometheus.MustNewConstMetric(c.evals, prometheus.CounterValue, float64(s.Evaluations.Load()))
	for st, v := range map[State]*atomic.Uint64{StateOpen: &s.Opened, StateResolved: &s.Resolved, StateReopened: &s.Reopened} {
		ch <- prometheus.MustNewConstMetric(c.trans, prometheus.CounterValue, float64(v.Load()), string(st))
	}
	c.e.mu.Lock()
	clusters := make([]*clusterState, 0, len(c.e.clusters))
	for _, cs := range c.e.clusters {
		clusters = append(clusters, cs)
	}
	c.e.mu.Unlock()
	for _, cs := range clusters {
		cs.mu.Lock()
		n := len(cs.inv.objs)
		cs.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.inv, prometheus.GaugeValue, float64(n), cs.name)
	}
}
