package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestMetricsExportedAtZero (real Kafka and Elasticsearch) starts collect,
// process and notify as deployed and scrapes each one's /metrics at once:
// the series of every label value known at start (sources, reasons,
// stages, integrations, consumed topics, consumer groups) are there at 0,
// so an alert on them reads 0 — not "no data" — while all is well.
func TestMetricsExportedAtZero(t *testing.T) {
	g := newServingGround(t)
	tests := []struct {
		name string
		args func(t *testing.T, g *servingGround, addrs map[string]string) []string
		want func(g *servingGround) []string
	}{
		{"collect", collectArgs, func(g *servingGround) []string {
			return []string{
				`kubesift_collector_dead_letters_total{reason="syntax",source="audit-webhook"}`,
				`kubesift_collector_dead_letters_total{reason="redaction",source="audit-webhook"}`,
				`kubesift_collector_dead_letters_total{reason="partial_line",source="audit-tail"}`,
				`kubesift_collector_dead_letters_total{reason="too_large",source="audit-tail"}`,
				`kubesift_collector_rejected_total{reason="malformed",source="audit-tail"}`,
				`kubesift_collector_webhook_requests_total{code="429"}`,
				`kubesift_collector_webhook_requests_total{code="503"}`,
				`kubesift_collector_publish_failed_records_total{reason="unavailable"}`,
				`kubesift_collector_spool_oldest_record_age_seconds`,
			}
		}},
		{"process", processArgs, func(g *servingGround) []string {
			return []string{
				`kubesift_processor_consumed_total{topic="it-serve-audit-` + g.run + `"}`,
				`kubesift_processor_consumed_total{topic="it-serve-events-` + g.run + `"}`,
				`kubesift_processor_rejected_total{reason="document_parsing_exception"}`,
				`kubesift_processor_dlq_total{stage="index"}`,
				`kubesift_sink_es_docs_rejected_total{reason="mapper_parsing_exception"}`,
				`kubesift_sink_es_docs_rejected_total{reason="invalid_document"}`,
				`kubesift_sink_es_retries_total{scope="item"}`,
				`kubesift_sink_es_retries_total{scope="request"}`,
				`kubesift_sink_es_bulk_requests_total{result="unauthorized"}`,
				`kubesift_rules_reloads_total{result="error"}`,
				`kubesift_consumer_lag_errors_total{group="it-serve-proc-` + g.run + `"}`,
			}
		}},
		{"notify", notifyArgs, func(g *servingGround) []string {
			return []string{
				`kubesift_notify_alerts_total{outcome="failed"}`,
				`kubesift_notify_alerts_total{outcome="silenced"}`,
				`kubesift_notify_notifications_total{integration="ops/webhook[0]",outcome="sent"}`,
				`kubesift_notify_notifications_total{integration="ops/webhook[0]",outcome="failed"}`,
				`kubesift_notify_retries_total{integration="ops/webhook[0]"}`,
				`kubesift_notify_state_updates_total{outcome="dropped"}`,
				`kubesift_notify_consumed_total{outcome="dead_letter"}`,
				`kubesift_consumer_lag_errors_total{group="it-serve-notify-` + g.run + `"}`,
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := servingCommandOf(t, tc.name)
			addrs := map[string]string{}
			for _, f := range c.listens {
				addrs[f] = testenv.FreeAddr(t)
			}
			p := testenv.Start(t, "zero-"+tc.name, nil, tc.args(t, g, addrs)...)
			var series map[string]float64
			testenv.WaitForNil(t, tc.name+"'s /metrics", time.Minute, func() error {
				if p.Exited() {
					return fmt.Errorf("%s exited: %s", tc.name, testenv.Tail(p.LogPath, 5))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var err error
				series, err = testenv.Metrics(ctx, addrs[fieldServerListen])
				return err
			})
			testenv.Zeros(t, series, tc.want(g)...)
			if err := p.Stop(20 * time.Second); err != nil {
				t.Errorf("%s did not stop cleanly: %v", tc.name, err)
			}
		})
	}
}

// servingCommandOf is the servingCommands entry of path (its only way to
// run).
func servingCommandOf(t *testing.T, path string) servingCommand {
	t.Helper()
	for _, c := range servingCommands {
		if c.path == path && c.variant == "" {
			return c
		}
	}
	t.Fatalf("no servingCommands entry for %q", path)
	return servingCommand{}
}
