package kafkatopics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// Tests against the test ground's Kafka (testenv.KafkaBrokers holds the
// shared lock); each uses topics of its own and deletes them.

// groundConfig is a configuration of five fresh topic names on the
// ground's single broker (replication factor 1, 3 partitions).
func groundConfig(t *testing.T, name string) *config.Config {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	c := config.Default()
	c.Kafka.Brokers = brokers
	p := fmt.Sprintf("it-topics-%s-%d", name, time.Now().UnixNano())
	c.Kafka.Topics = config.TopicsConfig{Audit: p + ".audit", Events: p + ".events", Objects: p + ".objects", Alerts: p + ".alerts", DLQ: p + ".dlq"}
	c.Kafka.TopicSettings.Partitions = 3
	c.Kafka.TopicSettings.ReplicationFactor = 1
	t.Cleanup(func() {
		testenv.DeleteTopics(brokers[0], c.Kafka.Topics.Audit, c.Kafka.Topics.Events, c.Kafka.Topics.Objects, c.Kafka.Topics.Alerts, c.Kafka.Topics.DLQ)
	})
	return &c
}

func newTestAdmin(t *testing.T, c *config.Config) *Admin {
	t.Helper()
	a, err := NewAdmin(c.Kafka, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func setup(t *testing.T, a *Admin, specs []Spec, o Options) Report {
	t.Helper()
	rep, err := trySetup(a, specs, o)
	if err != nil {
		t.Fatalf("setup: %v (report %+v)", err, rep)
	}
	return rep
}

func trySetup(a *Admin, specs []Spec, o Options) (Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.Setup(ctx, specs, o)
}

func actions(rep Report) map[string]string {
	out := map[string]string{}
	for _, tr := range rep.Topics {
		out[tr.Role] = tr.Action
	}
	return out
}

// TestSetupCreatesThenChangesNothing: the first run creates the five topics
// with the configured settings (read back from the broker), the second
// reports every topic unchanged.
func TestSetupCreatesThenChangesNothing(t *testing.T) {
	c := groundConfig(t, "create")
	a := newTestAdmin(t, c)
	specs := Specs(c)
	rep := setup(t, a, specs, Options{})
	for role, act := range actions(rep) {
		if act != ActionCreated {
			t.Errorf("%s: %s, want %s", role, act, ActionCreated)
		}
	}
	if !rep.Changed() || rep.Unresolved() != 0 {
		t.Errorf("first run: changed %v, unresolved %d", rep.Changed(), rep.Unresolved())
	}
	// The broker has what the configuration says (compact objects topic
	// included), or the second run would report drift.
	rep = secondRun(t, a, specs)
	for _, tr := range rep.Topics {
		if tr.Action != ActionUnchanged || tr.Partitions != 3 || tr.ReplicationFactor != 1 {
			t.Errorf("second run, %s: %+v", tr.Role, tr)
		}
	}
	if got := rep.Topics[2].Configs[CleanupPolicy]; rep.Topics[2].Role != "objects" || got != "compact" {
		t.Errorf("objects topic: cleanup.policy %q", got)
	}
}

// TestSetupReportsDriftAndAppliesOnlyWhenTold: topics made by hand with the
// wrong settings are reported, not changed; --apply-drift fixes retention,
// min.insync.replicas and max.message.bytes, --grow-partitions the
// partitions, and cleanup.policy is left as it is whatever the flags.
func TestSetupReportsDriftAndAppliesOnlyWhenTold(t *testing.T) {
	c := groundConfig(t, "drift")
	wrong := []kafka.ConfigEntry{
		{ConfigName: RetentionMs, ConfigValue: "3600000"},
		{ConfigName: MaxMessageBytes, ConfigValue: "500000"},
		{ConfigName: CleanupPolicy, ConfigValue: "compact"},
		{ConfigName: MinInsyncReplicas, ConfigValue: "1"},
	}
	testenv.CreateTopicConfigs(t, c.Kafka.Brokers[0], kafka.TopicConfig{Topic: c.Kafka.Topics.Audit, NumPartitions: 2, ConfigEntries: wrong})
	a := newTestAdmin(t, c)
	specs := Specs(c)

	rep := setup(t, a, specs, Options{})
	audit := rep.Topics[0]
	if audit.Action != ActionDrift {
		t.Fatalf("audit topic: %+v, want drift", audit)
	}
	want := map[string]string{"partitions": FixGrowPartitions, RetentionMs: FixApplyDrift, MaxMessageBytes: FixApplyDrift, CleanupPolicy: FixManual}
	got := map[string]string{}
	for _, d := range audit.Drift {
		got[d.Setting] = d.Fix
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("drift of %s: fix %q, want %q (all: %+v)", k, got[k], v, audit.Drift)
		}
	}
	if rep.Unresolved() < len(want) {
		t.Errorf("unresolved %d, want at least %d", rep.Unresolved(), len(want))
	}
	act, err := a.Describe(context.Background(), specs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if h := act[c.Kafka.Topics.Audit]; h.Partitions != 2 || h.Configs[RetentionMs] != "3600000" {
		t.Errorf("a run without flags changed the topic: %+v", h)
	}

	rep = setup(t, a, specs, Options{ApplyDrift: true, GrowPartitions: true})
	for _, d := range rep.Topics[0].Drift {
		if (d.Fix == FixApplied) == (d.Setting == CleanupPolicy) {
			t.Errorf("with --apply-drift --grow-partitions: %+v", d)
		}
	}
	testenv.WaitForNil(t, "only cleanup.policy left", 30*time.Second, func() error {
		rep, err := trySetup(a, specs, Options{})
		if err != nil {
			return err
		}
		if d := rep.Topics[0].Drift; len(d) != 1 || d[0].Setting != CleanupPolicy || d[0].Have != "compact" {
			return fmt.Errorf("drift after applying: %+v", d)
		}
		return nil
	})
}

// TestWatchReportsMissingTopicsUntilCreated: the readiness check names the
// missing topics and the setup command, one error is logged however often
// the check runs, and the check passes once the topics exist.
func TestWatchReportsMissingTopicsUntilCreated(t *testing.T) {
	c := groundConfig(t, "watch")
	oldM, oldP := missingInterval, presentInterval
	missingInterval, presentInterval = 100*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { missingInterval, presentInterval = oldM, oldP })

	var mu sync.Mutex
	var ready error = errors.New("not set yet")
	checks := 0
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	topics := []string{c.Kafka.Topics.Alerts, c.Kafka.Topics.DLQ}
	go func() {
		done <- Watch{Kafka: c.Kafka, Topics: topics, Log: log, SetReady: func(name string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if name == ReadyCheck {
				ready, checks = err, checks+1
			}
		}}.Run(ctx)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	state := func() (int, error) { mu.Lock(); defer mu.Unlock(); return checks, ready }
	testenv.WaitFor(t, "a few checks with the topics missing", 30*time.Second, func() bool { n, _ := state(); return n >= 5 })
	_, err := state()
	for _, want := range append([]string{"kubesift setup kafka -c"}, topics...) {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readiness %v, want it to name %q", err, want)
		}
	}
	mu.Lock()
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one missing state, want 1:\n%s", n, logs.String())
	}
	mu.Unlock()

	testenv.CreateTopics(t, c.Kafka.Brokers[0], 1, topics...)
	testenv.WaitFor(t, "readiness once the topics exist", 30*time.Second, func() bool { _, err := state(); return err == nil })
}

// lockedWriter serialises writes to w under mu (the watch logs from its own
// goroutine while the test reads).
type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSetupCreatesTheRuleStateChangelog: with processor.rule_state the
// sixth topic, the rule-state changelog, is created compacted with hourly
// segments and the input topics' partitions, and a second run leaves it as
// it is.
func TestSetupCreatesTheRuleStateChangelog(t *testing.T) {
	c := groundConfig(t, "state")
	c.Processor.GroupID = c.Kafka.Topics.Audit + "-group"
	c.Processor.RuleState.Enabled = true
	t.Cleanup(func() { testenv.DeleteTopics(c.Kafka.Brokers[0], c.Processor.StateTopic()) })
	a := newTestAdmin(t, c)
	specs := Specs(c)
	if got := actions(setup(t, a, specs, Options{}))[RoleRuleState]; got != ActionCreated {
		t.Fatalf("changelog: %s, want %s", got, ActionCreated)
	}
	rep := secondRun(t, a, specs)
	tr := rep.Topics[len(rep.Topics)-1]
	if tr.Role != RoleRuleState || tr.Name != c.Processor.StateTopic() || tr.Partitions != 3 ||
		tr.Configs[CleanupPolicy] != "compact" || tr.Configs[SegmentMs] != "3600000" {
		t.Errorf("changelog as the broker has it: %+v", tr)
	}
}

// secondRun runs setup again until it changes nothing (the broker may take
// a moment to show what the first run created) and returns its report.
func secondRun(t *testing.T, a *Admin, specs []Spec) Report {
	t.Helper()
	var rep Report
	testenv.WaitForNil(t, "the second run changing nothing", 30*time.Second, func() error {
		var err error
		if rep, err = trySetup(a, specs, Options{}); err != nil {
			return err
		}
		if rep.Changed() || rep.Unresolved() != 0 {
			return fmt.Errorf("second run: %+v", rep)
		}
		return nil
	})
	return rep
}
