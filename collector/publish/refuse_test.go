package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   verdict
		reason string
	}{
		{"nil", nil, retry, ""},
		{"network", io.ErrUnexpectedEOF, retry, ""},
		{"wrapped network", fmt.Errorf("send: %w", errors.New("connection refused")), retry, ""},
		{"not leader", kafka.NotLeaderForPartition, retry, ""},
		{"not enough replicas", kafka.NotEnoughReplicas, retry, ""},
		{"request timed out", kafka.RequestTimedOut, retry, ""},
		{"cluster authorization (everything fails, the DLQ too)", kafka.ClusterAuthorizationFailed, retry, ""},
		{"too large", kafka.MessageSizeTooLarge, refused, "kafka_message_too_large"},
		{"record list too large", kafka.RecordListTooLarge, refused, "kafka_message_too_large"},
		{"invalid record", kafka.InvalidRecord, refused, "kafka_invalid_record"},
		{"topic not authorised", kafka.TopicAuthorizationFailed, refused, "kafka_topic_authorization_failed"},
		{"invalid topic", kafka.InvalidTopic, refused, "kafka_invalid_topic"},
		{"policy", kafka.PolicyViolation, refused, "kafka_policy_violation"},
		{"unknown topic", kafka.UnknownTopicOrPartition, topicMissing, "kafka_unknown_topic"},
		{"wrapped", fmt.Errorf("produce: %w", kafka.MessageSizeTooLarge), refused, "kafka_message_too_large"},
		{"sync writer's WriteErrors", kafka.WriteErrors{nil, kafka.TopicAuthorizationFailed}, refused, "kafka_topic_authorization_failed"},
		{"WriteErrors of a transient error", kafka.WriteErrors{kafka.LeaderNotAvailable}, retry, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, reason := classify(tc.err)
			if v != tc.want || reason != tc.reason {
				t.Errorf("classify(%v) = %d %q, want %d %q", tc.err, v, reason, tc.want, tc.reason)
			}
		})
	}
}

// createTopicWithConfig creates a topic with topic-level configs (e.g. a
// small max.message.bytes).
func createTopicWithConfig(t testing.TB, broker, topic string, partitions int, cfg map[string]string) {
	t.Helper()
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions}
	for k, v := range cfg {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	testenv.CreateTopicConfigs(t, broker, tc)
}

// checkRefusals publishes small records (which fit the audit topic's
// max.message.bytes alone, but not several per batch) and big ones (which
// do not fit alone), and checks: every small record is on the audit topic,
// every big one on the dead-letter topic with the reason and its ID, the
// refusals are counted, and the spool drained (nothing stuck behind them).
func checkRefusals(t *testing.T, broker string, p *Publisher, reg *prometheus.Registry, audit, dlq string, maxMessage int) {
	t.Helper()
	var small, big []*record.Record
	var all []*record.Record
	for i := range 60 {
		if i%20 == 7 {
			r := auditRecord(i, fmt.Sprintf("user-%d", i%3), 3*maxMessage)
			big = append(big, r)
			all = append(all, r)
			continue
		}
		r := auditRecord(i, fmt.Sprintf("user-%d", i%3), maxMessage/3)
		small = append(small, r)
		all = append(all, r)
	}
	publishAll(t, p, all, 10)
	testenv.WaitFor(t, "spool drained past the refused records", time.Minute, func() bool {
		st := p.Stats()
		return !st.Spooling && st.SpoolBytes == 0
	})
	want := map[string]bool{}
	for _, r := range small {
		want[r.ID] = true
	}
	checkAllOnce(t, testenv.ReadTopic(t, broker, audit), want)

	dead := testenv.ReadTopic(t, broker, dlq)
	got := map[string]kafka.Message{}
	for _, m := range dead {
		id, _ := header(m, record.HeaderID)
		got[id] = m
	}
	for _, r := range big {
		m, ok := got[r.ID]
		if !ok {
			t.Errorf("refused record %s not on the dead-letter topic (%d dead letters)", r.ID, len(dead))
			continue
		}
		for h, want := range map[string]string{
			HeaderDLQRefused: "kafka_message_too_large", HeaderDLQReason: "kafka_message_too_large",
			HeaderDLQSource: "publish", HeaderDLQOrigin: audit, HeaderDLQOffset: "-1",
			record.HeaderCluster: testCluster.Name, record.HeaderSource: "audit",
		} {
			if v, _ := header(m, h); v != want {
				t.Errorf("%s: dead letter header %s = %q, want %q", r.ID, h, v, want)
			}
		}
		if e, _ := header(m, HeaderDLQError); e == "" {
			t.Errorf("%s: no error header", r.ID)
		}
		if n, _ := header(m, HeaderDLQTruncated); n == "" {
			// The DLQ topic takes the whole record: it is the original.
			v, _ := record.Marshal(r)
			if string(m.Value) != string(v) {
				t.Errorf("%s: dead letter value is not the record", r.ID)
			}
		}
	}
	if n := testenv.Metric(t, reg, "kubesift_collector_publish_refused_records_total", "reason", "kafka_message_too_large"); n != float64(len(big)) {
		t.Errorf("refused{kafka_message_too_large} = %v, want %d", n, len(big))
	}
	t.Logf("%d records on %s, %d refused ones on %s; isolated sends %v",
		len(small), audit, len(big), dlq, testenv.Metric(t, reg, "kubesift_collector_publish_sent_records_total", "path", "isolate"))
}

// TestRefusedRecordsGoToTheDeadLetterTopic: against kfake, with an audit
// topic whose max.message.bytes is small.
func TestRefusedRecordsGoToTheDeadLetterTopic(t *testing.T) {
	c := fakeCluster(t)
	broker := c.ListenAddrs()[0]
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	const maxMessage = 6000
	k.Topics.Audit = fakePrefix + ".small.audit"
	createTopicWithConfig(t, broker, k.Topics.Audit, 2, map[string]string{"max.message.bytes": strconv.Itoa(maxMessage)})
	cfg := testPublishConfig(t.TempDir())
	cfg.Compression = "none" // the padding would compress below the limit
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)
	defer closePublisher(t, p)
	checkRefusals(t, broker, p, reg, k.Topics.Audit, k.Topics.DLQ, maxMessage)
}

// TestMissingTopicWaitsInTheSpool: records for a topic that does not exist
// stay in the spool, with the records behind them, until the topic is
// created — none goes to the dead-letter topic, however long it takes — and
// then every record arrives exactly once: the record before them in the
// spool is sent once, not again on every retry of the drain. On kfake and
// on the test ground's Kafka (whose auto.create.topics.enable is on: the
// publisher must not create topics by asking for their metadata).
func TestMissingTopicWaitsInTheSpool(t *testing.T) {
	tests := []struct {
		name  string
		kafka func(t *testing.T) (string, config.KafkaConfig)
	}{
		{"kfake", func(t *testing.T) (string, config.KafkaConfig) {
			c := fakeCluster(t)
			return c.ListenAddrs()[0], testKafkaConfig(c.ListenAddrs(), fakePrefix)
		}},
		{"real Kafka", func(t *testing.T) (string, config.KafkaConfig) {
			testenv.Short(t)
			return realKafka(t, "missing")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			broker, k := tc.kafka(t)
			k.Topics.Events += ".late"
			reg := prometheus.NewRegistry()
			p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), reg)
			defer closePublisher(t, p)

			// One Publish: the batch fails as a whole on the events
			// topic's metadata and is spooled in order, so an audit
			// record comes before the two that wait.
			first := []*record.Record{auditRecord(1, "alice", 0), eventRecord(1), eventRecord(2)}
			if err := p.Publish(context.Background(), first); err != nil {
				t.Fatal(err)
			}
			behind := publishAll(t, p, []*record.Record{auditRecord(2, "bob", 0), auditRecord(3, "alice", 0)}, 2)
			testenv.WaitFor(t, "the drain retrying on the missing topic", time.Minute, func() bool {
				return testenv.Metric(t, reg, "kubesift_collector_publish_topic_missing", "topic", k.Topics.Events) == 1 &&
					testenv.Metric(t, reg, "kubesift_collector_publish_sent_records_total", "path", "isolate") >= 10
			})
			if st := p.Stats(); !slices.Equal(st.MissingTopics, []string{k.Topics.Events}) || st.SpoolBytes == 0 {
				t.Errorf("stats while the topic is missing: %+v", st)
			}
			if n := testenv.Metric(t, reg, "kubesift_collector_publish_dead_letters_total"); n != 0 {
				t.Errorf("%v dead letters while the topic is missing", n)
			}

			testenv.CreateTopics(t, broker, 4, k.Topics.Events)
			waitDrained(t, p)
			if st := p.Stats(); len(st.MissingTopics) != 0 {
				t.Errorf("missing topics after the drain: %v", st.MissingTopics)
			}
			if n := testenv.Metric(t, reg, "kubesift_collector_publish_topic_missing", "topic", k.Topics.Events); n != 0 {
				t.Errorf("topic_missing{%s} = %v after the drain", k.Topics.Events, n)
			}
			events := map[string]bool{first[1].ID: true, first[2].ID: true}
			audit := map[string]bool{first[0].ID: true}
			for id := range behind {
				audit[id] = true
			}
			for topic, want := range map[string]map[string]bool{k.Topics.Events: events, k.Topics.Audit: audit} {
				if dups := checkAllOnce(t, testenv.ReadTopic(t, broker, topic), want); dups != 0 {
					t.Errorf("%s: %d duplicates", topic, dups)
				}
			}
			if dead := testenv.ReadTopic(t, broker, k.Topics.DLQ); len(dead) != 0 {
				t.Errorf("%d dead letters, want none", len(dead))
			}
		})
	}
}

func TestDonePrefix(t *testing.T) {
	tests := []struct {
		name     string
		total    int
		rest     []int // not acknowledged
		isolated int   // of rest, finished by isolate
		want     int
	}{
		{"none acknowledged, none isolated", 4, []int{0, 1, 2, 3}, 0, 0},
		{"the first isolated", 4, []int{0, 1, 2, 3}, 1, 1},
		{"acknowledged before the first failure", 5, []int{2, 3}, 0, 2},
		{"acknowledged after an isolated one", 5, []int{1, 3}, 1, 3},
		{"all isolated", 5, []int{1, 3}, 2, 5},
		{"stops at the first not finished", 6, []int{0, 2, 4}, 2, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := donePrefix(tc.total, tc.rest, tc.isolated); got != tc.want {
				t.Errorf("donePrefix(%d, %v, %d) = %d, want %d", tc.total, tc.rest, tc.isolated, got, tc.want)
			}
		})
	}
}

// TestOriginHeader: Publisher.For marks records with the source.
func TestOriginHeader(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), prometheus.NewRegistry())
	for i, src := range []string{"audit-webhook", "audit-tail"} {
		if err := p.For(src).Publish(context.Background(), []*record.Record{auditRecord(i, "alice", 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(context.Background(), []*record.Record{auditRecord(9, "alice", 0)}); err != nil {
		t.Fatal(err)
	}
	closePublisher(t, p)
	got := map[string]string{}
	for _, m := range testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit) {
		id, _ := header(m, record.HeaderID)
		got[id], _ = header(m, HeaderOrigin)
	}
	want := map[string]string{
		auditRecord(0, "alice", 0).ID: "audit-webhook",
		auditRecord(1, "alice", 0).ID: "audit-tail",
		auditRecord(9, "alice", 0).ID: "",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: origin %q, want %q", id, got[id], w)
		}
	}
}

// TestBeginKeepsOrder: batches begun one after the other, waited for only
// afterwards (as the tail pipelines them), reach each partition in order.
func TestBeginKeepsOrder(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), prometheus.NewRegistry())
	var waits []func(context.Context) error
	want := map[string]bool{}
	for b := range 20 {
		var recs []*record.Record
		for i := range 50 {
			r := auditRecord(b*50+i, fmt.Sprintf("user-%d", i%3), 0)
			recs = append(recs, r)
			want[r.ID] = true
		}
		waits = append(waits, p.For("audit-tail").(interface {
			Begin(context.Context, []*record.Record) func(context.Context) error
		}).Begin(context.Background(), recs))
	}
	for i, w := range waits {
		if err := w(context.Background()); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	closePublisher(t, p)
	msgs := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit)
	checkAllOnce(t, msgs, want)
	checkKeyOrder(t, msgs)
}
