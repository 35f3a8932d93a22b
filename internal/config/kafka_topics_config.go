package config

import (
	"fmt"
	"time"
)

// TopicSettings are the settings `kubesift setup kafka` creates a topic with
// and checks an existing topic against (package internal/kafkatopics). In a
// per-topic block a zero field takes the value of kafka.topic_settings.
type TopicSettings struct {
	// Partitions bounds how many processors (or notifiers) share a topic's
	// work; it can only grow later, and growing it moves keys.
	Partitions int `yaml:"partitions"`
	// ReplicationFactor is the number of copies; 1 for a single broker.
	ReplicationFactor int `yaml:"replication_factor"`
	// MinInsyncReplicas is min.insync.replicas: with acks=all, a write
	// fails unless this many replicas have it. 0: ReplicationFactor - 1,
	// at least 1 and at most 2.
	MinInsyncReplicas int `yaml:"min_insync_replicas"`
	// Retention is retention.ms. Not set on the objects topic, which is
	// compacted (cleanup.policy=compact) and keeps the latest version of
	// every object however old.
	Retention time.Duration `yaml:"retention"`
	// MaxMessageBytes is max.message.bytes, the largest record batch the
	// topic takes. 0: the larger of publish.batch_bytes and
	// processor.produce.batch_bytes plus 64 KiB of batch framing, so that
	// every batch the collector and the processor send fits.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
}

// TopicSettingsConfig is kafka.topic_settings: the settings of every topic,
// and per-topic blocks whose non-zero fields override them.
type TopicSettingsConfig struct {
	TopicSettings `yaml:",inline"`
	Audit         TopicSettings `yaml:"audit,omitempty"`
	Events        TopicSettings `yaml:"events,omitempty"`
	Objects       TopicSettings `yaml:"objects,omitempty"`
	Alerts        TopicSettings `yaml:"alerts,omitempty"`
	DLQ           TopicSettings `yaml:"dlq,omitempty"`
}

// TopicFraming is what max.message.bytes allows over the largest batch a
// kubesift producer assembles (publish.batch_bytes counts records, not the
// record batch's header and per-record framing).
const TopicFraming = 64 << 10

func defaultTopicSettings() TopicSettingsConfig {
	return TopicSettingsConfig{
		TopicSettings: TopicSettings{Partitions: 6, ReplicationFactor: 3, Retention: 7 * 24 * time.Hour},
		// Dead letters wait for a person to look at them.
		DLQ: TopicSettings{Retention: 30 * 24 * time.Hour},
	}
}

// UnmarshalYAML fills defaults before reading, so a partial section keeps
// the defaults of the fields it does not name.
func (c *TopicSettingsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultTopicSettings()
	type plain TopicSettingsConfig
	return unmarshal((*plain)(c))
}

// For returns the settings of one topic ("audit", "events", "objects",
// "alerts" or "dlq"): the per-topic block over the common settings, with
// MinInsyncReplicas and MaxMessageBytes derived when zero (c is the whole
// configuration, for the producers' batch sizes).
func (t TopicSettingsConfig) For(role string, c *Config) TopicSettings {
	s, o := t.TopicSettings, t.override(role)
	if o.Partitions != 0 {
		s.Partitions = o.Partitions
	}
	if o.ReplicationFactor != 0 {
		s.ReplicationFactor = o.ReplicationFactor
	}
	if o.MinInsyncReplicas != 0 {
		s.MinInsyncReplicas = o.MinInsyncReplicas
	}
	if o.Retention != 0 {
		s.Retention = o.Retention
	}
	if o.MaxMessageBytes != 0 {
		s.MaxMessageBytes = o.MaxMessageBytes
	}
	if s.MinInsyncReplicas == 0 {
		s.MinInsyncReplicas = min(max(1, s.ReplicationFactor-1), 2)
	}
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = minMessageBytes(c)
	}
	return s
}

// override is the per-topic block of role.
func (t TopicSettingsConfig) override(role string) TopicSettings {
	switch role {
	case "audit":
		return t.Audit
	case "events":
		return t.Events
	case "objects":
		return t.Objects
	case "alerts":
		return t.Alerts
	case "dlq":
		return t.DLQ
	}
	return TopicSettings{}
}

// TopicRoles are the keys of kafka.topics, in the order setup handles them.
var TopicRoles = []string{"audit", "events", "objects", "alerts", "dlq"}

// minMessageBytes is the smallest max.message.bytes that takes every batch
// the collector's publisher and the processor's producer may send.
func minMessageBytes(c *Config) int64 {
	return max(c.Publish.BatchBytes, c.Processor.Produce.BatchBytes) + TopicFraming
}

// validate adds problems of kafka.topic_settings to v.
func (t *TopicSettingsConfig) validate(v *validator, c *Config) {
	check := func(p string, s TopicSettings, common bool) {
		if s.Partitions < 0 || common && s.Partitions == 0 {
			v.add(p+"partitions", "must be positive")
		}
		if s.ReplicationFactor < 0 || common && s.ReplicationFactor == 0 {
			v.add(p+"replication_factor", "must be positive")
		}
		if s.MinInsyncReplicas < 0 {
			v.add(p+"min_insync_replicas", "must not be negative (0: replication_factor - 1, at least 1, at most 2)")
		}
		if s.Retention < 0 || common && s.Retention == 0 {
			v.add(p+"retention", "must be positive")
		}
		if s.Retention%time.Millisecond != 0 {
			v.add(p+"retention", "must be whole milliseconds (it becomes retention.ms)")
		}
		if s.MaxMessageBytes != 0 && s.MaxMessageBytes < minMessageBytes(c) {
			v.add(p+"max_message_bytes", fmt.Sprintf("must be at least %d (the larger of publish.batch_bytes and processor.produce.batch_bytes, plus %d): "+
				"a smaller topic refuses batches the collector and the processor send; 0 derives it", minMessageBytes(c), TopicFraming))
		}
	}
	check("kafka.topic_settings.", t.TopicSettings, true)
	for _, role := range TopicRoles {
		check("kafka.topic_settings."+role+".", t.override(role), false)
		if s := t.For(role, c); s.MinInsyncReplicas > s.ReplicationFactor {
			v.add("kafka.topic_settings."+role+".min_insync_replicas",
				fmt.Sprintf("%d is more than the replication factor %d: every write would fail", s.MinInsyncReplicas, s.ReplicationFactor))
		}
	}
}
