package events

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestMetricsExportedAtZero: the series of each watched Event API and of
// every watermark and enrichment outcome exist at 0 from the start.
func TestMetricsExportedAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.watch([]string{config.EventsAPIEventsV1, config.EventsAPICoreV1})
	var want []string
	for _, api := range []string{config.EventsAPIEventsV1, config.EventsAPICoreV1} {
		for _, f := range []string{"seen_total", "added_total", "updated_total", "watch_restarts_total", "relists_total"} {
			want = append(want, `kubesift_collector_events_`+f+`{api="`+api+`"}`)
		}
	}
	for _, r := range []string{"invalid", "cluster", "scope", "ahead"} {
		want = append(want, `kubesift_collector_events_watermark_ignored_total{reason="`+r+`"}`)
	}
	want = append(want,
		`kubesift_collector_events_watermark_writes_total{result="error"}`,
		`kubesift_collector_events_enrich_total{result="miss"}`,
		`kubesift_collector_events_skipped_total{reason="too_old"}`)
	testenv.Zeros(t, testenv.Series(t, reg), want...)
}
