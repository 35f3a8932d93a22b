package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

type memPublisher struct {
	mu     sync.Mutex
	ids    []string
	closed bool
}

func (p *memPublisher) Publish(_ context.Context, recs []*record.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range recs {
		p.ids = append(p.ids, r.ID+"@"+r.Cluster.Name+"/"+r.Cluster.UID)
	}
	return nil
}
func (p *memPublisher) PublishDeadLetters(context.Context, []collector.DeadLetter) error { return nil }
func (p *memPublisher) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}
func (p *memPublisher) got() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.ids, " ")
}

const auditEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}`

// TestCollectRunsBothSources runs `kubesift collect` from a config file with
// both sources on and an in-memory publisher, feeds each source, checks the
// metrics endpoint and a clean shutdown.
func TestCollectRunsBothSources(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testenv.SelfSigned(t, dir)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("hook-token\n"), 0o600)
	logFile := filepath.Join(dir, "audit.log")
	os.WriteFile(logFile, []byte(fmt.Sprintf(auditEvent, "tail-1")+"\n"), 0o644)
	hookAddr, metricsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfgFile := filepath.Join(dir, "collector.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`cluster: {name: test-cluster}
server: {listen: %q}
collector:
  cluster_uid: uid-from-config
  audit_webhook:
    enabled: true
    listen: %q
    tls_cert_file: %q
    tls_key_file: %q
    bearer_token_file: %q
  audit_tail:
    enabled: true
    paths: [%q]
    positions_file: %q
    start_at: beginning
    poll_interval: 20ms
    batch_wait: 20ms
`, metricsAddr, hookAddr, certFile, keyFile, tokenFile, logFile, filepath.Join(dir, "positions.yaml"))), 0o644)

	pub := &memPublisher{}
	publisherFactory = func(context.Context, *config.Config, prometheus.Registerer, *slog.Logger) (collectPublisher, error) {
		return pub, nil
	}
	t.Cleanup(func() { publisherFactory = newPublisher })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCommand()
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"collect", "-c", cfgFile, "--log-format", "text"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testenv.WaitFor(t, "/readyz", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	req, _ := http.NewRequest(http.MethodPost, "https://"+hookAddr+"/audit",
		strings.NewReader(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`+fmt.Sprintf(auditEvent, "hook-1")+`]}`))
	req.Header.Set("Authorization", "Bearer hook-token")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	testenv.WaitFor(t, "both records", 20*time.Second, func() bool {
		g := pub.got()
		return strings.Contains(g, "hook-1:ResponseComplete@test-cluster/uid-from-config") &&
			strings.Contains(g, "tail-1:ResponseComplete@test-cluster/uid-from-config")
	})
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`kubesift_collector_received_total{source="audit-webhook"} 1`,
		`kubesift_collector_received_total{source="audit-tail"} 1`,
		`kubesift_collector_redacted_total{kind="secret-data"} 0`,
		`kubesift_collector_tail_lag_bytes{path=`,
		`kubesift_collector_webhook_requests_total{code="200"} 1`,
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collect: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("collect did not stop")
	}
	if !pub.closed {
		t.Error("publisher not closed")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "positions.yaml")); err != nil || !bytes.Contains(b, []byte(logFile)) {
		t.Errorf("positions file: %v %s", err, b)
	}
	if strings.Contains(stderr.String(), "hook-token") {
		t.Error("the bearer token was logged")
	}
}

func TestCollectRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	noSource := filepath.Join(dir, "none.yaml")
	os.WriteFile(noSource, []byte("cluster: {name: x}\nserver: {listen: ''}\n"), 0o644)
	tail := filepath.Join(dir, "tail.yaml")
	os.WriteFile(tail, []byte(fmt.Sprintf("server: {listen: ''}\ncollector:\n  audit_tail: {enabled: true, paths: [%q], positions_file: %q}\n",
		filepath.Join(dir, "a.log"), filepath.Join(dir, "p.yaml"))), 0o644)
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("collector:\n  audit_webhook: {enabled: true, listen: nope}\n"), 0o644)
	tests := []struct {
		name, cfg, want string
	}{
		{"no source", noSource, "no source enabled"},
		{"no Kafka brokers", tail, "kafka.brokers: required by collect"},
		{"invalid config names the field", badCfg, "collector.audit_webhook.listen: not host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runCLI(t, "", "collect", "-c", tc.cfg)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want %q", code, errs, tc.want)
			}
		})
	}
}

// TestCollectStartsWithTheRealPublisher starts collect with every audit
// source and the real Kafka publisher (whose metrics share the registry with
// the sources'), Kafka unreachable: it must start, be ready (records go to
// the spool), serve every family, and stop cleanly. The in-memory publisher
// of the other tests hid a metric name collision that kept the shipped
// binary from starting.
func TestCollectStartsWithTheRealPublisher(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testenv.SelfSigned(t, dir)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("hook-token\n"), 0o600)
	logFile := filepath.Join(dir, "audit.log")
	os.WriteFile(logFile, nil, 0o644)
	hookAddr, metricsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfgFile := filepath.Join(dir, "collector.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`cluster: {name: test-cluster}
server: {listen: %q}
kafka: {brokers: ["127.0.0.1:1"]}
publish: {spool: {dir: %q}}
collector:
  audit_webhook: {enabled: true, listen: %q, tls_cert_file: %q, tls_key_file: %q, bearer_token_file: %q}
  audit_tail: {enabled: true, paths: [%q], positions_file: %q}
`, metricsAddr, filepath.Join(dir, "spool"), hookAddr, certFile, keyFile, tokenFile, logFile, filepath.Join(dir, "positions.yaml"))), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCommand()
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	cmd.SetOut(io.Discard)
	cmd.SetArgs([]string{"collect", "-c", cfgFile, "--log-format", "text"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var metrics []byte
	testenv.WaitFor(t, "/readyz and /metrics", 20*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("collect exited: %v\n%s", err, stderr.String())
		default:
		}
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false
		}
		if resp, err = http.Get("http://" + metricsAddr + "/metrics"); err != nil {
			return false
		}
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return true
	})
	for _, want := range []string{
		"kubesift_collector_publish_dead_letters_total 0",
		"kubesift_collector_publish_refused_records_total",
		"kubesift_collector_spool_bytes 0",
		"kubesift_collector_webhook_in_flight 0",
		"kubesift_collector_tail_lag_bytes{path=",
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collect: %v\n%s", err, stderr.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("collect did not stop")
	}
}
