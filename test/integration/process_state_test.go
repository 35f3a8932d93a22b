package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
)

// These tests run `kubesift process` with processor.rule_state against the
// real Kafka and Elasticsearch: stateful rules' windows and new_term
// memories live in a compacted changelog topic and come back after a kill
// -9, a restart and a partition move.

const statePartitions = 3

// stateEnv is a procEnv whose processors keep their rule state in a
// changelog topic of the test's own, with the rules in rules.
func stateEnv(t *testing.T, name, rules string) (*procEnv, string) {
	t.Helper()
	e := newProcEnv(t, name, testenv.KafkaBrokers(t), testenv.ElasticsearchURL(t), statePartitions)
	changelog := e.topic + "-rule-state"
	testenv.CreateTopicConfigs(t, e.brokers[0], kafka.TopicConfig{Topic: changelog, NumPartitions: statePartitions,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}})
	t.Cleanup(func() { testenv.DeleteTopics(e.brokers[0], changelog) })
	dir := filepath.Join(e.dir, "rules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("  rules: {no_builtin: true, dirs: [%q]}\n  rule_state: {enabled: true, topic: %q}\n", dir, changelog)
	return e, extra
}

// userRecord is record n of run, made a request of verb on resource by
// user (its key follows the user, as the collector's does).
func userRecord(t *testing.T, run string, n int, user, verb, resource string) kafka.Message {
	t.Helper()
	r := pipelinetest.Audit(run, n)
	r.Audit.Verb, r.Audit.ObjectRef.Resource, r.Audit.User.Username = verb, resource, user
	r.Key = record.KeyAudit(pipelinetest.Cluster, user)
	if err := r.SyncObject(); err != nil {
		t.Fatal(err)
	}
	return recordMessage(t, r)
}

func (e *procEnv) produceMessages(msgs ...kafka.Message) {
	e.t.Helper()
	e.produce(0, 0, msgs...)
}

// stateNoise is how many of the run's generated records (configmap reads,
// which the tests' rules ignore) go to the input first: every partition
// gets some, so that the group commits every partition.
const stateNoise = 100

// TestProcessRuleStateThresholdAcrossKill: a threshold of 10 deletes by one
// user whose deletes straddle a kill -9 of the processor fires exactly
// once, on the 10th: 5 deletes are committed, 3 more are processed (their
// state written) when the processor is killed, possibly uncommitted, and
// a new processor sees the last 2. Without the changelog the new processor
// would count at most 5 and never fire.
func TestProcessRuleStateThresholdAcrossKill(t *testing.T) {
	testenv.Short(t)
	e, extra := stateEnv(t, "statekill", `rules:
  - {id: delete-burst, title: Burst of deletes, severity: high, source: audit, condition: 'verb == "delete" && resource == "secrets"', group_by: [user], threshold: {count: 10, window: 1h}}
`)
	deletes := make([]kafka.Message, 10)
	for i := range deletes {
		deletes[i] = userRecord(t, e.run+"-mallory", i, "mallory@example.com", "delete", "secrets")
	}
	a, aAddr := e.startProcessor("proc-a", true, extra)
	e.produce(0, stateNoise, deletes[:5]...)
	testenv.WaitFor(t, "the first 5 deletes committed", time.Minute, e.committedToEnd)
	e.produceMessages(deletes[5:8]...)
	testenv.WaitFor(t, "the state of 8 deletes written", time.Minute, func() bool {
		return procMetric(aAddr, "kubesift_processor_rule_state_writes_total", "reason", "checkpoint") >= 8
	})
	a.Kill()
	uncommitted := !e.committedToEnd()
	t.Logf("killed %s (kill -9) with the state of 8 deletes written; the last 3 uncommitted: %v", a.Name, uncommitted)

	b, bAddr := e.startProcessor("proc-b", false, extra)
	e.produceMessages(deletes[8:]...)
	e.waitCounts(stateNoise+10, 1, 2*time.Minute)
	testenv.WaitFor(t, "offsets committed to the end of every partition", time.Minute, e.committedToEnd)
	e.checkAlertsTopic(1)
	for _, m := range e.readTopic(e.alerts) {
		if id, want := procHeader(m, "kubesift-id"), "delete-burst:"+procHeader(deletes[9], "kubesift-id"); id != want {
			t.Errorf("alert %s, want %s (on the 10th delete)", id, want)
		}
	}
	t.Logf("member b: consumed %v (re-delivered: %v), restored %v changelog entries",
		procMetric(bAddr, "kubesift_processor_consumed_total"), uncommitted,
		procMetric(bAddr, "kubesift_processor_rule_state_restored_total", "result", "applied"))
	if err := b.Stop(30 * time.Second); err != nil {
		t.Errorf("%s: SIGTERM: %v", b.Name, err)
	}
}

// TestProcessRuleStateNewTermMoveAndRestart: a new_term rule alerts once
// per user while its partitions move to a second member and when the whole
// group restarts: 40 users read a secret, then the same 40 and 10 new ones
// across a rebalance, then all 50 again after a restart: 50 alerts in all.
func TestProcessRuleStateNewTermMoveAndRestart(t *testing.T) {
	testenv.Short(t)
	e, extra := stateEnv(t, "stateterm", `rules:
  - {id: first-user, title: First secret read by a user, severity: low, source: audit, condition: 'verb == "get" && resource == "secrets"', group_by: [user], new_term: {lookback: 720h}}
`)
	batch := func(round, users int) []kafka.Message {
		msgs := make([]kafka.Message, users)
		for u := range users {
			msgs[u] = userRecord(t, fmt.Sprintf("%s-%d", e.run, round), u, fmt.Sprintf("user-%02d@example.com", u), "get", "secrets")
		}
		return msgs
	}
	waitAlerts := func(stage string, records, want int) {
		t.Helper()
		e.waitCounts(records, want, 2*time.Minute)
		testenv.WaitFor(t, stage+": offsets committed to the end", time.Minute, e.committedToEnd)
	}

	a, aAddr := e.startProcessor("proc-a", true, extra)
	e.produce(0, stateNoise, batch(1, 40)...)
	waitAlerts("member a alone", stateNoise+40, 40)

	b, bAddr := e.startProcessor("proc-b", false, extra)
	testenv.WaitFor(t, "both members assigned partitions", time.Minute, func() bool {
		pa, pb := procMetric(aAddr, "kubesift_processor_assigned_partitions"), procMetric(bAddr, "kubesift_processor_assigned_partitions")
		return pa > 0 && pb > 0 && pa+pb == statePartitions
	})
	e.produceMessages(batch(2, 50)...)
	waitAlerts("after the move", stateNoise+90, 50)
	if got := procMetric(bAddr, "kubesift_processor_rule_state_restored_total", "result", "applied"); got <= 0 {
		t.Errorf("member b restored %v entries, want its partitions' known users", got)
	}
	for _, p := range []*testenv.Proc{a, b} {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: SIGTERM: %v", p.Name, err)
		}
	}

	c, _ := e.startProcessor("proc-c", false, extra)
	e.produceMessages(batch(3, 50)...)
	waitAlerts("after the restart", stateNoise+140, 50)
	if distinct, total := e.checkAlertsTopic(50); distinct != total {
		t.Errorf("alerts topic: %d messages for %d alerts: a known user alerted again", total, distinct)
	}
	if err := c.Stop(30 * time.Second); err != nil {
		t.Errorf("%s: SIGTERM: %v", c.Name, err)
	}
	if strings.Contains(testenv.Tail(c.LogPath, 200), "changelog entry skipped") {
		t.Errorf("member c skipped changelog entries:\n%s", testenv.Tail(c.LogPath, 30))
	}
}
