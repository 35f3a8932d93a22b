package events

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of kubesift_collector_events_skipped_total.
const (
	skipTooOld    = "too_old"   // first start: older than max_age
	skipResync    = "resync"    // an update with an unchanged resourceVersion
	skipWatermark = "watermark" // initial list: at or below the watermark
)

// Reasons of kubesift_collector_events_watermark_ignored_total, and results
// of _watermark_writes_total and _enrich_total.
const (
	ignoredInvalid = "invalid" // the stored watermark does not parse
	ignoredCluster = "cluster" // it belongs to another cluster
	ignoredScope   = "scope"   // it was written for another namespace/selector scope
	ignoredAhead   = "ahead"   // it is ahead of what the API server serves
	writeOK        = "ok"
	writeError     = "error"
	enrichHit      = "hit"
	enrichMiss     = "miss"
)

type metrics struct {
	seen, added, updated *prometheus.CounterVec // {api}
	skipped              *prometheus.CounterVec // {reason}
	shipped              prometheus.Counter
	dropped              *prometheus.CounterVec // {reason}
	deadLetters          prometheus.Counter
	unshipped            prometheus.Counter
	publishRetries       *prometheus.CounterVec // {reason}
	publishDuration      prometheus.Histogram
	batchRecords         prometheus.Histogram
	leader               prometheus.Gauge
	leaderTerms          prometheus.Counter
	watchRestarts        *prometheus.CounterVec // {api}
	relists              *prometheus.CounterVec // {api}
	resumeExpired        prometheus.Counter
	lastEventTime        *prometheus.GaugeVec // {cluster}
	queueFull            prometheus.Counter
	queueBlocked         prometheus.Counter
	watermarkRV          prometheus.Gauge
	watermarkTime        prometheus.Gauge
	watermarkWrites      *prometheus.CounterVec // {result}
	watermarkIgnored     *prometheus.CounterVec // {reason}
	enrich               *prometheus.CounterVec // {result}

	depth atomic.Int64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "kubesift", "collector_events"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		seen:    counterVec("seen_total", "Event notifications received from the informers (adds, updates, resyncs).", "api"),
		added:   counterVec("added_total", "Event adds received from the informers.", "api"),
		updated: counterVec("updated_total", "Event updates with a new resourceVersion received from the informers.", "api"),
		skipped: counterVec("skipped_total", "Event versions deliberately not shipped: too_old (first start, older than max_age), "+
			"resync (unchanged resourceVersion), watermark (initial list, already shipped before).", "reason"),
		shipped: counter("shipped_total", "Event records acknowledged by the publisher (Kafka or spool)."),
		dropped: counterVec("dropped_total", "Event versions given up on (publish_rejected: the publisher refused the record "+
			"with a non-retryable error; it went to the dead-letter topic).", "reason"),
		deadLetters: counter("dead_letters_total", "Events sent to the dead-letter topic (no UID, or refused by the publisher)."),
		unshipped: counter("unshipped_on_stop_total", "Queued Event versions not shipped when the session stopped "+
			"(shutdown or lost leadership); they are below no watermark, the next leader ships them."),
		publishRetries: counterVec("publish_retries_total", "Publish attempts that failed and were retried "+
			"(backpressure: publisher full; error: anything else).", "reason"),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "publish_duration_seconds",
			Help: "Time from the start of a batch's first Publish attempt to its acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_records",
			Help: "Records per published batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		leader:        gauge("leader", "1 while this collector holds the Events leader Lease (or leader election is off) and ships Events."),
		leaderTerms:   counter("leader_terms_total", "Times this collector became the Events leader."),
		watchRestarts: counterVec("watch_restarts_total", "Event watches re-established after the first one of a session.", "api"),
		relists:       counterVec("relists_total", "Event relists after the first list of a session (watch expired, 410 Gone).", "api"),
		resumeExpired: counter("resume_expired_total", "Resumes whose watermark was older than the API server's watch window "+
			"(occurrences overwritten meanwhile are lost)."),
		lastEventTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_event_timestamp_seconds",
			Help: "Event time of the latest shipped Event, per cluster."}, []string{"cluster"}),
		queueFull:        counter("queue_full_total", "Times an informer handler found the queue full and waited (nothing is dropped)."),
		queueBlocked:     counter("queue_blocked_seconds_total", "Time informer handlers spent waiting for room in the queue."),
		watermarkRV:      gauge("watermark_resource_version", "The watermark: every Event version up to this resourceVersion is shipped."),
		watermarkTime:    gauge("watermark_timestamp_seconds", "Latest Event time shipped when the watermark was last written."),
		watermarkWrites:  counterVec("watermark_writes_total", "Watermark Lease writes (ok, error).", "result"),
		watermarkIgnored: counterVec("watermark_ignored_total", "Stored watermarks not used (invalid, cluster, scope, ahead).", "reason"),
		enrich:           counterVec("enrich_total", "Pod Event enrichment lookups in the Pod cache (hit, miss).", "result"),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_depth",
		Help: "Event versions queued between the informer handlers and the shipping worker."},
		func() float64 { return float64(m.depth.Load()) })
	for _, c := range []prometheus.Collector{
		m.seen, m.added, m.updated, m.skipped, m.shipped, m.dropped, m.deadLetters, m.unshipped, m.publishRetries,
		m.publishDuration, m.batchRecords, m.leader, m.leaderTerms, m.watchRestarts, m.relists, m.resumeExpired,
		m.lastEventTime, m.queueFull, m.queueBlocked, m.watermarkRV, m.watermarkTime, m.watermarkWrites,
		m.watermarkIgnored, m.enrich, depth,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("events: metrics already registered (one Events collector per registry): %w", err)
			}
			return nil, fmt.Errorf("events: register metrics: %w", err)
		}
	}
	// Pre-create the label values operators alert on, so they read 0
	// rather than absent.
	for _, r := range []string{skipTooOld, skipResync, skipWatermark} {
		m.skipped.WithLabelValues(r)
	}
	m.dropped.WithLabelValues("publish_rejected")
	m.publishRetries.WithLabelValues("backpressure")
	m.publishRetries.WithLabelValues("error")
	for _, r := range []string{ignoredInvalid, ignoredCluster, ignoredScope, ignoredAhead} {
		m.watermarkIgnored.WithLabelValues(r)
	}
	for _, r := range []string{writeOK, writeError} {
		m.watermarkWrites.WithLabelValues(r)
	}
	for _, r := range []string{enrichHit, enrichMiss} {
		m.enrich.WithLabelValues(r)
	}
	return m, nil
}

// watch exports the per-API series of the Events APIs watched (config
// collector.events.apis) at 0. last_event_timestamp_seconds is left out on
// purpose: a timestamp of 0 would read as an Event stream silent since 1970.
func (m *metrics) watch(apis []string) {
	for _, api := range apis {
		for _, c := range []*prometheus.CounterVec{m.seen, m.added, m.updated, m.watchRestarts, m.relists} {
			c.WithLabelValues(api)
		}
	}
}
