package auditwebhook

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// Source is the DeadLetter.Source and the "source" metric label of this
// receiver.
const Source = "audit-webhook"

// answerCodes are the HTTP status codes the receiver answers with (Serve):
// kubesift_collector_webhook_requests_total{code} exports each at 0.
var answerCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
	http.StatusMethodNotAllowed, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusServiceUnavailable}

type metrics struct {
	received    prometheus.Counter
	rejected    *prometheus.CounterVec // by reason
	deadLetters *prometheus.CounterVec // by reason
	requests    *prometheus.CounterVec // by code
	inFlight    prometheus.Gauge
	// clientNameDenied counts certificates of the client CA refused by
	// allowed_client_names.
	clientNameDenied prometheus.Counter
	duration         prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, inflightBytes func() int64) (*metrics, error) {
	sm, err := collector.NewSourceMetrics(reg)
	if err != nil {
		return nil, err
	}
	received, rejected, dead := sm.Received, sm.Rejected, sm.DeadLetters
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_webhook_requests_total",
			Help: "Audit webhook requests answered, by HTTP status code.",
		}, []string{"code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubesift_collector_webhook_in_flight",
			Help: "Audit webhook requests being processed (bounded by max_in_flight).",
		}),
		clientNameDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_webhook_client_name_denied_total",
			Help: "Client certificates of client_ca_file refused because no name matched allowed_client_names.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubesift_collector_webhook_request_duration_seconds",
			Help:    "Time from request to answer, publishing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	bytesInUse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kubesift_collector_webhook_inflight_bytes",
		Help: "Request body bytes held by the audit webhook (bounded by max_inflight_bytes).",
	}, func() float64 { return float64(inflightBytes()) })
	if err := obs.Register(reg, m.requests, m.inFlight, m.duration, bytesInUse, m.clientNameDenied); err != nil {
		return nil, fmt.Errorf("audit webhook: register metrics: %w", err)
	}
	m.received = received.WithLabelValues(Source)
	m.rejected = rejected.MustCurryWith(prometheus.Labels{"source": Source})
	m.deadLetters = dead.MustCurryWith(prometheus.Labels{"source": Source})
	// budget: over max_inflight_bytes (429); busy: over max_in_flight (429);
	// timeout: body not received within body_read_timeout (408).
	for _, r := range []string{"auth", "size", collector.ReasonMalformed, "tls", "budget", "busy", "timeout"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range append([]string{collector.ReasonRedaction}, record.DecodeReasons...) {
		m.deadLetters.WithLabelValues(r)
	}
	for _, code := range answerCodes {
		m.requests.WithLabelValues(strconv.Itoa(code))
	}
	return m, nil
}
