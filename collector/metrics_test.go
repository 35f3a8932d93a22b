package collector

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSourceMetricsShared: two sources in one process count into the same
// families, told apart by the source label.
func TestSourceMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewSourceMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSourceMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	a.Received.WithLabelValues("audit-webhook").Inc()
	b.Received.WithLabelValues("audit-tail").Add(2)
	if a.Received != b.Received || a.DeadLetters != b.DeadLetters {
		t.Fatal("second source got its own families")
	}
	if n := testutil.CollectAndCount(reg, "kubesift_collector_received_total"); n != 2 {
		t.Errorf("%d received series, want 2", n)
	}
	if _, err := NewSourceMetrics(nil); err != nil {
		t.Errorf("nil registry: %v", err)
	}
}
