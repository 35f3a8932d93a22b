package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// TestNotifyEmailEndToEnd runs `kubesift notify` as its own process against
// the real Kafka and Elasticsearch and a real SMTP server (mailpit, STARTTLS
// and AUTH): alerts produced as the processor produces them arrive as mail.
func TestNotifyEmailEndToEnd(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.ElasticsearchURL(t)
	const password = "e2e-smtp-password"
	mp := testenv.StartMailpit(t, testenv.MailpitOptions{TLS: true, Users: map[string]string{"kubesift": password}})
	run := fmt.Sprint(time.Now().UnixNano())
	alertsTopic, dlqTopic := "it-e2e-mail-alerts-"+run, "it-e2e-mail-dlq-"+run
	alertsIndex, silencesIndex := "kubesift-alerts-mail-"+run, "kubesift-silences-mail-"+run
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	esDo := func(method, path string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, esURL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	esDo(http.MethodPut, "/"+alertsIndex, map[string]any{"mappings": ecs.AlertsMappings()})
	t.Cleanup(func() {
		for _, ix := range []string{alertsIndex, silencesIndex} {
			req, _ := http.NewRequest(http.MethodDelete, esURL+"/"+ix, nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
	})

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "smtp-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "notify.yaml")
	yaml := fmt.Sprintf(`
server: {listen: ""}
kafka:
  brokers: [%q]
  topics: {alerts: %s, dlq: %s}
sink:
  elasticsearch: {addresses: [%q], alerts_index: %s}
notify:
  consumer_group: it-e2e-mail-%s
  route: {receiver: mail, group_wait: 3s, group_interval: 500ms}
  receivers:
    - name: mail
      email_configs:
        - to: [secops@example.com]
          from: kubesift <alerts@example.com>
          smarthost: %s
          auth_username: kubesift
          auth_password_file: %s
          tls: {ca_file: %s}
  silences: {index: %s, refresh_interval: 1s}
`, brokers[0], alertsTopic, dlqTopic, esURL, alertsIndex, run, mp.SMTPAddr, pwFile, mp.CAFile, silencesIndex)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	testenv.CreateTopics(t, brokers[0], 1, alertsTopic)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: alertsTopic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	names := []string{"evil-" + run + "-0", "evil-" + run + "-1", "evil-" + run + "-2"}
	var msgs []kafka.Message
	for i, name := range names {
		msgs = append(msgs, notifytest.AlertMessage(t, notifytest.PrivilegedPod(i, name)))
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	p := testenv.Start(t, "notify", nil, "notify", "-c", cfgFile)
	// group_wait lets the three alerts form one group; should a slow start
	// split them, every alert must still arrive in some mail.
	var subjects []string
	testenv.WaitForNil(t, "every alert mailed", 2*time.Minute, func() error {
		l, err := mp.List()
		if err != nil {
			return err
		}
		var text strings.Builder
		subjects = subjects[:0]
		for _, s := range l {
			m := mp.Message(t, s.ID)
			if m.Username != "kubesift" || m.To[0].Address != "secops@example.com" {
				return fmt.Errorf("message %s: user %q to %v", s.ID, m.Username, m.To)
			}
			subjects = append(subjects, m.Subject)
			text.WriteString(m.Text)
		}
		for _, n := range names {
			if !strings.Contains(text.String(), n) {
				return fmt.Errorf("%d mails, none mentions %s", len(l), n)
			}
		}
		return nil
	})
	for _, s := range subjects {
		if !strings.HasPrefix(s, "[CRITICAL] Privileged pod created") || !strings.HasSuffix(s, " in prod-eu-1") {
			t.Errorf("subject %q", s)
		}
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("notify did not stop cleanly: %v", err)
	}
}
