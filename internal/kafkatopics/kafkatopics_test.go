package kafkatopics

import (
	"maps"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
)

func TestSpecs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		role string
		want Spec
	}{
		{"audit by default", "", "audit", Spec{Role: "audit", Name: "kubesift.audit", Partitions: 6, ReplicationFactor: 3,
			Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "2", MaxMessageBytes: "1114112", RetentionMs: "604800000"}}},
		{"objects: compacted, no retention", "", "objects", Spec{Role: "objects", Name: "kubesift.objects", Partitions: 6, ReplicationFactor: 3,
			Configs: map[string]string{CleanupPolicy: "compact", MinInsyncReplicas: "2", MaxMessageBytes: "1114112"}}},
		{"dlq keeps 30 days", "", "dlq", Spec{Role: "dlq", Name: "kubesift.dlq", Partitions: 6, ReplicationFactor: 3,
			Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "2", MaxMessageBytes: "1114112", RetentionMs: "2592000000"}}},
		{"single broker", "kafka:\n  topic_settings: {replication_factor: 1, partitions: 2}\n", "alerts",
			Spec{Role: "alerts", Name: "kubesift.alerts", Partitions: 2, ReplicationFactor: 1,
				Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "1", MaxMessageBytes: "1114112", RetentionMs: "604800000"}}},
		{"per-topic block over the common one", "kafka:\n  topics: {events: ev}\n  topic_settings:\n    retention: 24h\n    events: {partitions: 12, retention: 1h}\n", "events",
			Spec{Role: "events", Name: "ev", Partitions: 12, ReplicationFactor: 3,
				Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "2", MaxMessageBytes: "1114112", RetentionMs: "3600000"}}},
		{"a dlq block keeps the dlq's retention", "kafka:\n  topic_settings:\n    dlq: {partitions: 3}\n", "dlq",
			Spec{Role: "dlq", Name: "kubesift.dlq", Partitions: 3, ReplicationFactor: 3,
				Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "2", MaxMessageBytes: "1114112", RetentionMs: "2592000000"}}},
		{"max.message.bytes follows the largest producer batch", "publish: {batch_bytes: 4194304, max_in_flight_bytes: 8388608, spool: {segment_bytes: 8388608}}\n", "audit",
			Spec{Role: "audit", Name: "kubesift.audit", Partitions: 6, ReplicationFactor: 3,
				Configs: map[string]string{CleanupPolicy: "delete", MinInsyncReplicas: "2", MaxMessageBytes: "4259840", RetentionMs: "604800000"}}},
		{"no rule-state changelog unless enabled", "", RoleRuleState, Spec{}},
		{"rule-state changelog: compacted, partitioned like the larger input", "processor:\n  group_id: pg\n  rule_state: {enabled: true}\nkafka:\n  topic_settings:\n    events: {partitions: 9}\n",
			RoleRuleState, Spec{Role: RoleRuleState, Name: "pg-rule-state", Partitions: 9, ReplicationFactor: 3,
				Configs: map[string]string{CleanupPolicy: "compact", MinInsyncReplicas: "2", MaxMessageBytes: "1114112", SegmentMs: "3600000"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.yaml), "test.yaml", func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			var got Spec
			for _, s := range Specs(c) {
				if s.Role == tc.role {
					got = s
				}
			}
			if got.Name != tc.want.Name || got.Partitions != tc.want.Partitions || got.ReplicationFactor != tc.want.ReplicationFactor ||
				!maps.Equal(got.Configs, tc.want.Configs) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	spec := func(role string) Spec {
		return Spec{Role: role, Name: "t", Partitions: 6, ReplicationFactor: 3, Configs: map[string]string{
			CleanupPolicy: "delete", RetentionMs: "1000", MinInsyncReplicas: "2", MaxMessageBytes: "2000"}}
	}
	same := Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, Configs: map[string]string{
		CleanupPolicy: "delete", RetentionMs: "1000", MinInsyncReplicas: "2", MaxMessageBytes: "2000"}}
	with := func(f func(a *Actual)) Actual {
		a := same
		a.Configs = maps.Clone(same.Configs)
		f(&a)
		return a
	}
	tests := []struct {
		name string
		role string
		have Actual
		want []Drift // Setting and Fix only
	}{
		{"same", "audit", same, nil},
		{"more partitions and a larger max.message.bytes are fine", "audit", with(func(a *Actual) {
			a.Partitions = 12
			a.Configs[MaxMessageBytes] = "5000"
		}), nil},
		{"fewer partitions: grow", "audit", with(func(a *Actual) { a.Partitions = 4 }), []Drift{{Setting: "partitions", Fix: FixGrowPartitions}}},
		{"fewer partitions of the rule-state changelog: grow", RoleRuleState, with(func(a *Actual) { a.Partitions = 4 }), []Drift{{Setting: "partitions", Fix: FixGrowPartitions}}},
		{"fewer partitions of the objects topic: by hand", "objects", with(func(a *Actual) { a.Partitions = 4 }), []Drift{{Setting: "partitions", Fix: FixManual}}},
		{"replication factor: by hand", "audit", with(func(a *Actual) { a.ReplicationFactor = 1 }), []Drift{{Setting: "replication_factor", Fix: FixManual}}},
		{"cleanup.policy: never changed", "audit", with(func(a *Actual) { a.Configs[CleanupPolicy] = "compact" }), []Drift{{Setting: CleanupPolicy, Fix: FixManual}}},
		{"retention", "audit", with(func(a *Actual) { a.Configs[RetentionMs] = "5" }), []Drift{{Setting: RetentionMs, Fix: FixApplyDrift}}},
		{"smaller max.message.bytes", "audit", with(func(a *Actual) { a.Configs[MaxMessageBytes] = "1000" }), []Drift{{Setting: MaxMessageBytes, Fix: FixApplyDrift}}},
		{"min.insync.replicas", "audit", with(func(a *Actual) { a.Configs[MinInsyncReplicas] = "1" }), []Drift{{Setting: MinInsyncReplicas, Fix: FixApplyDrift}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := compare(spec(tc.role), tc.have)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Setting != tc.want[i].Setting || got[i].Fix != tc.want[i].Fix {
					t.Errorf("drift %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestTopicSettingsValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"min ISR over the replication factor", "kafka:\n  topic_settings: {replication_factor: 1, min_insync_replicas: 2}\n",
			"kafka.topic_settings.audit.min_insync_replicas: 2 is more than the replication factor 1"},
		{"max.message.bytes below the producers' batches", "kafka:\n  topic_settings: {alerts: {max_message_bytes: 1000}}\n",
			"kafka.topic_settings.alerts.max_message_bytes: must be at least 1114112"},
		{"no partitions", "kafka:\n  topic_settings: {partitions: 0}\n", "kafka.topic_settings.partitions: must be positive"},
		{"retention below a millisecond", "kafka:\n  topic_settings: {dlq: {retention: 1500us}}\n", "kafka.topic_settings.dlq.retention: must be whole milliseconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "test.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestNewAdminUsesTheKafkaSection: the admin client is built from the kafka
// section's TLS and SASL settings (kafkaopts.Transport), so a bad one fails
// naming its field, and a secret never shows.
func TestNewAdminUsesTheKafkaSection(t *testing.T) {
	tests := []struct {
		name  string
		kafka func(k *config.KafkaConfig)
		want  string
	}{
		{"no brokers", func(k *config.KafkaConfig) { k.Brokers = nil }, "kafka.brokers"},
		{"CA file", func(k *config.KafkaConfig) {
			k.TLS = config.TLSConfig{Enabled: true, CAFile: t.TempDir() + "/missing-ca.pem"}
		}, "kafka.tls.ca_file"},
		{"SASL mechanism", func(k *config.KafkaConfig) {
			k.SASL = config.SASLConfig{Mechanism: "gssapi", Username: "u", Password: "hunter2"}
		}, "kafka.sasl.mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := config.Default().Kafka
			k.Brokers = []string{"127.0.0.1:9092"}
			tc.kafka(&k)
			_, err := NewAdmin(k, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("NewAdmin: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
