package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/rules"
)

// restoreKeys is the size of the benchmarked changelog: one million
// new_term terms (the target: restored in under 10 s).
const restoreKeys = 1_000_000

// BenchmarkRuleStateRestore restores one partition's rule state of
// restoreKeys new_term terms from a changelog on the real Kafka, beside a
// plain read of the same partition (the baseline, measured in the same
// run): restore-s is the time to restore, read-s the time to only read.
func BenchmarkRuleStateRestore(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(firstUserRule), 0o644); err != nil {
		b.Fatal(err)
	}
	eng, err := rules.New(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}, MaxGroups: 2 * restoreKeys})
	if err != nil {
		b.Fatal(err)
	}
	topic := "bench-rule-state-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	testenv.CreateTopicConfigs(b, brokers[0], kafka.TopicConfig{Topic: topic, NumPartitions: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}})
	b.Cleanup(func() { testenv.DeleteTopics(brokers[0], topic) })
	produceTerms(b, brokers, topic, eng)

	pc := config.Default().Processor
	pc.RuleState = config.ProcessorRuleStateConfig{Enabled: true, Topic: topic, NewTermHorizon: 24 * time.Hour}
	var lim obs.LogLimiter
	s := newStateLog(Options{Kafka: testKafka(brokers), Processor: pc, Logger: slog.New(slog.DiscardHandler)}, eng,
		&kafka.Dialer{Timeout: 10 * time.Second}, &kafka.Transport{}, &lim, context.Background())
	defer s.close()
	ctx := context.Background()
	var read, restore time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if n := plainRead(b, brokers, topic); n != restoreKeys {
			b.Fatalf("plain read: %d messages, want %d", n, restoreKeys)
		}
		read += time.Since(start)
		sc := s.newScope(topicAudit)
		start = time.Now()
		if _, err := s.restore(ctx, sc, 0); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(start)
		if g := sc.Groups(); g != restoreKeys {
			b.Fatalf("restored %d groups, want %d", g, restoreKeys)
		}
	}
	b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s")
	b.ReportMetric(read.Seconds()/float64(b.N), "read-s")
	b.ReportMetric(float64(restoreKeys)*float64(b.N)/restore.Seconds(), "keys/s")
}

// produceTerms writes restoreKeys terms of the first-user rule to topic:
// one real changelog entry made by the engine, its group key (the end of
// the key) replaced by each user in turn.
func produceTerms(b *testing.B, brokers []string, topic string, eng *rules.Engine) {
	b.Helper()
	sc := eng.NewScope(rules.ScopeOptions{Topic: topicAudit})
	r := pipelinetest.Audit("bench", 0)
	const user0 = "user-0000000@example.com"
	r.Audit.User.Username = user0
	eng.EvalIn(r, sc, 0)
	var tmpl rules.StateChange
	for _, c := range sc.Drain() {
		if c.Reason == rules.ReasonUpdate {
			tmpl = c
		}
	}
	prefix, ok := bytes.CutSuffix(tmpl.Key, []byte(user0))
	if !ok {
		b.Fatalf("changelog key %q does not end with the group key %q", tmpl.Key, user0)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.LeastBytes{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 10000, BatchBytes: 8 << 20, BatchTimeout: 10 * time.Millisecond, Compression: kafka.Zstd}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 50000
	msgs := make([]kafka.Message, 0, chunk)
	for i := range restoreKeys {
		key := append(append([]byte(nil), prefix...), fmt.Sprintf("user-%07d@example.com", i)...)
		msgs = append(msgs, kafka.Message{Key: key, Value: tmpl.Value})
		if len(msgs) == chunk || i == restoreKeys-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
}

// plainRead reads partition 0 of topic to its end with the reader settings
// of a restore, and returns the number of messages.
func plainRead(b *testing.B, brokers []string, topic string) int {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
	if err != nil {
		b.Fatal(err)
	}
	p := res.Topics[topic][0]
	r := newRestoreReader(brokers, topic, 0, &kafka.Dialer{Timeout: 10 * time.Second}, 4<<20)
	defer r.Close()
	if err := r.SetOffset(p.FirstOffset); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n++
		if m.Offset+1 >= p.LastOffset {
			return n
		}
	}
}
