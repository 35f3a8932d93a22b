package testenv

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Series gathers g into the map Metrics returns for a running binary:
// each sample as `name{label="value",...}` (labels in name order, as the
// text format exposes them) -> value. Counters, gauges and untyped series
// keep their name; a histogram or summary gives name_count and name_sum.
func Series(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := seriesLabels(m)
			switch {
			case m.Histogram != nil:
				out[mf.GetName()+"_count"+labels] = float64(m.Histogram.GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = m.Histogram.GetSampleSum()
			case m.Summary != nil:
				out[mf.GetName()+"_count"+labels] = float64(m.Summary.GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = m.Summary.GetSampleSum()
			default:
				out[mf.GetName()+labels] = value(m)
			}
		}
	}
	return out
}

func seriesLabels(m *dto.Metric) string {
	ls := m.GetLabel()
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// Zeros fails the test for every series of want (`name{label="value",...}`,
// labels in name order; see Series and Metrics) that series does not hold
// at 0: the check that a component exports its known label values before
// anything happened, so that an alert or a dashboard reads 0 rather than
// "no data" while all is well.
func Zeros(t testing.TB, series map[string]float64, want ...string) {
	t.Helper()
	for _, w := range want {
		v, ok := series[w]
		switch {
		case !ok:
			t.Errorf("%s is not exported", w)
		case v != 0:
			t.Errorf("%s = %v, want 0", w, v)
		}
	}
}
