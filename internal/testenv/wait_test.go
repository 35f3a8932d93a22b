package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fatalTB records the first Fatalf and ends the goroutine, as testing.T
// does, so a test can check what a helper fails with.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs fn with a fatalTB and returns what it failed with ("" when
// it did not fail).
func failure(t *testing.T, fn func(testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestWaitFor(t *testing.T) {
	tests := []struct {
		name  string
		check func(calls int64) error
		want  string // in the failure; "" for success
	}{
		{"holds at once", func(int64) error { return nil }, ""},
		{"holds after a few polls", func(n int64) error {
			if n < 3 {
				return errNotYet
			}
			return nil
		}, ""},
		{"never holds", func(int64) error { return errNotYet }, "timed out after 50ms waiting for the thing"},
		{"never holds, says why", func(int64) error { return errors.New("3 of 4 seen") }, "waiting for the thing: 3 of 4 seen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			got := failure(t, func(tb testing.TB) {
				WaitForNil(tb, "the thing", 50*time.Millisecond, func() error { return tc.check(calls.Add(1)) })
			})
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("failure %q, want %q", got, tc.want)
			}
			if tc.want != "" && strings.Contains(got, errNotYet.Error()) {
				t.Errorf("failure %q prints the internal not-yet error", got)
			}
			gotBool := failure(t, func(tb testing.TB) {
				WaitFor(tb, "the thing", 50*time.Millisecond, func() bool { return tc.check(calls.Add(1)) == nil })
			})
			if tc.want == "" && gotBool != "" || tc.want != "" && !strings.Contains(gotBool, "timed out after 50ms waiting for the thing") {
				t.Errorf("WaitFor failure %q", gotBool)
			}
		})
	}
}

func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_sent_total", Help: "h"}, []string{"path", "reason"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_depth", Help: "h"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test_seconds", Help: "h"})
	empty := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_unused_total", Help: "h"}, []string{"path"})
	reg.MustRegister(c, g, h, empty)
	c.WithLabelValues("direct", "ok").Add(3)
	c.WithLabelValues("direct", "retry").Add(2)
	c.WithLabelValues("spool", "ok").Add(5)
	g.Set(7)
	h.Observe(0.1)
	h.Observe(2)
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"every series of a counter", "test_sent_total", nil, 10},
		{"one label", "test_sent_total", []string{"path", "direct"}, 5},
		{"two labels", "test_sent_total", []string{"path", "direct", "reason", "retry"}, 2},
		{"no series matches", "test_sent_total", []string{"path", "other"}, 0},
		{"gauge", "test_depth", nil, 7},
		{"histogram counts samples", "test_seconds", nil, 2},
		{"vector without series", "test_unused_total", nil, 0},
		{"absent family", "test_absent_total", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Metric(t, reg, tc.metric, tc.labels...); got != tc.want {
				t.Errorf("Metric(%s, %q) = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	if got := failure(t, func(tb testing.TB) { Metric(tb, reg, "test_sent_total", "path") }); !strings.Contains(got, "not name, value pairs") {
		t.Errorf("odd labels: failure %q", got)
	}
}

func TestAwait(t *testing.T) {
	tests := []struct {
		name    string
		holdsAt int // the call from which check holds; 0: never
		wantErr bool
	}{
		{name: "holds at once", holdsAt: 1},
		{name: "holds after a few polls", holdsAt: 4},
		{name: "never holds: the last error after the timeout", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Await(100*time.Millisecond, func() error {
				calls++
				if tt.holdsAt > 0 && calls >= tt.holdsAt {
					return nil
				}
				return fmt.Errorf("not yet after %d calls", calls)
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Await: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && err.Error() != fmt.Sprintf("not yet after %d calls", calls) {
				t.Errorf("Await: %v, want the last check's error", err)
			}
			if tt.holdsAt > 0 && calls != tt.holdsAt {
				t.Errorf("check called %d times, want %d (polling stops once it holds)", calls, tt.holdsAt)
			}
		})
	}
}
