package rules

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/record"
)

// withEffective fills effective, effective_from and patch_ops. A body that
// cannot be used (a patch that is not JSON, a JSON patch with a malformed
// operation) is counted by form in kubesift_rules_effective_failures_total
// and leaves what could be worked out without it: the record is still
// judged, by every rule, on what it does show.
func (e *AuditEnv) withEffective() {
	eff := countFailure(record.EffectiveOf(e.rec.Audit, nil))
	if eff == nil {
		return
	}
	e.Effective, e.EffectiveFrom = eff.Object, eff.From
	e.setPatchOps(eff)
}

// withPatchOps fills patch_ops alone, for rules that read no effective
// object: a patch's body is all it takes, and the response body (the
// larger, and on every create and update) is not parsed.
func (e *AuditEnv) withPatchOps() {
	if eff := countFailure(record.PatchOf(e.rec.Audit)); eff != nil {
		e.setPatchOps(eff)
	}
}

// countFailure counts err, if any, under its patch form and returns eff.
func countFailure(eff *record.Effective, err error) *record.Effective {
	if err != nil {
		form := "body"
		if eff != nil && eff.Form != "" {
			form = string(eff.Form)
		}
		effectiveFailures.inc(form)
	}
	return eff
}

func (e *AuditEnv) setPatchOps(eff *record.Effective) {
	if len(eff.Ops) > 0 {
		e.PatchOps = make([]any, len(eff.Ops))
		for i, op := range eff.Ops {
			m := map[string]any{"op": op.Op, "path": op.Path, "value": op.Value}
			if op.From != "" {
				m["from"] = op.From
			}
			e.PatchOps[i] = m
		}
	}
}

// patchObject is the patch_object helper: the object made of what a
// patch_ops list sets, on an empty object (record.ObjectFromOps). A rule
// about what a patch adds — a wildcard, a privileged flag — judges this
// rather than effective, which also holds what was there before.
func patchObject(v any) map[string]any {
	list := asSlice(v)
	if len(list) == 0 {
		return nil
	}
	ops := make([]record.PatchOp, 0, len(list))
	for _, o := range list {
		m := asMap(o)
		op, _ := m["op"].(string)
		path, _ := m["path"].(string)
		from, _ := m["from"].(string)
		ops = append(ops, record.PatchOp{Op: op, Path: path, From: from, Value: m["value"]})
	}
	return record.ObjectFromOps(ops)
}

// effectiveFailureForms are the label values of the failure counter: the
// patch forms, and "body" for a body that could not be read at all.
var effectiveFailureForms = []string{
	string(record.PatchJSON), string(record.PatchMerge), string(record.PatchStrategic), string(record.PatchApply), "body",
}

// effectiveFailures counts unusable bodies process-wide: the environment is
// built per record without a handle on its engine, and a process runs one
// engine.
var effectiveFailures = newFormCounters(effectiveFailureForms)

type formCounters map[string]*atomic.Uint64

func newFormCounters(forms []string) formCounters {
	c := formCounters{}
	for _, f := range forms {
		c[f] = new(atomic.Uint64)
	}
	return c
}

func (c formCounters) inc(form string) {
	if n := c[form]; n != nil {
		n.Add(1)
	}
}

var effectiveFailuresDesc = prometheus.NewDesc("kubesift_rules_effective_failures_total",
	"Audit bodies the effective object could not be worked out from (the record is still judged on what it shows), by patch form.",
	[]string{"form"}, nil)

func collectEffectiveFailures(ch chan<- prometheus.Metric) {
	for _, f := range effectiveFailureForms {
		ch <- prometheus.MustNewConstMetric(effectiveFailuresDesc, prometheus.CounterValue, float64(effectiveFailures[f].Load()), f)
	}
}
