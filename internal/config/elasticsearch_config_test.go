package config

import (
	"strings"
	"testing"
	"time"
)

func TestElasticsearchDefaults(t *testing.T) {
	c, err := Parse([]byte("sink:\n  elasticsearch:\n    addresses: [\"http://es:9200\"]\n"), "e.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	es := c.Sink.Elasticsearch
	tests := []struct {
		name      string
		got, want any
	}{
		{"address from file", es.Addresses[0], "http://es:9200"},
		{"audit stream", es.Streams.Audit, "logs-kubesift.audit-default"},
		{"events stream", es.Streams.Events, "logs-kubesift.events-default"},
		{"posture stream", es.Streams.Posture, "logs-kubesift.posture-default"},
		{"alerts index", es.AlertsIndex, "kubesift-alerts"},
		{"findings index", es.Findings.Index, "kubesift-findings"},
		{"finding transitions stream", es.Findings.TransitionsStream, "logs-kubesift.finding_transitions-default"},
		{"posture scores stream", es.Findings.ScoresStream, "metrics-kubesift.posture_scores-default"},
		{"flush bytes", es.FlushBytes, 5 << 20},
		{"flush interval is short", es.FlushInterval, time.Second},
		{"workers", es.Workers, 2},
		{"queue bound", es.MaxQueuedBytes, int64(64 << 20)},
		{"body cap", es.MaxBodyBytes, 256 << 10},
		{"retry backoff", es.RetryBackoff, 200 * time.Millisecond},
		{"retry max backoff: an outage's end is noticed within seconds", es.RetryMaxBackoff, 10 * time.Second},
		{"request timeout", es.RequestTimeout, 30 * time.Second},
		{"ilm on", es.ILM.Enabled, true},
		{"ilm policy", es.ILM.Policy, "kubesift"},
		{"ilm rollover size", es.ILM.RolloverMaxPrimaryShardSize, "50gb"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestElasticsearchIntegrationStreamName(t *testing.T) {
	// Elastic's prebuilt rules read logs-kubernetes.audit_logs-*; a user
	// must be able to write there.
	c, err := Parse([]byte("sink:\n  elasticsearch:\n    streams:\n      audit: logs-kubernetes.audit_logs-prod\n"), "e.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	typ, ds, ns, ok := StreamName(c.Sink.Elasticsearch.Streams.Audit)
	if !ok || typ != "logs" || ds != "kubernetes.audit_logs" || ns != "prod" {
		t.Fatalf("StreamName = %q %q %q %v", typ, ds, ns, ok)
	}
	if c.Sink.Elasticsearch.Streams.Events != DefaultEventsStream {
		t.Errorf("events stream lost its default: %q", c.Sink.Elasticsearch.Streams.Events)
	}
}

func TestElasticsearchValidation(t *testing.T) {
	const p = "sink:\n  elasticsearch:\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", p + "    flush_byte: 1\n", `line 3: sink.elasticsearch.flush_byte: unknown key (did you mean "flush_bytes"?)`},
		{"stream scheme", p + "    streams:\n      audit: kubesift-audit\n", `sink.elasticsearch.streams.audit: "kubesift-audit" is not <type>-<dataset>-<namespace>`},
		{"stream uppercase", p + "    streams:\n      events: logs-Kube.events-default\n", "sink.elasticsearch.streams.events: must be lowercase"},
		{"stream empty", p + "    streams:\n      posture: \"\"\n", "sink.elasticsearch.streams.posture: must not be empty"},
		{"stream bad char", p + "    streams:\n      audit: \"logs-a*b-default\"\n", "sink.elasticsearch.streams.audit: must not contain"},
		{"alerts index leading dash", p + "    alerts_index: -alerts\n", "sink.elasticsearch.alerts_index: must not start with"},
		{"duplicate names", p + "    streams:\n      events: logs-kubesift.audit-default\n", "sink.elasticsearch.streams.events: same name as sink.elasticsearch.streams.audit"},
		{"findings index", p + "    findings:\n      index: Findings\n", "sink.elasticsearch.findings.index: must be lowercase"},
		{"findings index same as alerts", p + "    findings:\n      index: kubesift-alerts\n", "sink.elasticsearch.findings.index: same name as sink.elasticsearch.alerts_index"},
		{"transitions stream scheme", p + "    findings:\n      transitions_stream: kubesift-finding-transitions-x\n", `sink.elasticsearch.findings.transitions_stream: "kubesift-finding-transitions-x" is not <type>-<dataset>-<namespace>`},
		{"scores stream empty", p + "    findings:\n      scores_stream: \"\"\n", "sink.elasticsearch.findings.scores_stream: must not be empty"},
		{"workers", p + "    workers: 0\n", "sink.elasticsearch.workers: must be positive"},
		{"flush bytes", p + "    flush_bytes: 0\n", "sink.elasticsearch.flush_bytes: must be positive"},
		{"flush interval", p + "    flush_interval: 0s\n", "sink.elasticsearch.flush_interval: must be positive"},
		{"bad duration", p + "    flush_interval: soon\n", "line 3"},
		{"queue below flush", p + "    flush_bytes: 10000000\n    max_queued_bytes: 1000000\n", "sink.elasticsearch.max_queued_bytes: must be at least sink.elasticsearch.flush_bytes"},
		{"queue zero", p + "    max_queued_bytes: 0\n", "sink.elasticsearch.max_queued_bytes: must be positive"},
		{"body cap", p + "    max_body_bytes: -1\n", "sink.elasticsearch.max_body_bytes: must be positive"},
		{"retry backoff", p + "    retry_backoff: 0s\n", "sink.elasticsearch.retry_backoff: must be positive"},
		{"retry max below first", p + "    retry_backoff: 10s\n    retry_max_backoff: 1s\n", "sink.elasticsearch.retry_max_backoff: must be at least"},
		{"request timeout", p + "    request_timeout: 0s\n", "sink.elasticsearch.request_timeout: must be positive"},
		{"fingerprint", p + "    ca_fingerprint: abc\n", "sink.elasticsearch.ca_fingerprint: not a hex SHA-256"},
		{"insecure with ca", p + "    ca_file: /ca.pem\n    tls:\n      insecure_skip_verify: true\n", "sink.elasticsearch.tls.insecure_skip_verify: cannot be combined"},
		{"username without password", p + "    username: u\n", "sink.elasticsearch.username: username and password"},
		{"two auths", p + "    api_key: k\n    bearer_token: t\n", "use one of"},
		{"ilm policy", p + "    ilm:\n      policy: \"\"\n", "sink.elasticsearch.ilm.policy: must not be empty"},
		{"ilm no rollover", p + "    ilm:\n      rollover_max_age: 0s\n      rollover_max_primary_shard_size: \"\"\n", "sink.elasticsearch.ilm: set rollover_max_age or"},
		{"ilm size", p + "    ilm:\n      rollover_max_primary_shard_size: big\n", `sink.elasticsearch.ilm.rollover_max_primary_shard_size: "big" is not a size`},
		{"ilm delete", p + "    ilm:\n      delete_after: -1h\n", "sink.elasticsearch.ilm.delete_after: must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "e.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestElasticsearchValidFingerprintAndILMOff(t *testing.T) {
	fp := strings.Repeat("ab:", 31) + "ab"
	y := "sink:\n  elasticsearch:\n    ca_fingerprint: \"" + fp + "\"\n    ilm:\n      enabled: false\n      policy: \"\"\n"
	if _, err := Parse([]byte(y), "e.yaml", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
}

func TestESDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h", 90 * time.Minute: "90m", 45 * time.Second: "45s", 1500 * time.Millisecond: "1500ms",
	} {
		if got := ESDuration(d); got != want {
			t.Errorf("ESDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestElasticsearchFindingsPartialSectionKeepsDefaults(t *testing.T) {
	c, err := Parse([]byte("sink:\n  elasticsearch:\n    findings:\n      index: prod-findings\n"), "e.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Sink.Elasticsearch.Findings
	if f.Index != "prod-findings" || f.TransitionsStream != DefaultFindingTransitionsStream || f.ScoresStream != DefaultPostureScoresStream {
		t.Errorf("findings = %+v", f)
	}
}
