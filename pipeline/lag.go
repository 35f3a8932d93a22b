package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/obs"
)

// LagMonitor exports each consumer group's lag and committed offset per
// partition as the broker sees them: the partition's high watermark minus
// the group's committed offset, asked for on a timer. A consumer's own view
// (kubesift_processor_lag, as of the last message it read) stands still
// when the consumer stalls or dies; this one keeps growing as records
// arrive, because it asks neither the consumer nor its process for
// anything but the group's name.
type LagMonitor struct {
	cl       *kafka.Client
	tr       *kafka.Transport // closed when Run returns
	groups   []GroupTopics
	interval time.Duration
	log      *slog.Logger

	lag       *prometheus.GaugeVec // group, topic, partition
	committed *prometheus.GaugeVec // group, topic, partition
	failures  *prometheus.CounterVec
	limit     obs.LogLimiter
}

// NewLagMonitor builds the monitor of groups and registers its metrics
// (kubesift_consumer_lag, kubesift_consumer_committed_offset,
// kubesift_consumer_lag_errors_total) with reg. Every group's error series
// exists at zero from the start; the per-partition gauges appear with the
// first answer, since the partitions are the broker's to tell.
func NewLagMonitor(k config.KafkaConfig, groups []GroupTopics, interval time.Duration, reg prometheus.Registerer, log *slog.Logger) (*LagMonitor, error) {
	if interval <= 0 {
		return nil, errors.New("lag monitor: interval must be positive")
	}
	transport, err := kafkaopts.Transport(k)
	if err != nil {
		return nil, fmt.Errorf("lag monitor: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	labels := []string{"group", "topic", "partition"}
	m := &LagMonitor{
		cl:       &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: transport, Timeout: min(interval, 10*time.Second)},
		tr:       transport,
		groups:   groups,
		interval: interval,
		log:      log,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubesift_consumer_lag",
			Help: "Messages of the partition the consumer group has not committed: the broker's high watermark minus the group's committed offset, asked every kafka.lag_interval."}, labels),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubesift_consumer_committed_offset",
			Help: "The consumer group's committed offset of the partition (the next offset to read; -1 when nothing is committed), asked every kafka.lag_interval."}, labels),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_consumer_lag_errors_total",
			Help: "Lag readings that failed (the broker did not answer); the gauges keep their last values meanwhile."}, []string{"group"}),
	}
	for _, g := range groups {
		m.failures.WithLabelValues(g.ID)
	}
	if err := obs.Register(reg, m.lag, m.committed, m.failures); err != nil {
		return nil, fmt.Errorf("lag monitor metrics: %w", err)
	}
	return m, nil
}

// Run reads the offsets at once and then every interval until ctx ends.
// A failed reading is counted and logged, never fatal: lag is what tells
// an operator that something else is wrong.
func (m *LagMonitor) Run(ctx context.Context) error {
	defer m.tr.CloseIdleConnections()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.read(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// read sets the gauges of every group from one round of questions.
func (m *LagMonitor) read(ctx context.Context) {
	for _, g := range m.groups {
		ps, err := groupOffsets(ctx, m.cl, g.ID, g.Topics)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.failures.WithLabelValues(g.ID).Inc()
			m.limit.Warn(m.log, "lag:"+g.ID, "consumer lag: cannot read the group's offsets", "group", g.ID, "err", err)
			continue
		}
		for _, p := range ps {
			part := strconv.Itoa(p.partition)
			m.lag.WithLabelValues(g.ID, p.topic, part).Set(float64(p.lag()))
			m.committed.WithLabelValues(g.ID, p.topic, part).Set(float64(p.committed))
		}
	}
}
