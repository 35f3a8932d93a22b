package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestCollectWaitsForMissingTopic runs `kubesift collect` (the real binary)
// tailing an audit log of its own into an audit topic that does not exist
// yet, on the ground's Kafka. While the topic is missing: /readyz fails
// naming it and `kubesift setup kafka`, the collector says so in its log
// (once), kubesift_collector_publish_topic_missing{topic} is 1, and nothing
// goes to the dead-letter topic. Then `kubesift setup kafka` (the binary,
// with the collector's config) creates the topics: /readyz passes and every
// record arrives exactly once.
func TestCollectWaitsForMissingTopic(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	dir := t.TempDir()
	prefix := fmt.Sprintf("it-missing-%d", time.Now().UnixNano())
	tp := colTopics{audit: prefix + ".audit", events: prefix + ".events", objects: prefix + ".objects", alerts: prefix + ".alerts", dlq: prefix + ".dlq"}
	testenv.CreateTopics(t, brokers[0], 1, tp.dlq) // only the dead-letter topic exists
	t.Cleanup(func() { deleteTopics(brokers[0], tp.all()...) })

	const n = 200
	auditLog := filepath.Join(dir, "audit.log")
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"00000000-0000-4000-8000-%012d","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"user-%d"},"sourceIPs":["10.0.0.1"],`+
			`"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"code":200},`+
			`"requestReceivedTimestamp":"2026-12-07T01:00:00.000000Z","stageTimestamp":"2026-12-07T01:00:00.001000Z"}`+"\n", i, i%7)
	}
	writeFile(t, auditLog, lines.String())
	metrics := testenv.FreeAddr(t)
	cfg := filepath.Join(dir, "collector.yaml")
	writeFile(t, cfg, fmt.Sprintf(`cluster: {name: it-missing}
log: {level: info, format: json}
server: {listen: %q}
kafka:
  brokers: [%s]
  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}
  topic_settings: {partitions: 2, replication_factor: 1}
collector:
  cluster_uid: uid-it-missing
  audit_tail:
    enabled: true
    paths: [%q]
    positions_file: %q
    start_at: beginning
    poll_interval: 50ms
    batch_wait: 50ms
publish:
  ack_timeout: 5s
  write_timeout: 5s
  max_attempts: 2
  spool: {dir: %q, fsync: always, retry_backoff: 250ms}
`, metrics, quoteAll(brokers), tp.audit, tp.events, tp.objects, tp.alerts, tp.dlq, auditLog,
		filepath.Join(dir, "positions.yaml"), filepath.Join(dir, "spool")))

	p := testenv.Start(t, "collect", nil, "collect", "-c", cfg)
	readyz := func() (int, string) {
		res, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// labels are `k="v"` fragments (testenv.Sum).
	metric := func(name string, labels ...string) float64 { return procMetric(metrics, name, labels...) }
	testenv.WaitForNil(t, "/readyz failing on the missing topic, the records held in the spool", time.Minute, func() error {
		if p.Exited() {
			t.Fatalf("collect exited:\n%s", testenv.Tail(p.LogPath, 30))
		}
		code, body := readyz()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, tp.audit) || !strings.Contains(body, "kubesift setup kafka -c") {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		if m := metric("kubesift_collector_publish_topic_missing", fmt.Sprintf("topic=%q", tp.audit)); m != 1 {
			return fmt.Errorf("publish_topic_missing{%s} = %v", tp.audit, m)
		}
		if sp := metric("kubesift_collector_spool_bytes"); sp <= 0 {
			return fmt.Errorf("spool_bytes = %v", sp)
		}
		return nil
	})
	// The drain has retried on the missing topic a few times by now.
	testenv.WaitFor(t, "a few drain rounds on the missing topic", time.Minute, func() bool {
		return metric("kubesift_collector_publish_sent_records_total", `path="isolate"`) >= 5
	})
	if dead := testenv.ReadTopic(t, brokers[0], tp.dlq); len(dead) != 0 {
		t.Fatalf("%d dead letters while the topic was missing", len(dead))
	}

	// --allow-drift: the test made the dead-letter topic by hand, with one
	// partition and the broker's retention, which setup reports.
	out, err := exec.Command(testenv.Kubesift(t), "setup", "kafka", "-c", cfg, "--allow-drift").CombinedOutput()
	if err != nil {
		t.Fatalf("setup kafka: %v\n%s", err, out)
	}
	t.Logf("setup kafka:\n%s", out)
	testenv.WaitForNil(t, "/readyz passing once the topics exist", time.Minute, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	testenv.WaitForNil(t, "every record on the audit topic", 2*time.Minute, func() error {
		if sp := metric("kubesift_collector_spool_bytes"); sp != 0 {
			return fmt.Errorf("spool_bytes = %v", sp)
		}
		return nil
	})
	msgs := testenv.ReadTopic(t, brokers[0], tp.audit)
	ids := map[string]int{}
	for _, m := range msgs {
		ids[colHeader(m, record.HeaderID)]++
	}
	if len(ids) != n || len(msgs) != n {
		t.Errorf("%d messages with %d distinct record IDs on %s, want %d of each", len(msgs), len(ids), tp.audit, n)
	}
	if dead := testenv.ReadTopic(t, brokers[0], tp.dlq); len(dead) != 0 {
		t.Errorf("%d dead letters", len(dead))
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	log, _ := os.ReadFile(p.LogPath)
	for _, line := range []string{"Kafka topics do not exist", "Kafka topic does not exist"} {
		if c := strings.Count(string(log), line); c != 1 {
			t.Errorf("%d log lines %q, want 1", c, line)
		}
	}
}
