package notify

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestMetricsExportedAtZero: every alert outcome, each integration's sent,
// failed and retries, and every delivery-state outcome exist at 0 once the
// dispatcher and the state sink are built, before any alert.
func TestMetricsExportedAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{
		Route: rootRoute(t, config.RouteConfig{Receiver: "sec"}),
		Receivers: map[string][]Integration{"sec": {
			webhookIntegration(t, "sec/webhook[0]", "http://127.0.0.1:9/hook"),
			webhookIntegration(t, "sec/webhook[1]", "http://127.0.0.1:9/other"),
		}},
		MaxGroups: 10, MaxAlertsPerGroup: 10, QueueSize: 1, Metrics: m,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewESStates(nil, "alerts", 10, time.Second, nil, reg); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`kubesift_notify_notifications_total{integration="sec/webhook[0]",outcome="sent"}`,
		`kubesift_notify_notifications_total{integration="sec/webhook[1]",outcome="failed"}`,
		`kubesift_notify_retries_total{integration="sec/webhook[0]"}`,
		`kubesift_notify_retries_total{integration="sec/webhook[1]"}`,
	}
	for _, o := range alertOutcomes {
		want = append(want, `kubesift_notify_alerts_total{outcome="`+o+`"}`)
	}
	for _, o := range []string{"updated", "missing", "rejected", "dropped"} {
		want = append(want, `kubesift_notify_state_updates_total{outcome="`+o+`"}`)
	}
	testenv.Zeros(t, testenv.Series(t, reg), want...)
}
