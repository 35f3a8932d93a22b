package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProcessorDefaults(t *testing.T) {
	c, err := Parse([]byte("processor:\n  group_id: g1\n"), "p.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p := c.Processor
	tests := []struct {
		name      string
		got, want any
	}{
		{"group from file", p.GroupID, "g1"},
		{"start offset", p.StartOffset, StartEarliest},
		{"commit interval kept when section given", p.CommitInterval, time.Second},
		{"drain below rebalance", p.DrainTimeout < p.RebalanceTimeout, true},
		{"in-flight messages", p.MaxInFlightMessages, 2000},
		{"produce batch timeout is milliseconds", p.Produce.BatchTimeout, 10 * time.Millisecond},
		{"builtin rules on", p.Rules.NoBuiltin, false},
		{"posture off", p.Posture.Enabled, false},
		{"posture group", p.Posture.GroupID, "kubesift-posture"},
		{"posture alerts from high", p.Posture.AlertSeverity, "high"},
		{"rule state off", p.RuleState.Enabled, false},
		{"rule state topic from the group", p.StateTopic(), "g1-rule-state"},
		{"rule state bytes per rule", p.RuleState.MaxBytesPerRule, int64(8 << 20)},
		{"new term horizon", p.RuleState.NewTermHorizon, 90 * 24 * time.Hour},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := p.ConsumedTopics(c.Kafka); !slices.Equal(got, []string{"kubesift.audit", "kubesift.events"}) {
		t.Errorf("consumed topics = %v, want the audit and events topics", got)
	}
	p.Topics = []string{"x"}
	if got := p.ConsumedTopics(c.Kafka); !slices.Equal(got, []string{"x"}) {
		t.Errorf("consumed topics = %v, want [x]", got)
	}
}

func TestProcessorValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "processor:\n  group: x\n", `line 2: processor.group: unknown key (did you mean "group_id"?)`},
		{"unknown nested key", "processor:\n  produce:\n    acks: 1\n", "line 3: processor.produce.acks: unknown key (known here: batch_bytes"},
		{"empty group", "processor:\n  group_id: \"\"\n", "processor.group_id: must not be empty"},
		{"empty topic", "processor:\n  topics: [a, \"\"]\n", "processor.topics[1]: must not be empty"},
		{"topic twice", "processor:\n  topics: [a, a]\n", `processor.topics[1]: "a" is listed twice`},
		{"start offset", "processor:\n  start_offset: oldest\n", `processor.start_offset: "oldest" is not one of earliest, latest`},
		{"heartbeat vs session", "processor:\n  session_timeout: 3s\n  heartbeat_interval: 2s\n", "processor.heartbeat_interval: must be at most a third of processor.session_timeout"},
		{"drain vs rebalance", "processor:\n  drain_timeout: 30s\n  rebalance_timeout: 30s\n", "processor.drain_timeout: must be shorter than processor.rebalance_timeout"},
		{"commit interval", "processor:\n  commit_interval: 0s\n", "processor.commit_interval: must be positive"},
		{"in flight", "processor:\n  max_in_flight_messages: 0\n", "processor.max_in_flight_messages: must be positive"},
		{"in flight bytes", "processor:\n  max_in_flight_bytes: -1\n", "processor.max_in_flight_bytes: must be positive"},
		{"fetch bytes", "processor:\n  fetch_max_bytes: 0\n", "processor.fetch_max_bytes: must be positive"},
		{"rule state bytes", "processor:\n  rule_state: {enabled: true, max_bytes_per_rule: 0}\n", "processor.rule_state.max_bytes_per_rule: must be positive"},
		{"rule state horizon", "processor:\n  rule_state: {enabled: true, new_term_horizon: 0s}\n", "processor.rule_state.new_term_horizon: must be positive"},
		{"rule state topic consumed", "processor:\n  topics: [a, s]\n  rule_state: {enabled: true, topic: s}\n", `processor.rule_state.topic: "s" is also consumed (processor.topics)`},
		{"queue", "processor:\n  queue_capacity: 0\n", "processor.queue_capacity: must be positive"},
		{"produce batch bytes", "processor:\n  produce:\n    batch_bytes: 1000\n", "processor.produce.batch_bytes: must be at least 65536"},
		{"produce in flight", "processor:\n  produce:\n    max_in_flight: 0\n", "processor.produce.max_in_flight: must be positive"},
		{"posture group", "processor:\n  posture:\n    enabled: true\n    group_id: \"\"\n", "processor.posture.group_id: must not be empty"},
		{"posture group shared", "processor:\n  group_id: g\n  posture:\n    enabled: true\n    group_id: g\n", "processor.posture.group_id: must differ from processor.group_id"},
		{"posture severity", "processor:\n  posture:\n    enabled: true\n    alert_severity: severe\n", `processor.posture.alert_severity: "severe" is not one of info, low, medium, high, critical`},
		{"posture score interval", "processor:\n  posture:\n    enabled: true\n    score_interval: 0s\n", "processor.posture.score_interval: must be positive"},
		{"posture actor wait", "processor:\n  posture:\n    enabled: true\n    actor_wait: -1s\n", "processor.posture.actor_wait: must not be negative (0 disables the actor search)"},
		{"retry backoff order", "processor:\n  produce:\n    retry_backoff: 2s\n    retry_max_backoff: 1s\n", "processor.produce.retry_max_backoff: must not be below processor.produce.retry_backoff"},
		{"rules dir", "processor:\n  rules:\n    dirs: [\"\"]\n", "processor.rules.dirs[0]: must not be empty"},
		{"reload", "processor:\n  rules:\n    reload_interval: -1s\n", "processor.rules.reload_interval: must not be negative"},
		{"duration type", "processor:\n  drain_timeout: soon\n", "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "p.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestProcessorReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("processor:\n  group_id: \"\"\n  commit_interval: 0s\n  produce:\n    batch_size: 0\n"), "p.yaml", nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"processor.group_id", "processor.commit_interval", "processor.produce.batch_size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
