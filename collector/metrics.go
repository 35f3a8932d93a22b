package collector

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/obs"
)

// Reasons of kubesift_collector_dead_letters_total and _rejected_total the
// sources share beside the decoder's (record.DecodeReasons).
const (
	// ReasonRedaction: the sanitizer failed on a record; what it could not
	// redact is never published.
	ReasonRedaction = "redaction"
	// ReasonPartialLine: a file ended inside a line when it was left.
	ReasonPartialLine = "partial_line"
	// ReasonMalformed (rejected_total): input that is no document.
	ReasonMalformed = "malformed"
)

// SourceMetrics are the counter families every source of one collector
// shares, told apart by the label source ("audit-webhook", "audit-tail", …).
type SourceMetrics struct {
	// Received counts records decoded from a source, before publishing.
	Received *prometheus.CounterVec // source
	// Rejected counts inputs a source refused, by reason.
	Rejected *prometheus.CounterVec // source, reason
	// DeadLetters counts dead letters a source published, by reason.
	DeadLetters *prometheus.CounterVec // source, reason
}

// NewSourceMetrics returns the shared families registered on reg — the ones
// another source of this process registered already, if any. reg may be nil
// (metrics not exported).
func NewSourceMetrics(reg prometheus.Registerer) (*SourceMetrics, error) {
	m := &SourceMetrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_received_total",
			Help: "Records decoded from a source, before publishing (a batch that is retried counts again).",
		}, []string{"source"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_rejected_total",
			Help: "Inputs rejected by a source, by reason: auth and size count requests, tls handshakes, malformed documents or lines.",
		}, []string{"source", "reason"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_dead_letters_total",
			Help: "Dead letters published by a source, by reason (the decoder's reason, too_large, partial_line, redaction).",
		}, []string{"source", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.Received, &m.Rejected, &m.DeadLetters} {
		shared, err := obs.RegisterShared(reg, *c)
		if err != nil {
			return nil, fmt.Errorf("collector: register source metrics: %w", err)
		}
		*c = shared
	}
	return m, nil
}
