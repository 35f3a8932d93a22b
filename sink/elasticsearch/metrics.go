package elasticsearch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/sink/ecs"
)

// Label values of the Writer's series. The reasons of
// kubesift_sink_es_docs_rejected_total are Elasticsearch's error types,
// which Elasticsearch names; the ones listed here are the writer's own and
// the types a document refused for its content gets, exported at 0 from
// the start so that an alert on them reads 0, not "no data".
const (
	requestOK           = "ok"
	requestRetryable    = "retryable"
	requestUnauthorized = "unauthorized"
	requestFailed       = "failed"
	requestError        = "error"

	retryRequest = "request"
	retryItem    = "item"

	// RejectInvalidDocument: the document could not be encoded.
	RejectInvalidDocument = "invalid_document"
	// RejectUnknown: Elasticsearch refused the document without a type.
	RejectUnknown = "unknown"
)

// DocumentRejectTypes are the error types Elasticsearch refuses a document
// with when it does not fit the mapping: the reasons an alert on rejected
// documents watches, so they are exported at 0 from the start.
var DocumentRejectTypes = []string{"document_parsing_exception", "mapper_parsing_exception", "illegal_argument_exception"}

// knownRejectReasons are pre-created on kubesift_sink_es_docs_rejected_total:
// the writer's own reasons, DocumentRejectTypes, and the findings writer's
// (ecs.FindingsWriter).
var knownRejectReasons = append([]string{RejectInvalidDocument, RejectUnknown, ecs.RejectInvalidFinding, ecs.RejectInvalidScore},
	DocumentRejectTypes...)

// metrics are the Writer's kubesift_sink_es_* series.
type metrics struct {
	indexed   prometheus.Counter
	duplicate prometheus.Counter
	rejected  *prometheus.CounterVec // reason: Elasticsearch error type
	retries   *prometheus.CounterVec // scope: request | item
	requests  *prometheus.CounterVec // result: ok | retryable | failed | error
	latency   prometheus.Histogram
	queued    prometheus.Gauge
	blocked   prometheus.Counter

	// versionConflict counts versioned documents (finding states) refused
	// because the stored version was greater or equal.
	versionConflict prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_sink_es_docs_indexed_total", Help: "Documents Elasticsearch accepted (201).",
		}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_sink_es_docs_duplicate_total", Help: "Documents whose _id existed (409 on create): re-deliveries, counted as success.",
		}),
		versionConflict: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_sink_es_docs_version_conflict_total", Help: "Versioned documents (finding states) refused with 409 because a newer or equal version is stored: a late or replayed write, counted as success.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_sink_es_docs_rejected_total", Help: "Documents Elasticsearch refused for good, by error type; they go to the dead-letter topic.",
		}, []string{"reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_sink_es_retries_total", Help: "Retries: whole bulk requests (scope=request) and documents refused with 429/5xx (scope=item).",
		}, []string{"scope"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_sink_es_bulk_requests_total", Help: "Bulk requests by result: ok (2xx), retryable (429/5xx), unauthorized (401/403: held and retried), failed (other status), error (no answer).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kubesift_sink_es_bulk_duration_seconds", Help: "Duration of one bulk request.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubesift_sink_es_queued_bytes", Help: "Bytes of documents accepted and not yet done (bounded by max_queued_bytes).",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_sink_es_add_blocked_total", Help: "Times Add waited for queue space (backpressure).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	defer m.precreate()
	m.indexed = register(reg, m.indexed, &errs)
	m.duplicate = register(reg, m.duplicate, &errs)
	m.versionConflict = register(reg, m.versionConflict, &errs)
	m.rejected = register(reg, m.rejected, &errs)
	m.retries = register(reg, m.retries, &errs)
	m.requests = register(reg, m.requests, &errs)
	m.latency = register(reg, m.latency, &errs)
	m.queued = register(reg, m.queued, &errs)
	m.blocked = register(reg, m.blocked, &errs)
	return m, errors.Join(errs...)
}

// precreate exports every known label value at 0. It runs after
// registering, on the series a second Writer shares with the first.
func (m *metrics) precreate() {
	for _, r := range []string{requestOK, requestRetryable, requestUnauthorized, requestFailed, requestError} {
		m.requests.WithLabelValues(r)
	}
	for _, s := range []string{retryRequest, retryItem} {
		m.retries.WithLabelValues(s)
	}
	for _, r := range knownRejectReasons {
		m.rejected.WithLabelValues(r)
	}
}

// register registers c, or returns the collector already registered under
// its name (a second Writer in one process shares the series).
func register[T prometheus.Collector](reg prometheus.Registerer, c T, errs *[]error) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		*errs = append(*errs, err)
	}
	return c
}
