package pipeline

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// Kinds of documents and produced messages (metric labels).
const (
	kindRecord = "record"
	kindAlert  = "alert"
	kindDLQ    = "dlq"
)

// Stages of a dead letter (HeaderDLQStage, metric label).
const (
	StageDecode   = "decode"   // the message value is not a record
	StageDocument = "document" // no document could be built from the record
	StageIndex    = "index"    // the store refused the document for good
)

// metrics are the processor's Prometheus series (kubesift_processor_*).
type metrics struct {
	consumed       *prometheus.CounterVec // topic
	lag            *prometheus.GaugeVec   // topic, partition
	indexed        *prometheus.CounterVec // kind
	duplicates     *prometheus.CounterVec // kind
	rejected       *prometheus.CounterVec // reason (the store's error type)
	deadLetters    *prometheus.CounterVec // stage
	alerts         prometheus.Counter     // alerts raised by the rules
	alertsProduced prometheus.Counter     // alerts acknowledged by Kafka
	produceRetries *prometheus.CounterVec // kind
	inFlight       prometheus.Gauge
	assigned       prometheus.Gauge
	generations    prometheus.Counter
	abandoned      prometheus.Counter
	commitLatency  prometheus.Histogram
	commitErrors   prometheus.Counter
	committed      *prometheus.GaugeVec // topic, partition

	// The indexed and duplicates series of each kind, resolved once: they
	// are counted for every document.
	indexedRecord, indexedAlert prometheus.Counter
	dupRecord, dupAlert         prometheus.Counter
}

// indexedKind is m.indexed.WithLabelValues(kind) without the lookup.
func (m *metrics) indexedKind(kind string) prometheus.Counter {
	switch kind {
	case kindRecord:
		return m.indexedRecord
	case kindAlert:
		return m.indexedAlert
	}
	return m.indexed.WithLabelValues(kind)
}

// duplicateKind is m.duplicates.WithLabelValues(kind) without the lookup.
func (m *metrics) duplicateKind(kind string) prometheus.Counter {
	switch kind {
	case kindRecord:
		return m.dupRecord
	case kindAlert:
		return m.dupAlert
	}
	return m.duplicates.WithLabelValues(kind)
}

func newMetrics() *metrics {
	const ns, sub = "kubesift", "processor"
	m := &metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "consumed_total", Help: "Kafka messages read, by topic."}, []string{"topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "lag", Help: "Messages behind the partition's high watermark, as of the last message read: it stands still when the consumer stalls (kubesift_consumer_lag is the broker's view)."}, []string{"topic", "partition"}),
		indexed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "indexed_total", Help: "Documents the store wrote, by kind (record, alert)."}, []string{"kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "duplicates_total", Help: "Documents the store already had (re-deliveries), by kind."}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_total", Help: "Documents the store refused for good, by the store's error type; each goes to the dead-letter topic."}, []string{"reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dlq_total", Help: "Dead letters acknowledged by Kafka, by stage (decode, document, index)."}, []string{"stage"}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_total", Help: "Alerts raised by the rules (re-deliveries included)."}),
		alertsProduced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_produced_total", Help: "Alerts acknowledged by Kafka on the alerts topic."}),
		produceRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "produce_retries_total", Help: "Alert and dead-letter messages Kafka did not acknowledge and that were retried, by kind."}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "in_flight_messages", Help: "Messages read and not yet done, all partitions."}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "assigned_partitions", Help: "Partitions assigned to this member in the current generation."}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "generations_total", Help: "Consumer group generations joined (rebalances)."}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "drain_abandoned_total", Help: "Messages still in flight when a drain timed out; not committed, so re-delivered to the partition's next owner."}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "commit_seconds", Help: "Latency of offset commits.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "commit_errors_total", Help: "Offset commits that failed (the offsets are committed later or re-delivered)."}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "committed_offset", Help: "Last offset committed, per partition (the next offset to read)."}, []string{"topic", "partition"}),
	}
	m.indexedRecord, m.indexedAlert = m.indexed.WithLabelValues(kindRecord), m.indexed.WithLabelValues(kindAlert)
	m.dupRecord, m.dupAlert = m.duplicates.WithLabelValues(kindRecord), m.duplicates.WithLabelValues(kindAlert)
	for _, k := range []string{kindAlert, kindDLQ} {
		m.produceRetries.WithLabelValues(k)
	}
	for _, s := range []string{StageDecode, StageDocument, StageIndex} {
		m.deadLetters.WithLabelValues(s)
	}
	return m
}

// precreate exports the series whose label values are known once the
// configuration is: each consumed topic, and the rejection reasons an
// alert watches (the store's types for a document that does not fit).
func (m *metrics) precreate(topics []string) {
	for _, t := range topics {
		m.consumed.WithLabelValues(t)
	}
	for _, r := range append([]string{reasonRejected}, elasticsearch.DocumentRejectTypes...) {
		m.rejected.WithLabelValues(r)
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.consumed, m.lag, m.indexed, m.duplicates, m.rejected, m.deadLetters,
		m.alerts, m.alertsProduced, m.produceRetries, m.inFlight, m.assigned, m.generations, m.abandoned,
		m.commitLatency, m.commitErrors, m.committed}
}

// register adds every series (and more) to reg, or none.
func (m *metrics) register(reg prometheus.Registerer, more ...prometheus.Collector) error {
	cs := append(m.collectors(), more...)
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("processor metrics (one Processor per registry): %w", err)
		}
	}
	return nil
}
