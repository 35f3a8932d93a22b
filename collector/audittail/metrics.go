package audittail

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// Source is the DeadLetter.Source and the "source" metric label of the tail.
const Source = "audit-tail"

// Label values of the tail's own series.
const (
	rotationRename    = "rename"
	rotationTruncate  = "truncate"
	retryBackpressure = "backpressure" // the publisher is full
	retryError        = "error"        // anything else
	writeOK           = "ok"
	writeError        = "error"
)

type metrics struct {
	received       prometheus.Counter
	rejected       *prometheus.CounterVec // by reason
	deadLetters    *prometheus.CounterVec // by reason
	lag            *prometheus.GaugeVec   // by path
	rotations      *prometheus.CounterVec // by path, kind
	gaps           *prometheus.CounterVec // by path
	positionWrites *prometheus.CounterVec // by result
	retries        *prometheus.CounterVec // by path, reason
	readErrors     *prometheus.CounterVec // by path
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sm, err := collector.NewSourceMetrics(reg)
	if err != nil {
		return nil, err
	}
	received, rejected, dead := sm.Received, sm.Rejected, sm.DeadLetters
	m := &metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubesift_collector_tail_lag_bytes",
			Help: "Bytes of the followed file not yet durably published (file size - committed position).",
		}, []string{"path"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_tail_rotations_total",
			Help: "Rotations of a followed file, by kind (rename, truncate).",
		}, []string{"path", "kind"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_tail_rotation_gaps_total",
			Help: "Rotations after which data the tail had not read yet could not be found (possible loss; see the log).",
		}, []string{"path"}),
		positionWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_tail_positions_writes_total",
			Help: "Writes of the positions file, by result (ok, error).",
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_tail_publish_retries_total",
			Help: "Batches retried because the publisher refused them, by reason (backpressure, error).",
		}, []string{"path", "reason"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_tail_read_errors_total",
			Help: "Errors opening, reading or inspecting a followed file (retried).",
		}, []string{"path"}),
	}
	if err := obs.Register(reg, m.lag, m.rotations, m.gaps, m.positionWrites, m.retries, m.readErrors); err != nil {
		return nil, fmt.Errorf("audit tail: register metrics: %w", err)
	}
	m.received = received.WithLabelValues(Source)
	m.rejected = rejected.MustCurryWith(prometheus.Labels{"source": Source})
	m.deadLetters = dead.MustCurryWith(prometheus.Labels{"source": Source})
	m.rejected.WithLabelValues(collector.ReasonMalformed)
	for _, r := range append([]string{collector.ReasonRedaction, collector.ReasonPartialLine, ReasonPublish}, record.DecodeReasons...) {
		m.deadLetters.WithLabelValues(r)
	}
	m.positionWrites.WithLabelValues(writeOK)
	m.positionWrites.WithLabelValues(writeError)
	return m, nil
}

// follow exports the series of a followed path at 0, before the first
// rotation, gap, retry or read error.
func (m *metrics) follow(path string) {
	m.lag.WithLabelValues(path)
	m.gaps.WithLabelValues(path)
	m.readErrors.WithLabelValues(path)
	for _, k := range []string{rotationRename, rotationTruncate} {
		m.rotations.WithLabelValues(path, k)
	}
	for _, r := range []string{retryBackpressure, retryError} {
		m.retries.WithLabelValues(path, r)
	}
}
