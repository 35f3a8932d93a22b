package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/notify"
)

// BenchmarkAuditLineToWebhook measures the end-to-end latency: from an
// audit line appended to the tailed log to the webhook receiving its alert,
// through the real Kafka and Elasticsearch, with `kubesift collect` (audit
// tail), `kubesift process` (built-in rules) and `kubesift notify`
// (group_wait 0) wired as their commands wire them, in this one process.
// One privileged-pod create per iteration, each waited for; it reports p50
// and p99 (use -benchtime=100x). Target: p99 <= 2 s.
func BenchmarkAuditLineToWebhook(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	esURL := testenv.ElasticsearchURL(b)
	run := fmt.Sprint(time.Now().UnixNano())
	dir := b.TempDir()
	auditLog := filepath.Join(dir, "audit.log")
	f, err := os.Create(auditLog)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()

	var mu sync.Mutex
	arrived := map[string]time.Time{} // pod name -> arrival
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.WebhookPayload
		_ = json.NewDecoder(r.Body).Decode(&p)
		now := time.Now()
		mu.Lock()
		for _, a := range p.Alerts {
			if _, ok := arrived[a.Name]; !ok {
				arrived[a.Name] = now
			}
		}
		mu.Unlock()
	}))
	defer hook.Close()

	stream := func(kind string) string { return "logs-kubesift." + kind + "-b" + run }
	alertsIdx := "kubesift-alerts-b" + run
	yaml := fmt.Sprintf(`
cluster: {name: bench}
server: {listen: ""}
log: {level: warn}
kafka:
  brokers: [%q]
  topics: {audit: b-audit-%[2]s, events: b-events-%[2]s, objects: b-objects-%[2]s, alerts: b-alerts-%[2]s, dlq: b-dlq-%[2]s}
collector:
  cluster_uid: bench-uid
  audit_tail: {enabled: true, paths: [%[3]q], positions_file: %[4]q, start_at: beginning, poll_interval: 20ms, batch_wait: 10ms}
publish:
  batch_timeout: 2ms
  spool: {dir: %[5]q}
processor:
  group_id: b-proc-%[2]s
  commit_interval: 500ms
sink:
  elasticsearch:
    addresses: [%[6]q]
    streams: {audit: %[7]s, events: %[8]s, posture: %[9]s}
    alerts_index: %[10]s
    flush_interval: 50ms
notify:
  consumer_group: b-notify-%[2]s
  route: {receiver: hook, group_wait: 0s, group_interval: 1ms}
  receivers: [{name: hook, webhook_configs: [{url: %[11]q}]}]
  silences: {index: kubesift-silences-b%[2]s}
`, brokers[0], run, auditLog, filepath.Join(dir, "positions.yaml"), filepath.Join(dir, "spool"), esURL,
		stream("audit"), stream("events"), stream("posture"), alertsIdx, hook.URL)
	cfg, err := config.Parse([]byte(yaml), "bench.yaml", func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	// Topics exist before anyone reads them.
	c := &kafka.Client{Addr: kafka.TCP(brokers[0]), Timeout: 20 * time.Second, Transport: &kafka.Transport{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var topics []kafka.TopicConfig
	for _, tp := range []string{cfg.Kafka.Topics.Audit, cfg.Kafka.Topics.Alerts, cfg.Kafka.Topics.DLQ, cfg.Kafka.Topics.Events, cfg.Kafka.Topics.Objects} {
		topics = append(topics, kafka.TopicConfig{Topic: tp, NumPartitions: 1, ReplicationFactor: 1})
	}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics}); err != nil {
		b.Fatal(err)
	}
	es, _ := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL}})
	b.Cleanup(func() {
		var names []string
		for _, t := range topics {
			names = append(names, t.Topic)
		}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: names})
		for _, p := range []string{"/_data_stream/" + stream("audit"), "/_data_stream/" + stream("events"), "/_data_stream/" + stream("posture"),
			"/" + alertsIdx, "/kubesift-silences-b" + run, "/_index_template/kubesift-" + stream("audit"), "/_index_template/kubesift-" + stream("events"),
			"/_index_template/kubesift-" + stream("posture"), "/_index_template/kubesift-" + alertsIdx} {
			req, _ := http.NewRequest(http.MethodDelete, p, nil)
			if res, err := es.Perform(req); err == nil {
				res.Body.Close()
			}
		}
	})

	log := slog.New(slog.DiscardHandler)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(rctx); err != nil && rctx.Err() == nil {
				b.Errorf("%s: %v", name, err)
			}
		}()
	}
	start("process", func(ctx context.Context) error { return runProcess(ctx, cfg, true, log) })
	start("notify", func(ctx context.Context) error { return runNotify(ctx, cfg, log) })
	start("collect", func(ctx context.Context) error { return runCollect(ctx, cfg, log) })
	defer func() { stop(); wg.Wait() }()

	write := func(name string) time.Time {
		now := time.Now().UTC()
		ev := map[string]any{
			"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
			"auditID": fmt.Sprintf("%s-%s", run, name), "stage": "ResponseComplete",
			"requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
			"user":           map[string]any{"username": "alice"},
			"objectRef":      map[string]any{"resource": "pods", "namespace": "default", "name": name, "apiVersion": "v1"},
			"responseStatus": map[string]any{"code": 201},
			"requestObject": map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": map[string]any{"name": name},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "nginx:1.27",
					"securityContext": map[string]any{"privileged": true}}}}},
			"requestReceivedTimestamp": now.Format(time.RFC3339Nano), "stageTimestamp": now.Format(time.RFC3339Nano),
		}
		line, _ := json.Marshal(ev)
		t := time.Now()
		if _, err := f.Write(append(line, '\n')); err != nil {
			b.Fatal(err)
		}
		return t
	}
	// wait returns when the alert arrived (the receiver stamps the time, so
	// the poll period does not enter the measured latency), or false after
	// limit: the warm-up retries on false rather than failing.
	wait := func(name string, limit time.Duration) (time.Time, bool) {
		for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			mu.Lock()
			t, ok := arrived[name]
			mu.Unlock()
			if ok {
				return t, true
			}
		}
		return time.Time{}, false
	}
	// Warm up until the whole path works (groups joined, templates set up).
	for i := 0; ; i++ {
		name := fmt.Sprintf("warm-%d", i)
		write(name)
		if _, ok := wait(name, 5*time.Second); ok {
			break
		}
		if i == 20 {
			b.Fatal("the path did not deliver within 100 s of warm-up")
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("pod-%d", i)
		t := write(name)
		got, ok := wait(name, time.Minute)
		if !ok {
			b.Fatalf("%s not delivered within a minute", name)
		}
		lat = append(lat, got.Sub(t))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
