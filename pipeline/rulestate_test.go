package pipeline

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

const topicState = "unit.rule-state"

// firstUserRule alerts on the first configmap read of each user: the
// generator's records of one n have the same user in every run.
const firstUserRule = `rules:
  - {id: first-user, title: t, severity: low, source: audit, condition: 'resource == "configmaps"', group_by: [user], new_term: {lookback: 720h}}
`

func stateEngine(t *testing.T) *rules.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(firstUserRule), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := rules.New(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func stateConfig(group string) config.ProcessorConfig {
	pc := testProcessorConfig(group)
	pc.Topics = []string{topicAudit}
	pc.RuleState = config.ProcessorRuleStateConfig{Enabled: true, Topic: topicState, MaxBytesPerRule: 1 << 20, NewTermHorizon: 24 * time.Hour}
	return pc
}

// newUsers is how many users of records 0..n-1 read a configmap: all but
// the generator's privileged pod creates.
func newUsers(from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		if !pipelinetest.Privileged(i) {
			n++
		}
	}
	return n
}

// TestRuleStateSurvivesRestartAndMove: a new_term rule's known terms
// survive a partition moving to a new member and a restart of the whole
// group: each user alerts once, however many members saw it since (each
// member has an engine of its own, as separate processes have).
func TestRuleStateSurvivesRestartAndMove(t *testing.T) {
	const parts = 2
	c := fakeKafka(t, parts, kfake.SeedTopics(parts, topicState))
	brokers := c.ListenAddrs()
	pc := stateConfig("g-state")
	// One writer per member (a Processor closes its writer); alerts
	// counts the distinct alert documents over all of them.
	var ws []*fakeWriter
	writer := func() *fakeWriter { w := newFakeWriter(); ws = append(ws, w); return w }
	alertDocs := func() (distinct, total int) {
		seen := map[string]bool{}
		for _, w := range ws {
			w.mu.Lock()
			for id, n := range w.docs {
				if strings.HasPrefix(id, "first-user:") {
					seen[id] = true
					total += n
				}
			}
			w.mu.Unlock()
		}
		return len(seen), total
	}
	alerts := func() int { d, _ := alertDocs(); return d }
	waitCommitted := func(what string) {
		testenv.WaitFor(t, what+": every partition committed to its end", 60*time.Second, func() bool {
			return maps.Equal(committed(t, brokers, pc.GroupID, topicAudit, parts), endOffsets(t, brokers, topicAudit, parts))
		})
	}

	_, regA, stopA := startProcessorWith(t, brokers, pc, stateEngine(t), writer(), fakeDocs{})
	produce(t, brokers, topicAudit, "one", 100)
	waitCommitted("member a alone")
	if got, want := alerts(), newUsers(0, 100); got != want {
		t.Fatalf("first run: %d new-user alerts, want %d", got, want)
	}

	// A second member takes one partition over: its engine has never seen
	// those users, its restored state has.
	_, regB, stopB := startProcessorWith(t, brokers, pc, stateEngine(t), writer(), fakeDocs{})
	testenv.WaitFor(t, "both members assigned a partition", 60*time.Second, func() bool {
		return testenv.Metric(t, regA, "kubesift_processor_assigned_partitions") == 1 &&
			testenv.Metric(t, regB, "kubesift_processor_assigned_partitions") == 1
	})
	produce(t, brokers, topicAudit, "two", 150)
	waitCommitted("after the move")
	if got, want := alerts(), newUsers(0, 150); got != want {
		t.Errorf("after the move: %d new-user alerts, want %d (only users 100-149 are new)", got, want)
	}
	if got := testenv.Metric(t, regB, "kubesift_processor_rule_state_restored_total", "result", "applied"); got == 0 {
		t.Error("member b restored nothing")
	}
	for _, stop := range []func() error{stopA, stopB} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}

	// The whole group restarts.
	_, regC, _ := startProcessorWith(t, brokers, pc, stateEngine(t), writer(), fakeDocs{})
	produce(t, brokers, topicAudit, "three", 150)
	waitCommitted("after the restart")
	if got, want := alerts(), newUsers(0, 150); got != want {
		t.Errorf("after the restart: %d new-user alerts, want %d (no user is new)", got, want)
	}
	if got := testenv.Metric(t, regC, "kubesift_processor_rule_state_writes_total", "reason", rules.ReasonUpdate); got == 0 {
		t.Error("member c wrote no state")
	}
	if d, total := alertDocs(); d != total {
		t.Errorf("alert documents: %d distinct, %d written: a known user alerted again", d, total)
	}
}

// scopeless is a ScopedEvaluator keeping no per-partition state, as a
// wrapper of any Evaluator is.
type scopeless struct{ fakeRules }

func (scopeless) NewScope(rules.ScopeOptions) *rules.Scope { return nil }
func (s scopeless) EvalIn(r *record.Record, _ *rules.Scope, _ int64) []rules.Alert {
	return s.Eval(r)
}

// TestRuleStateNeedsScopedEvaluator: an evaluator without per-partition
// state is refused when rule state is on, naming the setting.
func TestRuleStateNeedsScopedEvaluator(t *testing.T) {
	for _, ev := range []Evaluator{fakeRules{}, scopeless{}} {
		t.Run(fmt.Sprintf("%T", ev), func(t *testing.T) {
			_, err := New(Options{Kafka: testKafka([]string{"127.0.0.1:1"}), Processor: stateConfig("g"), Rules: ev,
				Documents: fakeDocs{}, Writer: newFakeWriter()})
			if err == nil || !strings.Contains(err.Error(), "processor.rule_state.enabled") {
				t.Errorf("err = %v, want one naming processor.rule_state.enabled", err)
			}
		})
	}
}

// TestStateQueueWritesAfterTheOtherParts: a message's changes reach the
// changelog only after its other parts (documents, alerts) are done, in
// message order; once a message lost a part, neither its changes nor any
// later message's are written, and none of them is acknowledged.
func TestStateQueueWritesAfterTheOtherParts(t *testing.T) {
	c := fakeKafka(t, 1, kfake.SeedTopics(1, topicState))
	brokers := c.ListenAddrs()
	var lim obs.LogLimiter
	s := newStateLog(Options{Kafka: testKafka(brokers), Processor: stateConfig("g"), Logger: testLogger(t)}, stateEngine(t),
		&kafka.Dialer{Timeout: 5 * time.Second}, &kafka.Transport{}, &lim, context.Background())
	defer s.close()
	q := s.startQueue(0, 10)
	part := &partition{topic: topicAudit, tracker: NewTracker(0), win: newWindow(100, 1<<20, nil)}
	written := func() int64 { return endOffsets(t, brokers, topicState, 1)[0] }
	// message opens message offset with one outstanding part (an alert)
	// and its changes queued, as handle leaves it.
	message := func(offset int64) *pending {
		if err := part.tracker.Add(offset); err != nil {
			t.Fatal(err)
		}
		pm := &pending{part: part, offset: offset, log: testLogger(t)}
		pm.parts.Store(1)
		pm.add() // the alert
		q.add(pm, []rules.StateChange{{Key: []byte(fmt.Sprint("k", offset)), Value: []byte("v"), Reason: rules.ReasonUpdate}})
		pm.finish(true) // the handler's hold
		return pm
	}

	first, second := message(0), message(1)
	second.finish(true) // the second's alert is out, the first's is not
	// The writer has taken the first and waits for it; the second waits
	// behind it.
	testenv.WaitFor(t, "the queue holding the second behind the first's alert", 5*time.Second, func() bool { return len(q.ch) == 1 })
	if n := written(); n != 0 {
		t.Fatalf("%d changes written while the first message's alert is outstanding, want 0", n)
	}
	first.finish(true)
	testenv.WaitFor(t, "both messages' changes written, in order", 10*time.Second, func() bool { return written() == 2 })
	if got := part.tracker.Committable(); got != 2 {
		t.Errorf("committable %d, want 2: both messages done", got)
	}
	msgs := readAll(t, brokers, topicState, 1)
	if len(msgs) != 2 || string(msgs[0].Key) != "k0" || string(msgs[1].Key) != "k1" {
		t.Errorf("changelog %v, want k0 then k1", msgs)
	}

	lost, after := message(2), message(3)
	lost.finish(false)
	after.finish(true)
	q.stop(false)
	if n := written(); n != 2 {
		t.Errorf("%d changes written, want still 2: the lost message's and the next one's are dropped", n)
	}
	if got := part.tracker.Committable(); got != 2 {
		t.Errorf("committable %d, want 2: neither the lost message nor the next one is done", got)
	}
}

// TestRuleStateRestoreProblems: a changelog entry that cannot be decoded is
// skipped and counted, and its partition processed; an input partition
// whose changelog partition is missing waits, unprocessed, logged and
// counted, while the others run, and is processed once the changelog has
// it.
func TestRuleStateRestoreProblems(t *testing.T) {
	tests := []struct {
		name                string
		changelogPartitions int
		garbage             bool
	}{
		{"an undecodable entry", 2, true},
		{"a missing changelog partition", 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const parts = 2
			c := fakeKafka(t, parts, kfake.SeedTopics(int32(tc.changelogPartitions), topicState))
			brokers := c.ListenAddrs()
			if tc.garbage {
				w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topicState, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 })}
				if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("\x0aunit.audit\x03r"), Value: []byte{1, 2, 3}}); err != nil {
					t.Fatal(err)
				}
				w.Close()
			}
			pc := stateConfig("g-problems")
			_, reg, _ := startProcessorWith(t, brokers, pc, stateEngine(t), newFakeWriter(), fakeDocs{})
			produce(t, brokers, topicAudit, "problems", 200)
			ends := endOffsets(t, brokers, topicAudit, parts)
			testenv.WaitFor(t, "partition 0 committed to its end", 60*time.Second, func() bool {
				return committed(t, brokers, pc.GroupID, topicAudit, parts)[0] == ends[0]
			})
			if tc.garbage {
				if got := testenv.Metric(t, reg, "kubesift_processor_rule_state_restored_total", "result", "bad"); got != 1 {
					t.Errorf("bad entries counted: %v, want 1", got)
				}
				testenv.WaitFor(t, "partition 1 committed to its end", 60*time.Second, func() bool {
					return committed(t, brokers, pc.GroupID, topicAudit, parts)[1] == ends[1]
				})
				return
			}
			testenv.WaitFor(t, "the failed restore counted", 60*time.Second, func() bool {
				return testenv.Metric(t, reg, "kubesift_processor_rule_state_restore_errors_total") > 0
			})
			if got := committed(t, brokers, pc.GroupID, topicAudit, parts)[1]; got >= 0 {
				t.Errorf("partition 1 committed at %d without its changelog partition", got)
			}
			adm := &kafka.Client{Addr: kafka.TCP(brokers...)}
			if _, err := adm.CreatePartitions(context.Background(), &kafka.CreatePartitionsRequest{
				Topics: []kafka.TopicPartitionsConfig{{Name: topicState, Count: parts}}}); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, "partition 1 committed to its end once the changelog has it", 60*time.Second, func() bool {
				return committed(t, brokers, pc.GroupID, topicAudit, parts)[1] == ends[1]
			})
		})
	}
}
