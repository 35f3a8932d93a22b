package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCollectorDefaults(t *testing.T) {
	c, err := Parse([]byte("collector:\n  audit_tail:\n    paths: [/a.log]\n"), "c.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Collector
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"webhook off by default", cc.AuditWebhook.Enabled, false},
		{"webhook listen", cc.AuditWebhook.Listen, ":8443"},
		{"webhook body limit", cc.AuditWebhook.MaxBodyBytes, int64(32 << 20)},
		{"webhook in flight", cc.AuditWebhook.MaxInFlight, 8},
		{"retry after", cc.AuditWebhook.RetryAfter, time.Second},
		{"webhook inflight bytes", cc.AuditWebhook.MaxInflightBytes, int64(128 << 20)},
		{"webhook body read timeout", cc.AuditWebhook.BodyReadTimeout, 30 * time.Second},
		{"memory limit from the cgroup", cc.MemoryLimit, int64(0)},
		{"tail off by default", cc.AuditTail.Enabled, false},
		{"given path replaces the default", strings.Join(cc.AuditTail.Paths, ","), "/a.log"},
		{"start_at", cc.AuditTail.StartAt, "end"},
		{"poll interval kept when the section is partly given", cc.AuditTail.PollInterval, 250 * time.Millisecond},
		{"batch lines", cc.AuditTail.BatchLines, 1000},
		{"stall after", cc.AuditTail.StallAfter, 5 * time.Minute},
		{"redaction on by default", cc.Redaction.Enabled, true},
		{"default key patterns", len(cc.Redaction.ConfigMapKeyPatterns), len(DefaultConfigMapKeyPatterns)},
		{"max record bytes", cc.Size.MaxRecordBytes, 1_000_000},
		{"dead letter cap", cc.DeadLetterMaxBytes, 64 << 10},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestCollectorValidationNamesTheField(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	tests := []struct{ name, yaml, want string }{
		{"listen", "collector:\n  audit_webhook: {enabled: true, listen: nope, tls_cert_file: c, tls_key_file: k, bearer_token: t}\n", "collector.audit_webhook.listen: not host:port"},
		{"https only", "collector:\n  audit_webhook: {enabled: true, bearer_token: t}\n", "collector.audit_webhook.tls_cert_file: tls_cert_file and tls_key_file are required"},
		{"no authentication", "collector:\n  audit_webhook: {enabled: true, tls_cert_file: c, tls_key_file: k}\n", "collector.audit_webhook.client_ca_file: set client_ca_file (mTLS) or bearer_token"},
		{"missing token file", "collector:\n  audit_webhook: {bearer_token_file: /nonexistent/tok}\n", "collector.audit_webhook.bearer_token_file: open /nonexistent/tok"},
		{"empty token file", "collector:\n  audit_webhook: {bearer_token_file: " + empty + "}\n", "collector.audit_webhook.bearer_token_file: file is empty"},
		{"body limit", "collector:\n  audit_webhook: {max_body_bytes: 0}\n", "collector.audit_webhook.max_body_bytes: must be positive"},
		{"in flight", "collector:\n  audit_webhook: {max_in_flight: -1}\n", "collector.audit_webhook.max_in_flight: must be positive"},
		{"retry after", "collector:\n  audit_webhook: {retry_after: 10ms}\n", "collector.audit_webhook.retry_after: must be at least 1s"},
		{"inflight bytes below a body", "collector:\n  audit_webhook: {max_body_bytes: 2000, max_inflight_bytes: 1000}\n", "collector.audit_webhook.max_inflight_bytes: must be at least max_body_bytes"},
		{"body read timeout", "collector:\n  audit_webhook: {body_read_timeout: 10ms}\n", "collector.audit_webhook.body_read_timeout: must be at least 1s"},
		{"negative connection cap", "collector:\n  audit_webhook: {max_connections: -1}\n", "collector.audit_webhook.max_connections: must not be negative (0: the default)"},
		{"client name glob", "collector:\n  audit_webhook: {allowed_client_names: [kube-apiserver, 'a[']}\n", "collector.audit_webhook.allowed_client_names[1]: not a glob pattern"},
		{"memory limit", "collector:\n  memory_limit: -2\n", "collector.memory_limit: must be 0 (from the cgroup), -1 (no limit) or at least"},
		{"tail without paths", "collector:\n  audit_tail: {enabled: true, paths: []}\n", "collector.audit_tail.paths: at least one path"},
		{"duplicate path", "collector:\n  audit_tail: {paths: [/a, /a]}\n", "collector.audit_tail.paths[1]: duplicate path"},
		{"start_at", "collector:\n  audit_tail: {start_at: middle}\n", `collector.audit_tail.start_at: "middle" is not one of end, beginning`},
		{"poll interval", "collector:\n  audit_tail: {poll_interval: 0s}\n", "collector.audit_tail.poll_interval: must be positive"},
		{"batch lines", "collector:\n  audit_tail: {batch_lines: 0}\n", "collector.audit_tail.batch_lines: must be positive"},
		{"stall after", "collector:\n  audit_tail: {stall_after: 0s}\n", "collector.audit_tail.stall_after: must be positive"},
		{"bad pattern", "collector:\n  redaction: {configmap_key_patterns: [ok, '(']}\n", "collector.redaction.configmap_key_patterns[1]: invalid regular expression"},
		{"bad query param", "collector:\n  redaction: {extra_query_params: ['a=b']}\n", "collector.redaction.extra_query_params[0]: not a query parameter name"},
		{"record size", "collector:\n  size: {max_record_bytes: 10}\n", "collector.size.max_record_bytes: must be at least 4096"},
		{"unknown key", "collector:\n  audit_tail: {pathz: [/a]}\n", `collector.audit_tail.pathz: unknown key (did you mean "paths"?)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "c.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCollectorBearerTokenFile(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("from-file-token\n"), 0o600)
	c, err := Parse([]byte("collector:\n  audit_webhook:\n    bearer_token: inline\n    bearer_token_file: "+tok+"\n"), "c.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Collector.AuditWebhook.BearerToken != "from-file-token" {
		t.Errorf("token %q: the file must win", c.Collector.AuditWebhook.BearerToken)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "from-file-token") || strings.Contains(string(out), "inline") {
		t.Errorf("token printed:\n%s", out)
	}
	// What config print shows parses back.
	if _, err := Parse(out, "printed", nil); err != nil {
		t.Errorf("printed config does not parse: %v", err)
	}
}
