package notify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/obs"
)

// Outcomes of kubesift_notify_alerts_total beside the delivery states, and
// of kubesift_notify_notifications_total.
const (
	outcomeDuplicate = "duplicate" // the same alert ID again in its group
	outcomeOverflow  = "overflow"  // counted only: the group is over every bound
	outcomeSent      = "sent"
	outcomeFailed    = "failed"
)

// alertOutcomes is every value of kubesift_notify_alerts_total{outcome}.
var alertOutcomes = []string{string(StateGrouped), string(StateSilenced), string(StateInhibited),
	string(StateDelivered), string(StateFailed), outcomeDuplicate, outcomeOverflow}

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
	for _, o := range alertOutcomes {
		m.alerts.WithLabelValues(o)
	}
	return m, nil
}

// integration exports an integration's series at 0 before its first
// notification, so a receiver that never succeeded shows sent 0, not
// nothing.
func (m *Metrics) integration(name string) {
	m.notifications.WithLabelValues(name, outcomeSent)
	m.notifications.WithLabelValues(name, outcomeFailed)
	m.retries.WithLabelValues(name)
}
