package audittail

import (
	"fmt"

	"github.com/kubesift/kubesift/internal/obs"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is the DeadLetter.Source and the "source" metric label of the tail.
const Source = "audit-tail"

// The received/rejected/dead_letters families are shared with the audit
// webhook receiver (label source): each package registers the same
// definition and reuses the one already registered, so the help texts below
// must match collector/auditwebhook's word for word.
const (
	helpReceived    = "Records decoded from a source, before publishing (a batch that is retried counts again)."
	helpRejected    = "Inputs rejected by a source, by reason: auth and size count requests, tls handshakes, malformed documents or lines."
	helpDeadLetters = "Dead letters published by a source, by reason (the decoder's reason, too_large, partial_line, redaction)."
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
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_received_total", Help: helpReceived}, []string{"source"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_rejected_total", Help: helpRejected}, []string{"source", "reason"})
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_collector_dead_letters_total", Help: helpDeadLetters}, []string{"source", "reason"})
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
		for _, c := range []prometheus.Collector{m.lag, m.rotations, m.gaps, m.positionWrites, m.retries, m.readErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("audit tail: register metrics: %w", err)
			}
		}
	}
	m.received = received.WithLabelValues(Source)
	m.rejected = rejected.MustCurryWith(prometheus.Labels{"source": Source})
	m.deadLetters = dead.MustCurryWith(prometheus.Labels{"source": Source})
	m.rejected.WithLabelValues("malformed")
	m.positionWrites.WithLabelValues("ok")
	m.positionWrites.WithLabelValues("error")
	return m, nil
}

// registerShared registers c, or returns the collector another source
// registered first (see obs.RegisterShared).
func registerShared(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	ex, err := obs.RegisterShared(reg, c)
	if err != nil {
		return nil, fmt.Errorf("audit tail: register metrics: %w", err)
	}
	return ex, nil
}
