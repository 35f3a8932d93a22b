package notify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/obs"
)

// Metrics are the notifier's counters. The zero value is not usable; use
// NewMetrics (a nil *Metrics in Options gets unregistered counters).
type Metrics struct {
	alerts        *prometheus.CounterVec // by outcome
	notifications *prometheus.CounterVec // by integration, outcome
	retries       *prometheus.CounterVec // by integration
	evictions     prometheus.Counter
	postponed     prometheus.Counter
	groups        prometheus.Gauge
}

// NewMetrics creates the counters and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_notify_alerts_total",
			Help: "Alerts handled by the dispatcher, by outcome (grouped, duplicate, silenced, inhibited, delivered, failed, overflow).",
		}, []string{"outcome"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_notify_notifications_total",
			Help: "Notifications finished per integration, by outcome (sent, failed).",
		}, []string{"integration", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_notify_retries_total",
			Help: "Failed notification attempts that were retried, per integration.",
		}, []string{"integration"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_notify_group_evictions_total",
			Help: "Aggregation groups flushed early and dropped because notify.max_groups was reached.",
		}),
		postponed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_notify_flushes_postponed_total",
			Help: "Group flushes postponed because a receiver's queues were full (the receiver is slow or down).",
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubesift_notify_groups",
			Help: "Aggregation groups held in memory.",
		}),
	}
	if err := obs.Register(reg, m.alerts, m.notifications, m.retries, m.evictions, m.postponed, m.groups); err != nil {
		return nil, fmt.Errorf("notify metrics: %w", err)
	}
	return m, nil
}
