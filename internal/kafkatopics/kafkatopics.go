// Package kafkatopics creates and checks kubesift's five Kafka topics: what
// `kubesift setup kafka` does (Setup), and the check each component runs at
// start and keeps running (Watch).
//
// # The setup contract
//
//   - A missing topic is created with the settings of kafka.topic_settings
//     (Specs): partitions, replication factor, min.insync.replicas,
//     retention.ms, max.message.bytes large enough for every batch the
//     collector and the processor send, and cleanup.policy=compact on the
//     objects topic (its key names an object, and a deleted object is a
//     tombstone) — delete on the others. With processor.rule_state.enabled
//     a sixth topic, the rule-state changelog (RoleRuleState), is compacted
//     too and has as many partitions as the audit or events topic, whichever
//     has more: the state of input partition p is written to its partition p.
//   - An existing topic is compared with the same settings. A difference
//     (drift) is reported, never changed silently. With ApplyDrift the
//     settings that change no record's place or fate are altered:
//     retention.ms, min.insync.replicas, and max.message.bytes when it
//     grows. With GrowPartitions partitions are added (keys move to other
//     partitions, so per-key order holds again only for records written
//     after); never on the objects topic, whose partitions hold whole
//     clusters and whose compaction must see every version of a key in one
//     partition. cleanup.policy, a smaller max.message.bytes wanted than the
//     topic has, fewer partitions and the replication factor are never
//     changed: they are reported with what to do.
//   - A second run on topics it made changes nothing and says so.
//
// Metadata requests here never create topics (allow_auto_topic_creation is
// false), even on a broker with auto.create.topics.enable: a topic created
// that way has the broker's defaults, not kubesift's.
package kafkatopics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
)

// Topic configuration keys kubesift sets.
const (
	CleanupPolicy     = "cleanup.policy"
	RetentionMs       = "retention.ms"
	MinInsyncReplicas = "min.insync.replicas"
	MaxMessageBytes   = "max.message.bytes"
	SegmentMs         = "segment.ms"
)

// SetupCommand is what a component's log and readiness name as the way to
// create missing topics.
const SetupCommand = "kubesift setup kafka -c <config>"

// Spec is one topic as the configuration wants it.
type Spec struct {
	// Role is the key of kafka.topics: audit, events, objects, alerts, dlq.
	Role              string
	Name              string
	Partitions        int
	ReplicationFactor int
	// Configs are the topic-level configs, by Kafka's names.
	Configs map[string]string
}

// RoleRuleState is the Spec role of the rule-state changelog topic
// (processor.rule_state), which is not one of kafka.topics.
const RoleRuleState = "rule_state"

// Specs returns the five topics of c, in config.TopicRoles order, and the
// rule-state changelog after them when processor.rule_state is enabled.
func Specs(c *config.Config) []Spec {
	names := map[string]string{
		"audit": c.Kafka.Topics.Audit, "events": c.Kafka.Topics.Events, "objects": c.Kafka.Topics.Objects,
		"alerts": c.Kafka.Topics.Alerts, "dlq": c.Kafka.Topics.DLQ,
	}
	out := make([]Spec, 0, len(config.TopicRoles))
	for _, role := range config.TopicRoles {
		s := c.Kafka.TopicSettings.For(role, c)
		cfgs := map[string]string{
			CleanupPolicy:     "delete",
			MinInsyncReplicas: strconv.Itoa(s.MinInsyncReplicas),
			MaxMessageBytes:   strconv.FormatInt(s.MaxMessageBytes, 10),
		}
		if role == "objects" {
			// The latest version of each object, however old: compaction
			// alone decides what goes, so retention.ms is not set.
			cfgs[CleanupPolicy] = "compact"
		} else {
			cfgs[RetentionMs] = strconv.FormatInt(s.Retention.Milliseconds(), 10)
		}
		out = append(out, Spec{Role: role, Name: names[role], Partitions: s.Partitions,
			ReplicationFactor: s.ReplicationFactor, Configs: cfgs})
	}
	if c.Processor.RuleState.Enabled {
		out = append(out, ruleStateSpec(c))
	}
	return out
}

// ruleStateSpec is the rule-state changelog: compacted (a group's latest
// state is all that matters, a tombstone deletes it) and never expired by
// time, partitioned like the larger of the input topics. Its replication
// and size settings are the audit topic's. Its segments roll every hour:
// compaction never touches the active segment, and a restore reads it
// whole, so with Kafka's default (7 days or 1 GiB) a busy partition would
// restore days of superseded changes.
func ruleStateSpec(c *config.Config) Spec {
	audit, events := c.Kafka.TopicSettings.For("audit", c), c.Kafka.TopicSettings.For("events", c)
	return Spec{Role: RoleRuleState, Name: c.Processor.StateTopic(), Partitions: max(audit.Partitions, events.Partitions),
		ReplicationFactor: audit.ReplicationFactor, Configs: map[string]string{
			CleanupPolicy:     "compact",
			MinInsyncReplicas: strconv.Itoa(audit.MinInsyncReplicas),
			MaxMessageBytes:   strconv.FormatInt(audit.MaxMessageBytes, 10),
			SegmentMs:         strconv.FormatInt(time.Hour.Milliseconds(), 10),
		}}
}

// Admin talks to Kafka's admin APIs with the kafka section's connection
// settings (TLS, SASL).
type Admin struct {
	c  *kafka.Client
	tr *kafka.Transport
}

// NewAdmin returns an Admin for k; Close releases its connections.
func NewAdmin(k config.KafkaConfig, timeout time.Duration) (*Admin, error) {
	if len(k.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: at least one broker is required")
	}
	tr, err := kafkaopts.Transport(k)
	if err != nil {
		return nil, err
	}
	return &Admin{c: &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: timeout, Transport: tr}, tr: tr}, nil
}

// Close closes the Admin's idle connections.
func (a *Admin) Close() { a.tr.CloseIdleConnections() }

// Actual is what a topic is on the broker.
type Actual struct {
	Exists     bool
	Partitions int
	// ReplicationFactor is the smallest number of replicas of a partition.
	ReplicationFactor int
	// Configs are the values of the keys asked for (set on the topic or
	// inherited from the broker).
	Configs map[string]string
}

// Missing returns the topics of names that do not exist, in names' order.
func (a *Admin) Missing(ctx context.Context, names []string) ([]string, error) {
	md, err := a.metadata(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if _, ok := md[n]; !ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// metadata returns the existing topics among names. A topic whose metadata
// carries an error other than "unknown topic" is an error: it exists but
// cannot be described (not authorised, leader election in progress).
func (a *Admin) metadata(ctx context.Context, names []string) (map[string]kafka.Topic, error) {
	res, err := a.c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("kafka metadata: %w", err)
	}
	out := make(map[string]kafka.Topic, len(res.Topics))
	for _, t := range res.Topics {
		switch {
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
		case t.Error != nil:
			return nil, fmt.Errorf("kafka metadata of topic %s: %w", t.Name, t.Error)
		default:
			out[t.Name] = t
		}
	}
	return out, nil
}

// Describe returns the state of each spec's topic: whether it exists, its
// partitions and replication factor, and the configs the spec names.
func (a *Admin) Describe(ctx context.Context, specs []Spec) (map[string]Actual, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	md, err := a.metadata(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Actual, len(specs))
	var req kafka.DescribeConfigsRequest
	for _, s := range specs {
		t, ok := md[s.Name]
		if !ok {
			out[s.Name] = Actual{}
			continue
		}
		rf := 0
		for i, p := range t.Partitions {
			if i == 0 || len(p.Replicas) < rf {
				rf = len(p.Replicas)
			}
		}
		out[s.Name] = Actual{Exists: true, Partitions: len(t.Partitions), ReplicationFactor: rf, Configs: map[string]string{}}
		keys := make([]string, 0, len(s.Configs))
		for k := range s.Configs {
			keys = append(keys, k)
		}
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, ConfigNames: keys})
	}
	if len(req.Resources) == 0 {
		return out, nil
	}
	res, err := a.c.DescribeConfigs(ctx, &req)
	if err != nil {
		return nil, fmt.Errorf("kafka describe configs: %w", err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("kafka describe configs of topic %s: %w", r.ResourceName, r.Error)
		}
		act := out[r.ResourceName]
		for _, e := range r.ConfigEntries {
			act.Configs[e.ConfigName] = e.ConfigValue
		}
	}
	return out, nil
}
