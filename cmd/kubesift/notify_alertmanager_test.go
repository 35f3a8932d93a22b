package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/notify"
)

// TestNotifyToAlertmanager runs the notifier as `kubesift notify` wires it
// (configuration text to receivers), against the real Kafka, Elasticsearch
// and a real Prometheus Alertmanager: alerts produced as the processor
// produces them appear in Alertmanager with kubesift's labels, and when
// their group goes quiet for resolve_timeout they are resolved there —
// Alertmanager's webhook reports the group resolved.
func TestNotifyToAlertmanager(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.ElasticsearchURL(t)
	var mu sync.Mutex
	statuses := map[string]bool{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.AMPayload
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		statuses[p.Status] = true
		mu.Unlock()
	}))
	defer hook.Close()
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`
route: {receiver: hook, group_by: [rule_id, cluster], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: hook, webhook_configs: [{url: %q, send_resolved: true}]}]
`, hook.URL))

	run := fmt.Sprint(time.Now().UnixNano())
	alertsTopic := "it-e2e-am-alerts-" + run
	yaml := fmt.Sprintf(`
kafka:
  brokers: [%q]
  topics: {alerts: %s, dlq: it-e2e-am-dlq-%s}
sink:
  elasticsearch: {addresses: [%q], alerts_index: kubesift-alerts-e2e-am-%s}
notify:
  consumer_group: it-e2e-am-%s
  route: {receiver: am, group_wait: 0s, group_interval: 200ms, resolve_timeout: 10s}
  receivers:
    - name: am
      alertmanager_configs: [{urls: [%q], end_after: 1h}]
  silences: {index: kubesift-silences-e2e-am-%s, refresh_interval: 1s}
`, brokers[0], alertsTopic, run, esURL, run, run, am.URL, run)
	cfg, err := config.Parse([]byte(yaml), "notify.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		testenv.ESDo(esURL, http.MethodDelete, "/kubesift-alerts-e2e-am-"+run+",kubesift-silences-e2e-am-"+run+"?ignore_unavailable=true", "")
	})

	// The alerts index as the processor's set-up creates it, for the
	// delivery states.
	mappings, _ := json.Marshal(map[string]any{"mappings": ecs.AlertsMappings()})
	if code, body := testenv.ESDo(esURL, http.MethodPut, "/kubesift-alerts-e2e-am-"+run, string(mappings)); code != http.StatusOK {
		t.Fatalf("create the alerts index: HTTP %d %s", code, body)
	}
	testenv.CreateTopics(t, brokers[0], 1, alertsTopic)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, Transport: &kafka.Transport{}}
	defer w.Close()
	var msgs []kafka.Message
	for i := range 3 {
		a := rules.Alert{ID: fmt.Sprintf("e2e-am-%s-%d", run, i), RuleID: "k8s-privileged-pod", Title: "Privileged pod created",
			Severity: rules.SeverityCritical, Source: record.SourceAudit, Cluster: "prod", Time: time.Now().UTC(),
			User: "alice", Verb: "create", Namespace: "payments", Resource: "pods", Name: fmt.Sprint("p", i)}
		v, _ := json.Marshal(a)
		msgs = append(msgs, kafka.Message{Topic: alertsTopic, Key: []byte(a.Cluster + "/" + a.RuleID), Value: v,
			Headers: []kafka.Header{{Key: notify.HeaderSchema, Value: []byte("1")}, {Key: notify.HeaderID, Value: []byte(a.ID)}}})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runNotify(runCtx, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() { stop(); <-done }()

	alerts := func() ([]struct {
		Labels map[string]string `json:"labels"`
	}, error) {
		select {
		case err := <-done:
			done <- err // for the deferred wait
			t.Fatalf("notify stopped: %v", err)
		default:
		}
		res, err := http.Get(am.URL + "/api/v2/alerts")
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		var out []struct {
			Labels map[string]string `json:"labels"`
		}
		return out, json.NewDecoder(res.Body).Decode(&out)
	}
	testenv.WaitForNil(t, "3 alerts in Alertmanager with kubesift's labels", 2*time.Minute, func() error {
		got, err := alerts()
		if err != nil {
			return err
		}
		if len(got) != 3 {
			return fmt.Errorf("%d alerts", len(got))
		}
		for _, a := range got {
			if l := a.Labels; l["alertname"] != "k8s-privileged-pod" || l["cluster"] != "prod" || l["severity"] != "critical" || l["user"] != "alice" {
				return fmt.Errorf("labels %v", l)
			}
		}
		return nil
	})
	// resolve_timeout is 10s so that Alertmanager (group_wait 1s) has
	// notified the group firing before it resolves: a group it never
	// notified gets no resolved notification either.
	testenv.WaitForNil(t, "the alerts resolved in Alertmanager", time.Minute, func() error {
		got, err := alerts()
		if err != nil {
			return err
		}
		mu.Lock()
		resolved := statuses["resolved"]
		mu.Unlock()
		if len(got) != 0 || !resolved {
			return fmt.Errorf("%d alerts still active; resolved notification: %v", len(got), resolved)
		}
		return nil
	})
}
