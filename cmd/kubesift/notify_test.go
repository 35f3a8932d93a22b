package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/notify"
)

func TestNotifyNeedsReceivers(t *testing.T) {
	_, errs, code := runCLI(t, "", "notify")
	if code == 0 || !strings.Contains(errs, "notify.receivers: at least one receiver") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// TestNotifyEndToEnd runs the notifier as `kubesift notify` wires it, against
// the real Kafka and Elasticsearch: alerts produced as the processor produces
// them reach a signed webhook, a silence stored before the start mutes its
// alerts, and the delivery states land in the alert documents.
func TestNotifyEndToEnd(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.ElasticsearchURL(t)
	run := fmt.Sprint(time.Now().UnixNano())
	alertsTopic, dlqTopic := "it-e2e-notify-alerts-"+run, "it-e2e-notify-dlq-"+run
	alertsIndex, silencesIndex := "kubesift-alerts-e2e-"+run, "kubesift-silences-e2e-"+run
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Indices.Delete([]string{alertsIndex, silencesIndex}) })
	esDo := func(method, path string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := es.Perform(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return out
	}
	esDo(http.MethodPut, "/"+alertsIndex, map[string]any{"mappings": ecs.AlertsMappings()})

	// A silence stored before the notifier starts.
	store, err := notify.NewESSilences(ctx, es, silencesIndex)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := match.ParseAll([]string{"namespace=kube-system"})
	now := time.Now().UTC()
	if err := store.Create(ctx, notify.Silence{ID: "s-e2e", Matchers: ms, StartsAt: now, EndsAt: now.Add(time.Hour),
		CreatedBy: "test", Comment: "upgrade", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	received := map[string]int{}
	secret := []byte("e2e-hmac")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.VerifySignature(secret, r.Header.Get(notify.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p notify.WebhookPayload
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		for _, a := range p.Alerts {
			received[a.ID]++
		}
		mu.Unlock()
	}))
	defer hook.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := l.Addr().String()
	l.Close()
	// The silence API serves HTTPS: its bearer token mutes alerts.
	apiCert, apiKey, _ := testenv.SelfSigned(t, t.TempDir())
	metricsAddr := testenv.FreeAddr(t)
	yaml := fmt.Sprintf(`
server: {listen: %q, bearer_token: metrics-token}
kafka:
  brokers: [%q]
  topics: {alerts: %s, dlq: %s}
sink:
  elasticsearch: {addresses: [%q], alerts_index: %s}
notify:
  consumer_group: it-e2e-notify-%s
  route: {receiver: hook, group_wait: 0s, group_interval: 200ms}
  receivers:
    - name: hook
      webhook_configs: [{url: %q, secret: %q}]
  silences: {index: %s, refresh_interval: 1s, api: {listen: %q, token: e2e-token, tls_cert_file: %q, tls_key_file: %q, max_connections: 4}}
`, metricsAddr, brokers[0], alertsTopic, dlqTopic, esURL, alertsIndex, run, hook.URL, secret, silencesIndex, apiAddr, apiCert, apiKey)
	cfg, err := config.Parse([]byte(yaml), "notify.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}

	// The processor's side: alert documents (state pending) and messages.
	const n = 30
	var msgs []kafka.Message
	for i := range n {
		a := rules.Alert{ID: fmt.Sprintf("e2e-%s-%d", run, i), RuleID: "k8s-privileged-pod", Title: "Privileged pod created",
			Severity: rules.SeverityCritical, Source: record.SourceAudit, Cluster: "prod", Time: now,
			User: "alice", Verb: "create", Namespace: "payments", Resource: "pods", Name: fmt.Sprint("p", i)}
		if i%10 == 0 {
			a.Namespace = "kube-system" // silenced
		}
		esDo(http.MethodPut, "/"+alertsIndex+"/_create/"+a.ID, map[string]any{"@timestamp": now,
			"kubesift": map[string]any{"delivery": map[string]any{"state": ecs.DeliveryPending}}})
		v, _ := json.Marshal(a)
		msgs = append(msgs, kafka.Message{Topic: alertsTopic, Key: []byte(a.Cluster + "/" + a.RuleID), Value: v,
			Headers: []kafka.Header{{Key: notify.HeaderSchema, Value: []byte("1")}, {Key: notify.HeaderID, Value: []byte(a.ID)}}})
	}
	testenv.CreateTopics(t, brokers[0], 2, alertsTopic)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		Transport: &kafka.Transport{}}
	defer w.Close()
	if err = w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runNotify(runCtx, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() { stop(); <-done }()

	countState := func(state string) int {
		esDo(http.MethodPost, "/"+alertsIndex+"/_refresh", nil)
		out := esDo(http.MethodPost, "/"+alertsIndex+"/_count", map[string]any{"query": map[string]any{"term": map[string]any{"kubesift.delivery.state": state}}})
		c, _ := out["count"].(float64)
		return int(c)
	}
	testenv.WaitForNil(t, "every alert delivered or silenced", 2*time.Minute, func() error {
		mu.Lock()
		got := len(received)
		mu.Unlock()
		if delivered, silenced := countState("delivered"), countState("silenced"); got != n-3 || delivered != n-3 || silenced != 3 {
			return fmt.Errorf("%d alerts received, %d delivered and %d silenced in Elasticsearch (want %d, %d, 3)", got, delivered, silenced, n-3, n-3)
		}
		return nil
	})
	// The silence API of the running notifier lists the stored silence,
	// over HTTPS: the CLI finds the https URL in the config and verifies
	// the server with --ca-file.
	t.Setenv(config.EnvSilenceAPIToken, "e2e-token")
	cfgFile := filepath.Join(t.TempDir(), "notify.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "", "silence", "list", "--config", cfgFile, "--ca-file", apiCert)
	if code != 0 || !strings.Contains(out, "s-e2e") || !strings.Contains(out, "namespace=kube-system") {
		t.Errorf("silence list: exit %d\n%s%s", code, out, errs)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unverified server certificate", []string{"--server", "https://" + apiAddr}, "certificate"},
		{"plain HTTP to the TLS port", []string{"--server", "http://" + apiAddr}, "400"},
	} {
		out, errs, code := runCLI(t, "", append([]string{"silence", "list"}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want an error containing %q", tc.name, code, errs, tc.want)
		}
		if strings.Contains(out+errs, "e2e-token") {
			t.Errorf("%s: the token is in the output", tc.name)
		}
	}
	// Both listeners run with their limits and /metrics wants its token.
	scrape := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: HTTP %d", code)
	}
	if code, body := scrape("bearer metrics-token"); code != http.StatusOK ||
		!strings.Contains(body, `kubesift_listener_connections_open{listener="silence-api"}`) ||
		!strings.Contains(body, `kubesift_listener_connections_refused_total{listener="metrics"}`) ||
		!strings.Contains(body, `kubesift_listener_auth_rejected_total{listener="metrics",reason="missing"} 1`) {
		t.Errorf("/metrics with the token: HTTP %d\n%s", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range received {
		if strings.HasSuffix(id, "-0") || strings.HasSuffix(id, "-10") || strings.HasSuffix(id, "-20") {
			t.Errorf("silenced alert %s delivered", id)
		}
		if c != 1 {
			t.Errorf("alert %s received %d times", id, c)
		}
	}
}
