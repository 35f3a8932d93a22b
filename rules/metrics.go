package rules

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes per-rule counters and state sizes to Prometheus. The
// counters are plain atomics bumped on the hot path; this collector reads
// them at scrape time, so evaluating a record never touches a metric vector.
type Collector struct {
	e *Engine

	evaluated, matched, suppressed, errors *prometheus.Desc
	groups, evictions, loaded              *prometheus.Desc
}

// Collector returns a prometheus.Collector for the engine.
func (e *Engine) Collector() *Collector {
	l := []string{"rule", "source", "severity"}
	return &Collector{
		e:          e,
		evaluated:  prometheus.NewDesc("kubesift_rule_evaluated_total", "Records a rule was evaluated on (after the prefilter).", l, nil),
		matched:    prometheus.NewDesc("kubesift_rule_matched_total", "Alerts a rule raised (shadow rules count here too).", l, nil),
		suppressed: prometheus.NewDesc("kubesift_rule_suppressed_total", "Matches suppressed by an exception.", l, nil),
		errors:     prometheus.NewDesc("kubesift_rule_errors_total", "Evaluation errors (the record counted as no match).", l, nil),
		groups:     prometheus.NewDesc("kubesift_rule_state_groups", "Groups held by a stateful rule.", l, nil),
		evictions:  prometheus.NewDesc("kubesift_rule_state_evictions_total", "Groups evicted to stay within the bound.", l, nil),
		loaded:     prometheus.NewDesc("kubesift_rules_loaded", "Enabled rules in the current set.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.evaluated, c.matched, c.suppressed, c.errors, c.groups, c.evictions, c.loaded} {
		ch <- d
	}
	ch <- effectiveFailuresDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	set := c.e.Set()
	ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, float64(len(set.rules)))
	collectEffectiveFailures(ch)
	for _, r := range set.rules {
		lv := []string{r.ID, string(r.source), r.Severity.String()}
		st := r.stats
		ch <- prometheus.MustNewConstMetric(c.evaluated, prometheus.CounterValue, float64(st.Evaluated.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.matched, prometheus.CounterValue, float64(st.Matched.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.suppressed, prometheus.CounterValue, float64(st.Suppressed.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.Errors.Load()), lv...)
		if r.state != nil {
			ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(r.state.groups()), lv...)
			ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(r.state.evictions()), lv...)
		}
	}
}
