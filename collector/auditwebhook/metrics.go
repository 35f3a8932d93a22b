package auditwebhook

import (
	"fmt"

	"github.com/kubesift/kubesift/internal/obs"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is the DeadLetter.Source and the "source" metric label of this
// receiver.
const Source = "audit-webhook"

type metrics struct {
	received    prometheus.Counter
	rejected    *prometheus.CounterVec // by reason
	deadLetters *prometheus.CounterVec // by reason
	requests    *prometheus.CounterVec // by code
	inFlight    prometheus.Gauge
	duration    prometheus.Histogram
}

// The received/rejected/dead_letters families are shared with the audit tail
// (label source): each package registers the same definition and reuses the
// one already registered, so the help texts below must match
// collector/audittail's word for word.
const (
	helpReceived    = "Records decoded from a source, before publishing (a batch that is retried counts again)."
	helpRejected    = "Inputs rejected by a source, by reason: auth and size count requests, tls handshakes, malformed documents or lines."
	helpDeadLetters = "Dead letters published by a source, by reason (the decoder's reason, too_large, partial_line, redaction)."
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_received_total", Help: helpReceived}, []string{"source"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_rejected_total", Help: helpRejected}, []string{"source", "reason"})
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_dead_letters_total", Help: helpDeadLetters}, []string{"source", "reason"})
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_webhook_requests_total",
			Help: "Audit webhook requests answered, by HTTP status code.",
		}, []string{"code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubesift_collector_webhook_in_flight",
			Help: "Audit webhook requests being processed (bounded by max_in_flight).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubesift_collector_webhook_request_duration_seconds",
			Help:    "Time from request to answer, publishing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	if reg != nil {
		var err error
		if received, err = registerShared(reg, received); err != nil {
			return nil, err
		}
		if rejected, err = registerShared(reg, rejected); err != nil {
			return nil, err
		}
		if dead, err = registerShared(reg, dead); err != nil {
			return nil, err
		}
		for _, c := range []prometheus.Collector{m.requests, m.inFlight, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("audit webhook: register metrics: %w", err)
			}
		}
	}
	m.received = received.WithLabelValues(Source)
	m.rejected = rejected.MustCurryWith(prometheus.Labels{"source": Source})
	m.deadLetters = dead.MustCurryWith(prometheus.Labels{"source": Source})
	for _, r := range []string{"auth", "size", "malformed", "tls"} {
		m.rejected.WithLabelValues(r)
	}
	return m, nil
}

// registerShared registers c, or returns the collector another source
// registered first (see obs.RegisterShared).
func registerShared(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	ex, err := obs.RegisterShared(reg, c)
	if err != nil {
		return nil, fmt.Errorf("audit webhook: register metrics: %w", err)
	}
	return ex, nil
}
