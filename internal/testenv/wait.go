package testenv

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// WaitFor polls cond until it holds and fails the test after timeout, naming
// what was awaited. It polls every 5 ms at first and backs off to every
// 200 ms, so a quick condition is seen at once and a slow one costs little.
// It is the one way tests wait for something to happen: a sleep only hopes
// it has happened, and fails or wastes time when the machine is loaded.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	WaitForNil(t, what, timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is WaitFor's "not yet", which says nothing worth printing.
var errNotYet = errors.New("not yet")

// WaitForNil is WaitFor for a check that can say why it does not hold yet:
// it polls check until it returns nil, and the failure after timeout
// carries the last error (the state a reader needs to see what went wrong).
func WaitForNil(t testing.TB, what string, timeout time.Duration, check func() error) {
	t.Helper()
	if err := Await(timeout, check); err != nil {
		if errors.Is(err, errNotYet) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// Await polls check as WaitForNil does and returns nil once it holds, or
// its last error after timeout. It is the wait for goroutines other than
// the test's own, which must not call t.Fatal: they report with t.Error
// and stop.
func Await(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

// Metric returns the sum of the series of the metric family name in g whose
// labels match labels (name, value pairs; no pairs matches every series).
// Counters and gauges add their values, histograms and summaries their
// sample counts; a family that is absent sums to 0, because a vector with no
// series yet is not gathered at all.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("Metric %s: labels %q are not name, value pairs", name, labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather %s: %v", name, err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				sum += value(m)
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if labelValue(m, labels[i]) != labels[i+1] {
			return false
		}
	}
	return true
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	}
	return 0
}
