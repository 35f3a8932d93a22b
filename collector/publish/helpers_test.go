package publish

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

var testCluster = record.Cluster{Name: "test-cluster", UID: "0b0e6a1c-0000-4000-8000-000000000001"}

// auditRecord builds an audit record whose ID encodes n and whose object is
// padded to about size bytes (0: minimal).
func auditRecord(n int, user string, size int) *record.Record {
	ev := &auditv1.Event{
		TypeMeta:   metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
		Level:      "Metadata",
		AuditID:    types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", n)),
		Stage:      auditv1.StageResponseComplete,
		RequestURI: "/api/v1/namespaces/default/pods?limit=500",
		Verb:       "list",
		User:       authnv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}},
		SourceIPs:  []string{"10.0.0.1"},
		UserAgent:  "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0",
		ObjectRef:  &auditv1.ObjectReference{Resource: "pods", Namespace: "default", APIVersion: "v1"},
		ResponseStatus: &metav1.Status{
			Code: 200,
		},
		RequestReceivedTimestamp: metav1.NewMicroTime(time.Unix(1_790_000_000, 0)),
		StageTimestamp:           metav1.NewMicroTime(time.Unix(1_790_000_000, int64(n)*1000)),
	}
	r, err := record.NewAudit(ev, nil, testCluster, time.Unix(1_790_000_001, 0))
	if err != nil {
		panic(err)
	}
	if size > 0 {
		if pad := size - len(r.Object) - 300; pad > 0 {
			ev.Annotations = map[string]string{"kubesift.test/pad": strings.Repeat("x", pad)}
			if err := r.SyncObject(); err != nil {
				panic(err)
			}
		}
	}
	return r
}

func eventRecord(n int) *record.Record {
	ev := &corev1.Event{
		TypeMeta:       metav1.TypeMeta{Kind: "Event", APIVersion: "v1"},
		ObjectMeta:     metav1.ObjectMeta{Name: "pod.1", Namespace: "default", UID: types.UID(fmt.Sprintf("ev-%d", n))},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", UID: "pod-uid-1"},
		Reason:         "BackOff",
		Count:          int32(n + 1),
	}
	r, err := record.NewCoreEvent(ev, nil, testCluster, time.Unix(1_790_000_001, 0))
	if err != nil {
		panic(err)
	}
	return r
}

// testPublishConfig is the publish section for tests: short timeouts, the
// given spool dir, everything else default.
func testPublishConfig(dir string) config.PublishConfig {
	c := config.Default().Publish
	c.Spool.Dir = dir
	c.AckTimeout = 3 * time.Second
	c.WriteTimeout = 2 * time.Second
	c.MaxAttempts = 2
	c.Spool.RetryBackoff = 100 * time.Millisecond
	c.Spool.Fsync = config.SpoolFsyncAlways
	return c
}

func testKafkaConfig(brokers []string, prefix string) config.KafkaConfig {
	k := config.Default().Kafka
	k.Brokers = brokers
	k.Topics = config.TopicsConfig{
		Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects",
		Alerts: prefix + ".alerts", DLQ: prefix + ".dlq",
	}
	return k
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KUBESIFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter sends log lines to t.Log, so they show only for failed tests.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func newTestPublisher(t testing.TB, k config.KafkaConfig, p config.PublishConfig, reg *prometheus.Registry) *Publisher {
	t.Helper()
	pub, err := New(Options{Kafka: k, Publish: p, Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// waitDrained waits until p publishes directly again with an empty spool:
// records spooled on a passing broker error (a fresh topic's partition
// without a leader yet, a connection reset under load) are acknowledged to
// the caller but reach the topic only through the drainer, and Close leaves
// them on disk.
func waitDrained(t testing.TB, p *Publisher) {
	t.Helper()
	testenv.WaitFor(t, "spool drained", time.Minute, func() bool { st := p.Stats(); return !st.Spooling && st.SpoolBytes == 0 })
}

func header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// idSeq extracts n from an auditRecord ID.
func idSeq(t testing.TB, id string) int {
	t.Helper()
	s, _, _ := strings.Cut(id, ":")
	n, err := strconv.Atoi(s[len(s)-12:])
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return n
}

// checkKeyOrder checks that, per key, the first copy of each record comes in
// publish order (the number in its ID). A later copy of a record (a round
// re-sent after a partial failure) is a duplicate, not a reordering:
// consumers keep the first.
func checkKeyOrder(t testing.TB, msgs []kafka.Message) {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	for _, m := range msgs {
		id, _ := header(m, record.HeaderID)
		if seen[id] {
			continue
		}
		seen[id] = true
		n := idSeq(t, id)
		if prev, ok := last[string(m.Key)]; ok && n < prev {
			t.Errorf("key %s: record %d after %d (partition %d offset %d)", m.Key, n, prev, m.Partition, m.Offset)
		}
		last[string(m.Key)] = n
	}
}

// checkAllOnce checks that every id in want appears among msgs (by the
// kubesift-id header) and that every copy of an id is the same record;
// it returns the number of duplicates.
func checkAllOnce(t testing.TB, msgs []kafka.Message, want map[string]bool) int {
	t.Helper()
	seen := map[string][]byte{}
	dups := 0
	for _, m := range msgs {
		id, ok := header(m, record.HeaderID)
		if !ok {
			t.Fatalf("message at %d/%d without %s", m.Partition, m.Offset, record.HeaderID)
		}
		if prev, ok := seen[id]; ok {
			dups++
			if string(prev) != string(m.Value) {
				t.Fatalf("id %s delivered twice with different values", id)
			}
			continue
		}
		seen[id] = m.Value
	}
	missing := 0
	for id := range want {
		if _, ok := seen[id]; !ok {
			if missing < 5 {
				t.Errorf("record %s missing", id)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d records missing (%d messages read)", missing, len(want), len(msgs))
	}
	for id := range seen {
		if !want[id] {
			t.Fatalf("unexpected record %s", id)
		}
	}
	return dups
}
