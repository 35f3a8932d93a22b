package objects

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of kubesift_collector_objects_skipped_total.
const (
	skipResync    = "resync"    // an update with an unchanged resourceVersion
	skipUnchanged = "unchanged" // a new resourceVersion, but the published form is the same
)

// Reasons of kubesift_collector_objects_dead_letters_total.
const (
	dlEncode      = "encode"       // the object could not be encoded as JSON
	dlField       = "field"        // a field the record needs is missing (uid, resourceVersion, …)
	dlRedaction   = "redaction"    // the sanitizer failed; never publish what it could not redact
	dlUnknownKind = "unknown_kind" // a queued key of a kind this build does not collect
)

type metrics struct {
	notifications  *prometheus.CounterVec // {kind, op}
	skipped        *prometheus.CounterVec // {reason}
	published      *prometheus.CounterVec // {kind, type}
	deadLetters    *prometheus.CounterVec // {reason}
	dropped        *prometheus.CounterVec // {reason}
	requeued       prometheus.Counter
	unavailable    *prometheus.CounterVec // {kind}
	publishRetries *prometheus.CounterVec // {reason}
	queueDepth     prometheus.Gauge
	leader         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "kubesift", "collector_objects"
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		notifications: counterVec("notifications_total", "Informer notifications (add, update, delete) per kind.", "kind", "op"),
		skipped: counterVec("skipped_total", "Object versions deliberately not published: resync (unchanged resourceVersion), "+
			"unchanged (new resourceVersion, same published form: Node heartbeats, managedFields-only changes).", "reason"),
		published: counterVec("published_total", "Object records (type object) and tombstones (type tombstone) acknowledged by the publisher.", "kind", "type"),
		deadLetters: counterVec("dead_letters_total", "Objects sent to the dead-letter topic instead of published "+
			"(encode, field, redaction, unknown_kind).", "reason"),
		dropped: counterVec("dropped_total", "Changes not queued because the queue was full (queue_full); "+
			"recovered from the informer cache once it drains (requeued_total).", "reason"),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requeued_total",
			Help: "Objects re-queued from the informer cache after changes were dropped on a full queue."}),
		unavailable: counterVec("kinds_unavailable_total", "Sessions that skipped a kind the API server does not serve.", "kind"),
		publishRetries: counterVec("publish_retries_total", "Publish attempts that failed and were retried "+
			"(backpressure: publisher full; error: anything else).", "reason"),
		queueDepth: gauge("queue_depth", "Objects queued between the informer handlers and the publishing worker."),
		leader:     gauge("leader", "1 while this collector holds the objects leader Lease (or leader election is off)."),
	}
	for _, c := range []prometheus.Collector{m.notifications, m.skipped, m.published, m.deadLetters, m.dropped,
		m.requeued, m.unavailable, m.publishRetries, m.queueDepth, m.leader} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("objects: metrics already registered (one objects source per registry): %w", err)
			}
			return nil, fmt.Errorf("objects: register metrics: %w", err)
		}
	}
	// Pre-create the series operators alert on, so they read 0 rather than absent.
	for _, r := range []string{skipResync, skipUnchanged} {
		m.skipped.WithLabelValues(r)
	}
	for _, r := range []string{dlEncode, dlField, dlRedaction, dlUnknownKind} {
		m.deadLetters.WithLabelValues(r)
	}
	m.dropped.WithLabelValues("queue_full")
	return m, nil
}
