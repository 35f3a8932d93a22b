package config

import (
	"fmt"
	"slices"
	"time"
)

// ProcessorConfig configures `kubesift process` (package pipeline): the
// Kafka consumer group that reads records, evaluates the rules and hands
// documents to the Elasticsearch sink and alerts to the alerts topic.
// docs/processor.md explains how these settings bound memory and latency.
type ProcessorConfig struct {
	// GroupID is the Kafka consumer group; every processor of one
	// deployment uses the same one, and the partitions are shared among them.
	GroupID string `yaml:"group_id"`
	// Topics are the topics consumed; empty means kafka.topics.audit and
	// kafka.topics.events.
	Topics []string `yaml:"topics"`
	// StartOffset is where a group with no committed offset begins:
	// earliest (every record still on the topic) or latest.
	StartOffset string `yaml:"start_offset"`

	// SessionTimeout is how long the group coordinator waits for a
	// heartbeat before it declares a member dead (a kill -9'd processor's
	// partitions move after this long).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often a member heartbeats; well below
	// SessionTimeout.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout is how long the coordinator waits for every member
	// to rejoin during a rebalance; it must exceed DrainTimeout, since a
	// member drains and commits before it rejoins.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// DrainTimeout bounds the wait, when partitions are revoked (rebalance
	// or shutdown), for in-flight records to be done before their offsets
	// are committed. Records still in flight after it are re-delivered to
	// the partition's next owner (idempotent writes make that harmless).
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// CommitInterval is how often the acknowledged offsets are committed.
	// Short: a crash re-delivers what was acknowledged since the last commit.
	CommitInterval time.Duration `yaml:"commit_interval"`

	// MaxInFlightMessages bounds, per partition, the messages read and not
	// yet done (acknowledged); the partition's reader waits for room.
	MaxInFlightMessages int `yaml:"max_in_flight_messages"`
	// MaxInFlightBytes bounds, per partition, the message bytes read and not
	// yet done. A single larger message is still let through alone.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// FetchMaxBytes is the most bytes one fetch request returns per
	// partition; it must exceed the brokers' largest message.
	FetchMaxBytes int `yaml:"fetch_max_bytes"`
	// FetchMaxWait is how long a fetch waits on the broker for new data.
	FetchMaxWait time.Duration `yaml:"fetch_max_wait"`
	// QueueCapacity is how many fetched messages each partition reader
	// holds ahead of processing.
	QueueCapacity int `yaml:"queue_capacity"`

	// Produce configures the writer of alerts and dead letters.
	Produce ProcessorProduceConfig `yaml:"produce"`
	// Rules configures the rule set evaluated on every record.
	Rules ProcessorRulesConfig `yaml:"rules"`
	// Posture configures the posture consumer (objects topic to findings).
	Posture ProcessorPostureConfig `yaml:"posture"`
	// Network configures where requests come from: source classes,
	// network lists, GeoIP (network_config.go).
	Network ProcessorNetworkConfig `yaml:"network"`
	// RuleState keeps the stateful rules' windows and new_term memories in
	// a changelog topic, so they survive restarts and partition moves.
	RuleState ProcessorRuleStateConfig `yaml:"rule_state"`
}

// ProcessorRuleStateConfig configures durable rule state: per input
// partition, the groups of every stateful rule (threshold, distinct,
// sequence, new_term) are written to a compacted changelog topic and
// restored from it when the partition is assigned, before its first record
// is processed. docs/processor.md ("Durable rule state") describes it.
type ProcessorRuleStateConfig struct {
	// Enabled turns durable rule state on; off, the windows live in memory
	// only and start empty on every restart and rebalance.
	Enabled bool `yaml:"enabled"`
	// Topic is the changelog topic; empty: "<group_id>-rule-state".
	// `kubesift setup kafka` creates it, compacted, with as many partitions
	// as the consumed topics.
	Topic string `yaml:"topic"`
	// MaxBytesPerRule bounds the encoded state of one rule in one
	// partition; past it the least recently used groups are dropped (and
	// deleted from the changelog).
	MaxBytesPerRule int64 `yaml:"max_bytes_per_rule"`
	// NewTermHorizon caps how long a new_term rule remembers a term that is
	// not seen again (its lookback, when shorter, applies instead).
	NewTermHorizon time.Duration `yaml:"new_term_horizon"`
}

// StateTopic is the changelog topic of durable rule state.
func (c *ProcessorConfig) StateTopic() string {
	if c.RuleState.Topic != "" {
		return c.RuleState.Topic
	}
	return c.GroupID + "-rule-state"
}

// ProcessorPostureConfig configures the posture consumer of `kubesift
// process`: a consumer group of its own on kafka.topics.objects that keeps
// each cluster's inventory, judges it with the object rules and writes
// findings (sink.elasticsearch.findings) and alerts (kafka.topics.alerts).
// docs/processor.md ("The posture consumer") describes it.
type ProcessorPostureConfig struct {
	// Enabled starts the posture consumer beside the record processor.
	// Off by default: it needs the objects source in the collector and the
	// findings index installed (kubesift setup es).
	Enabled bool `yaml:"enabled"`
	// GroupID is the posture consumer's Kafka consumer group; the
	// partitions of the objects topic (whole clusters each) are shared
	// among its members.
	GroupID string `yaml:"group_id"`
	// AlertSeverity is the lowest severity at which a newly opened or
	// reopened finding also becomes an alert.
	AlertSeverity string `yaml:"alert_severity"`
	// ScoreInterval is how often the scores of the clusters that changed
	// are recomputed, exported and indexed.
	ScoreInterval time.Duration `yaml:"score_interval"`
	// ActorWait is how long an opening transition waits for the audit
	// record of the change that caused it (its actor), searched in the
	// audit data stream; 0 disables the search. docs/posture.md ("Who
	// made it fail: the actor") describes the match.
	ActorWait time.Duration `yaml:"actor_wait"`
	// RBACUsage configures least privilege from real usage: which bindings
	// allowed which requests (docs/posture.md, "RBAC usage").
	RBACUsage ProcessorRBACUsageConfig `yaml:"rbac_usage"`
}

// ProcessorRBACUsageConfig configures the RBAC usage the posture consumer
// keeps per cluster from the authorization reasons of the audit data
// stream, in sink.elasticsearch.findings.usage_index. It needs the
// Elasticsearch store: the NDJSON store has no audit search.
type ProcessorRBACUsageConfig struct {
	// Enabled reads usage and judges the rbac_usage checks with it.
	Enabled bool `yaml:"enabled"`
	// Window is how long a binding may go unused before it is reported,
	// and how long a cluster must have been watched before anything is.
	Window time.Duration `yaml:"window"`
	// Interval is how often the audit data stream is read for new uses
	// and the usage checks are judged again (time alone turns a binding
	// unused).
	Interval time.Duration `yaml:"interval"`
	// Lookback is how far before the last read each read starts again: an
	// audit document searchable later than this after the processor built
	// it is missed. Reading a use twice changes nothing.
	Lookback time.Duration `yaml:"lookback"`
}

// ProcessorProduceConfig configures the processor's Kafka writer (alerts
// topic, dead-letter topic). It always uses acks=all.
type ProcessorProduceConfig struct {
	// BatchTimeout is how long a batch waits to fill; every acknowledged
	// offset waits for its alerts' batches, so it is milliseconds.
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// BatchSize is the most messages in one produce batch per partition.
	BatchSize int `yaml:"batch_size"`
	// BatchBytes is the most bytes in one produce batch; a dead letter
	// larger than this is cut (and marked so).
	BatchBytes int64 `yaml:"batch_bytes"`
	// MaxInFlight bounds the messages handed to the writer and not yet
	// acknowledged by Kafka; producers wait for room.
	MaxInFlight int `yaml:"max_in_flight"`
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// RetryBackoff and RetryMaxBackoff bound the waits between retries of
	// a message Kafka did not acknowledge. Alerts and dead letters are
	// retried until they are acknowledged: losing them is not an option.
	RetryBackoff    time.Duration `yaml:"retry_backoff"`
	RetryMaxBackoff time.Duration `yaml:"retry_max_backoff"`
}

// ProcessorRulesConfig says which rules the processor evaluates.
type ProcessorRulesConfig struct {
	// NoBuiltin leaves the built-in rule pack out.
	NoBuiltin bool `yaml:"no_builtin"`
	// Dirs are rule files or directories layered over the built-in pack.
	Dirs []string `yaml:"dirs"`
	// ReloadInterval is how often the rule files are checked for changes
	// (hot reload); 0 disables reloading.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Start offsets of a new consumer group (processor.start_offset).
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

func defaultProcessor() ProcessorConfig {
	return ProcessorConfig{
		GroupID:             "kubesift-processor",
		StartOffset:         StartEarliest,
		SessionTimeout:      10 * time.Second,
		HeartbeatInterval:   time.Second,
		RebalanceTimeout:    30 * time.Second,
		DrainTimeout:        10 * time.Second,
		CommitInterval:      time.Second,
		MaxInFlightMessages: 2000,
		MaxInFlightBytes:    8 << 20,
		FetchMaxBytes:       4 << 20,
		FetchMaxWait:        250 * time.Millisecond,
		QueueCapacity:       500,
		Produce: ProcessorProduceConfig{
			BatchTimeout:    10 * time.Millisecond,
			BatchSize:       1000,
			BatchBytes:      1 << 20,
			MaxInFlight:     10000,
			WriteTimeout:    10 * time.Second,
			RetryBackoff:    200 * time.Millisecond,
			RetryMaxBackoff: 10 * time.Second,
		},
		Rules:   ProcessorRulesConfig{ReloadInterval: 30 * time.Second},
		Posture: ProcessorPostureConfig{GroupID: "kubesift-posture", AlertSeverity: "high", ScoreInterval: 30 * time.Second, ActorWait: 10 * time.Second, RBACUsage: defaultRBACUsage()},

		// The built-in new_term rules look back 7 days at most: the horizon
		// caps only user rules that look back further.
		RuleState: ProcessorRuleStateConfig{MaxBytesPerRule: 8 << 20, NewTermHorizon: 90 * 24 * time.Hour},
	}
}

func defaultRBACUsage() ProcessorRBACUsageConfig {
	return ProcessorRBACUsageConfig{Enabled: true, Window: 90 * 24 * time.Hour, Interval: time.Minute, Lookback: 15 * time.Minute}
}

// UnmarshalYAML fills defaults before reading, so a partial section keeps
// the defaults of the fields it does not name.
func (c *ProcessorConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultProcessor()
	type plain ProcessorConfig
	return unmarshal((*plain)(c))
}

// ConsumedTopics returns the topics the processor reads: Topics, or the
// audit and events topics of k.
func (c *ProcessorConfig) ConsumedTopics(k KafkaConfig) []string {
	if len(c.Topics) > 0 {
		return c.Topics
	}
	return []string{k.Topics.Audit, k.Topics.Events}
}

// validate adds problems of the processor section, with full field paths
// ("processor.…"), to v.
func (c *ProcessorConfig) validate(v *validator) {
	positiveDur := func(field string, d time.Duration) bool {
		if d <= 0 {
			v.add(field, "must be positive")
			return false
		}
		return true
	}
	positive := func(field string, n int64) bool {
		if n <= 0 {
			v.add(field, "must be positive")
			return false
		}
		return true
	}
	if c.GroupID == "" {
		v.add("processor.group_id", "must not be empty")
	}
	seen := map[string]bool{}
	for i, t := range c.Topics {
		switch {
		case t == "":
			v.add(fmt.Sprintf("processor.topics[%d]", i), "must not be empty")
		case seen[t]:
			v.add(fmt.Sprintf("processor.topics[%d]", i), fmt.Sprintf("%q is listed twice", t))
		}
		seen[t] = true
	}
	v.oneOf("processor.start_offset", c.StartOffset, StartEarliest, StartLatest)
	sessOK := positiveDur("processor.session_timeout", c.SessionTimeout)
	if positiveDur("processor.heartbeat_interval", c.HeartbeatInterval) && sessOK && c.HeartbeatInterval*3 > c.SessionTimeout {
		v.add("processor.heartbeat_interval", "must be at most a third of processor.session_timeout")
	}
	rebOK := positiveDur("processor.rebalance_timeout", c.RebalanceTimeout)
	if positiveDur("processor.drain_timeout", c.DrainTimeout) && rebOK && c.DrainTimeout >= c.RebalanceTimeout {
		// A member drains before it rejoins; a drain longer than the
		// rebalance timeout gets it thrown out of the group.
		v.add("processor.drain_timeout", "must be shorter than processor.rebalance_timeout")
	}
	positiveDur("processor.commit_interval", c.CommitInterval)
	positive("processor.max_in_flight_messages", int64(c.MaxInFlightMessages))
	positive("processor.max_in_flight_bytes", c.MaxInFlightBytes)
	positive("processor.fetch_max_bytes", int64(c.FetchMaxBytes))
	positiveDur("processor.fetch_max_wait", c.FetchMaxWait)
	positive("processor.queue_capacity", int64(c.QueueCapacity))

	p := &c.Produce
	positiveDur("processor.produce.batch_timeout", p.BatchTimeout)
	positive("processor.produce.batch_size", int64(p.BatchSize))
	// Dead letters carry up to a whole consumed message plus headers.
	if positive("processor.produce.batch_bytes", p.BatchBytes) && p.BatchBytes < 64<<10 {
		v.add("processor.produce.batch_bytes", "must be at least 65536")
	}
	positive("processor.produce.max_in_flight", int64(p.MaxInFlight))
	positiveDur("processor.produce.write_timeout", p.WriteTimeout)
	backOK := positiveDur("processor.produce.retry_backoff", p.RetryBackoff)
	if positiveDur("processor.produce.retry_max_backoff", p.RetryMaxBackoff) && backOK && p.RetryMaxBackoff < p.RetryBackoff {
		v.add("processor.produce.retry_max_backoff", "must not be below processor.produce.retry_backoff")
	}
	for i, d := range c.Rules.Dirs {
		if d == "" {
			v.add(fmt.Sprintf("processor.rules.dirs[%d]", i), "must not be empty")
		}
	}
	if c.Rules.ReloadInterval < 0 {
		v.add("processor.rules.reload_interval", "must not be negative")
	}
	c.Posture.validate(v, c.GroupID)
	if rs := c.RuleState; rs.Enabled {
		positive("processor.rule_state.max_bytes_per_rule", rs.MaxBytesPerRule)
		positiveDur("processor.rule_state.new_term_horizon", rs.NewTermHorizon)
		if slices.Contains(c.Topics, c.StateTopic()) {
			v.add("processor.rule_state.topic", fmt.Sprintf("%q is also consumed (processor.topics)", c.StateTopic()))
		}
	}
	c.Network.validate(v)
}

func (c *ProcessorPostureConfig) validate(v *validator, recordsGroup string) {
	if !c.Enabled {
		return
	}
	switch c.GroupID {
	case "":
		v.add("processor.posture.group_id", "must not be empty")
	case recordsGroup:
		// One group for two consumers of different topics would make
		// every rebalance of one revoke the other's partitions.
		v.add("processor.posture.group_id", "must differ from processor.group_id")
	}
	v.oneOf("processor.posture.alert_severity", c.AlertSeverity, "info", "low", "medium", "high", "critical")
	if c.ScoreInterval <= 0 {
		v.add("processor.posture.score_interval", "must be positive")
	}
	if u := c.RBACUsage; u.Enabled {
		for _, d := range []struct {
			field string
			d     time.Duration
		}{{"window", u.Window}, {"interval", u.Interval}, {"lookback", u.Lookback}} {
			if d.d <= 0 {
				v.add("processor.posture.rbac_usage."+d.field, "must be positive")
			}
		}
	}
	if c.ActorWait < 0 {
		v.add("processor.posture.actor_wait", "must not be negative (0 disables the actor search)")
	}
}
