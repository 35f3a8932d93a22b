package publish

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of kubesift_collector_publish_failed_records_total. A failed record
// is not a lost record: it goes to the spool (or, for too_large/encode, the
// caller gets an error and keeps its input).
const (
	reasonWriteError = "write_error"    // the writer gave up after max_attempts
	reasonAckTimeout = "ack_timeout"    // no acknowledgement within ack_timeout
	reasonUnavail    = "unavailable"    // no metadata / no connection before sending
	reasonWindow     = "in_flight_full" // no room in the in-flight window within ack_timeout
	reasonShutdown   = "shutdown"       // Close's deadline passed while waiting for the ack
	reasonTooLarge   = "too_large"      // larger than publish.batch_bytes; refused
	reasonEncode     = "encode"         // record.Marshal failed; refused
)

// metrics are the publisher's Prometheus series.
type metrics struct {
	sent          *prometheus.CounterVec // path: direct | drain | isolate
	acked         prometheus.Counter
	failed        *prometheus.CounterVec // reason
	spooled       prometheus.Counter
	spoolBytes    prometheus.Gauge
	spoolSegments prometheus.Gauge
	spoolCut      *prometheus.CounterVec // cause: torn_tail | corrupt
	drained       prometheus.Counter
	refused       *prometheus.CounterVec // reason (refuse.go)
	deadLetters   prometheus.Counter
	dlqTruncated  prometheus.Counter
	backpressure  prometheus.Counter
	spooling      prometheus.Gauge
	topicMissing  *prometheus.GaugeVec // topic (refuse.go)
	inFlight      prometheus.Gauge
	latency       *prometheus.HistogramVec // result: acked | spooled | error

	spoolAge prometheus.GaugeFunc // reads oldest at scrape time
	oldest   func() time.Duration // the spool's OldestAge; set before registering
}

// newMetrics creates the series (not yet registered).
func newMetrics() *metrics {
	const ns, sub = "kubesift", "collector"
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_sent_records_total",
			Help: "Records handed to the Kafka writer, by path (direct from Publish, drain from the spool, isolate: one at a time after a refusal that may be permanent)."}, []string{"path"}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_acked_records_total",
			Help: "Records acknowledged by Kafka (acks=all), late acknowledgements included."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_failed_records_total",
			Help: "Records that did not reach Kafka on an attempt, by reason; they are spooled or refused, not lost."}, []string{"reason"}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "spooled_records_total",
			Help: "Records written to the on-disk spool."}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "spool_bytes",
			Help: "Bytes of spool segment files on disk."}),
		spoolSegments: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "spool_segments",
			Help: "Spool segment files on disk."}),
		spoolCut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "spool_truncated_bytes_total",
			Help: "Spool bytes cut off: torn_tail (an append a crash interrupted; never acknowledged) or corrupt (damaged data; lost)."}, []string{"cause"}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "spool_drained_records_total",
			Help: "Spooled records acknowledged by Kafka and removed from the spool."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_refused_records_total",
			Help: "Records Kafka refused for good (too large, invalid, topic not authorised), or the publisher did not send (too_large: over publish.batch_bytes; encode), by reason; each went to the dead-letter topic."}, []string{"reason"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			// Not dead_letters_total: that name is the sources' family
			// (collector.SourceMetrics, labels source and reason), and
			// one registry cannot hold both.
			Name: "publish_dead_letters_total",
			Help: "Dead letters made durable (acknowledged by Kafka or spooled)."}),
		dlqTruncated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dead_letters_truncated_total",
			Help: "Dead letters whose data was cut to fit publish.batch_bytes."}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_backpressure_total",
			Help: "Publish calls refused with ErrBackpressure (spool full, spool error or shutting down)."}),
		spooling: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_spooling",
			Help: "1 while new records go to the spool (Kafka unavailable or the spool still draining), else 0."}),
		topicMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_topic_missing",
			Help: "1 while the spool drain waits for this topic to be created (its records, and the spooled records behind them, stay in the spool), else 0."}, []string{"topic"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_in_flight_bytes",
			Help: "Bytes handed to the Kafka writer and not yet acknowledged or failed."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "publish_duration_seconds",
			Help:    "Time a Publish call took until its records were durable, by result (acked, spooled, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"result"}),
	}
	// A function, not a gauge set on change: the age grows while nothing
	// happens, which is exactly when it matters.
	m.spoolAge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "spool_oldest_record_age_seconds",
		Help: "Age of the oldest spooled record not yet acknowledged by Kafka, at segment granularity (0 when the spool is empty)."},
		func() float64 {
			if m.oldest == nil {
				return 0
			}
			return m.oldest().Seconds()
		})
	// Pre-create the label values so dashboards see zeros, not gaps.
	for _, p := range []string{"direct", "drain", "isolate"} {
		m.sent.WithLabelValues(p)
	}
	for _, r := range []string{reasonWriteError, reasonAckTimeout, reasonUnavail, reasonWindow, reasonShutdown, reasonTooLarge, reasonEncode} {
		m.failed.WithLabelValues(r)
	}
	for _, r := range append([]string{reasonTooLarge, reasonEncode}, refusalReasons...) {
		m.refused.WithLabelValues(r)
	}
	for _, c := range []string{"torn_tail", "corrupt"} {
		m.spoolCut.WithLabelValues(c)
	}
	return m
}

// register adds every series to reg, or none (so that a failed New can be
// retried with the same registry).
func (m *metrics) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{m.sent, m.acked, m.failed, m.spooled, m.spoolBytes, m.spoolSegments,
		m.spoolAge, m.spoolCut, m.drained, m.refused, m.deadLetters, m.dlqTruncated, m.backpressure, m.spooling, m.topicMissing, m.inFlight, m.latency}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("publish metrics (one Publisher per registry): %w", err)
		}
	}
	return nil
}
