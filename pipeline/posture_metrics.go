package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/rules/posture"
)

// Results of an object message (kubesift_posture_messages_total).
const (
	resultApplied = "applied"
	resultDeleted = "deleted"
	resultInvalid = "invalid"
)

// postureMetrics are the posture consumer's series (kubesift_posture_*).
// The engine's own counters (objects judged, evaluations, transitions) are
// its Collector, registered beside them by NewPosture.
type postureMetrics struct {
	score          *prometheus.GaugeVec   // cluster, namespace ("" for the cluster)
	objects        *prometheus.CounterVec // result
	transitions    *prometheus.CounterVec // state
	alerts         prometheus.Counter
	deadLetters    *prometheus.CounterVec // stage
	lag            *prometheus.GaugeVec   // partition
	committed      *prometheus.GaugeVec   // partition
	commitErrors   prometheus.Counter
	assigned       prometheus.Gauge
	abandoned      prometheus.Counter
	rebuilds       prometheus.Counter
	rebuildSeconds prometheus.Gauge
	actorLookups   *prometheus.CounterVec // result
}

func newPostureMetrics() *postureMetrics {
	const ns, sub = "kubesift", "posture"
	m := &postureMetrics{
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "score", Help: "Posture score in percent (passed weight over judged weight), per cluster (namespace \"\") and namespace."}, []string{"cluster", "namespace"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "messages_total", Help: "Objects-topic messages taken by the posture consumer, by result (applied, deleted, invalid)."}, []string{"result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "transitions_emitted_total", Help: "Finding transitions handed to the findings writer, by new state (replays after a rebuild included)."}, []string{"state"}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_total", Help: "Posture alerts acknowledged by Kafka on the alerts topic."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dlq_total", Help: "Posture dead letters acknowledged by Kafka, by stage (decode, document, index)."}, []string{"stage"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "lag", Help: "Messages behind the objects partition's high watermark, as of the last message read: it stands still when the consumer stalls (kubesift_consumer_lag is the broker's view)."}, []string{"partition"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "committed_offset", Help: "Last offset of the objects topic committed, per partition."}, []string{"partition"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "commit_errors_total", Help: "Offset commits of the posture consumer that failed."}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "assigned_partitions", Help: "Objects-topic partitions assigned to this member."}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "drain_abandoned_total", Help: "Messages still in flight when a drain timed out; the partition's next owner rebuilds them."}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rebuilds_total", Help: "Partitions rebuilt from the objects topic (on each assignment)."}),
		rebuildSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "rebuild_seconds", Help: "Duration of the last rebuild: read to the high watermark, restore, replace, transitions written."}),
		actorLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "actor_lookups_total", Help: "Actor lookups of live changes that opened or reopened findings, by result (found, not_found, error, pre_existing, given_up)."}, []string{"result"}),
	}
	for _, r := range []string{resultApplied, resultDeleted, resultInvalid} {
		m.objects.WithLabelValues(r)
	}
	for _, s := range []posture.State{posture.StateOpen, posture.StateResolved, posture.StateReopened} {
		m.transitions.WithLabelValues(string(s))
	}
	for _, s := range []string{StageDecode, StageDocument, StageIndex} {
		m.deadLetters.WithLabelValues(s)
	}
	for _, r := range []string{actorFound, actorNotFound, actorError, actorPreExisting, actorGivenUp} {
		m.actorLookups.WithLabelValues(r)
	}
	return m
}

// collectors are the posture consumer's series (NewPosture registers them
// with the rest, all or none).
func (m *postureMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.score, m.objects, m.transitions, m.alerts, m.deadLetters, m.lag, m.committed,
		m.commitErrors, m.assigned, m.abandoned, m.rebuilds, m.rebuildSeconds, m.actorLookups}
}
