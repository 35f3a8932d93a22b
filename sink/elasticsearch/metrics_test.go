package elasticsearch

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestMetricsExportedAtZero: the writer's labelled series exist at 0 before
// the first bulk request, so an alert on rejected documents or retries
// reads 0 rather than "no data" — also when a second writer shares them.
func TestMetricsExportedAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := newMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Zeros(t, testenv.Series(t, reg),
		`kubesift_sink_es_docs_rejected_total{reason="invalid_document"}`,
		`kubesift_sink_es_docs_rejected_total{reason="unknown"}`,
		`kubesift_sink_es_docs_rejected_total{reason="document_parsing_exception"}`,
		`kubesift_sink_es_docs_rejected_total{reason="mapper_parsing_exception"}`,
		`kubesift_sink_es_docs_rejected_total{reason="invalid_finding"}`,
		`kubesift_sink_es_retries_total{scope="request"}`,
		`kubesift_sink_es_retries_total{scope="item"}`,
		`kubesift_sink_es_bulk_requests_total{result="ok"}`,
		`kubesift_sink_es_bulk_requests_total{result="unauthorized"}`,
		`kubesift_sink_es_bulk_requests_total{result="error"}`,
	)
}
