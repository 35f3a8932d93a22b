package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestDecodeErrorsSpeakYAML: a typo or a value of the wrong type is reported
// with the line, the field's path, the type expected in the words of the
// file, and the key the user probably meant — never a Go type name.
func TestDecodeErrorsSpeakYAML(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // one substring per expected error, in order
	}{
		{"typo", "kafka:\n  brokerz: [a:1]\n",
			[]string{`k.yaml: line 2: kafka.brokerz: unknown key (did you mean "brokers"?)`}},
		{"dash for underscore", "kafka:\n  client-id: x\n",
			[]string{`line 2: kafka.client-id: unknown key (did you mean "client_id"?)`}},
		{"top-level typo", "colector:\n  audit_tail: {}\n",
			[]string{`line 1: colector: unknown key (did you mean "collector"?)`}},
		{"nothing close lists the keys", "kafka:\n  tls:\n    verify: true\n",
			[]string{"line 3: kafka.tls.verify: unknown key (known here: ca_file, cert_file, enabled, insecure_skip_verify, key_file)"}},
		{"deep in a list", "notify:\n  receivers:\n    - name: a\n      slack_configs:\n        - urll: x\n",
			[]string{`line 5: notify.receivers[0].slack_configs[0].urll: unknown key (did you mean "url"?)`}},
		{"duration", "collector:\n  audit_tail:\n    poll_interval: fast\n",
			[]string{`line 3: collector.audit_tail.poll_interval: expected a duration (like 30s, 5m or 1h30m), got "fast"`}},
		{"duration behind a pointer", "notify:\n  route:\n    group_wait: 1x\n",
			[]string{`line 3: notify.route.group_wait: expected a duration`}},
		{"duration in a map", "notify:\n  deadman:\n    clusters:\n      prod: soon\n",
			[]string{`line 4: notify.deadman.clusters.prod: expected a duration`}},
		{"scalar for a list", "kafka:\n  brokers: k:9092\n",
			[]string{`line 2: kafka.brokers: expected a list of strings, got "k:9092"`}},
		{"list for a string", "server:\n  listen: [1]\n",
			[]string{"line 2: server.listen: expected a string, got a list"}},
		{"integer", "processor:\n  queue_capacity: lots\n",
			[]string{`line 2: processor.queue_capacity: expected an integer, got "lots"`}},
		{"integer from a size", "collector:\n  audit_webhook:\n    max_body_bytes: 32MiB\n",
			[]string{`line 3: collector.audit_webhook.max_body_bytes: expected an integer, got "32MiB"`}},
		{"boolean", "collector:\n  audit_webhook:\n    enabled: sometimes\n",
			[]string{`line 3: collector.audit_webhook.enabled: expected true or false, got "sometimes"`}},
		{"section given a list", "kafka: [a]\n",
			[]string{"line 1: kafka: expected a mapping of keys, got a list"}},
		{"document not a mapping", "- a\n",
			[]string{"line 1: expected a mapping of keys, got a list"}},
		{"key twice", "log:\n  level: info\n  level: debug\n",
			[]string{"line 3: log.level: set twice (first at line 2)"}},
		{"every problem at once", "kafka:\n  brokerz: []\nlog:\n  levle: x\n  format: [json]\n",
			[]string{"line 2: kafka.brokerz: unknown key", `line 4: log.levle: unknown key (did you mean "level"?)`, "line 5: log.format: expected a string, got a list"}},
		{"validation gets the line", "cluster:\n  name: a\nkafka:\n  brokers: [localhost]\n",
			[]string{"k.yaml: line 4: kafka.brokers[0]: not host:port"}},
		{"unset field: the line of its section", "collector:\n  audit_webhook:\n    enabled: true\n",
			[]string{"line 2: collector.audit_webhook.tls_cert_file: tls_cert_file and tls_key_file are required",
				"line 2: collector.audit_webhook.client_ca_file: set client_ca_file"}},
		{"syntax", "kafka: [\n", []string{"k.yaml: yaml: line"}},
		{"validation in the order of the file", "processor:\n  group_id: \"\"\nkafka:\n  brokers: [localhost]\n",
			[]string{"line 2: processor.group_id: must not be empty", "line 4: kafka.brokers[0]: not host:port"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "k.yaml", func(string) string { return "" })
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v (%T), want Errors", err, err)
			}
			if len(es) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(es[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, es[i].Error(), w)
				}
				if strings.Contains(es[i].Error(), "config.") {
					t.Errorf("error %d names a Go type: %q", i, es[i].Error())
				}
			}
		})
	}
}

// TestDecodeErrorsHideSecretValues: a value of the wrong type under a secret
// key is described, never shown.
func TestDecodeErrorsHideSecretValues(t *testing.T) {
	_, err := Parse([]byte("sink:\n  elasticsearch:\n    password: [hunter2]\n"), "k.yaml", nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v, want an error without the value", err)
	}
}

// TestFieldErrorJSON: config validate -o json prints these.
func TestFieldErrorJSON(t *testing.T) {
	_, err := Parse([]byte("kafka:\n  brokerz: []\n"), "k.yaml", nil)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	b, _ := json.Marshal(es)
	want := `[{"file":"k.yaml","line":2,"field":"kafka.brokerz","message":"unknown key (did you mean \"brokers\"?)"}]`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
}

func TestClosest(t *testing.T) {
	names := []string{"brokers", "client_id", "group_id", "tls", "topics"}
	tests := []struct{ key, want string }{
		{"brokerz", "brokers"},
		{"Brokers", "brokers"},
		{"clientid", "client_id"},
		{"group", "group_id"},
		{"tsl", "tls"},
		{"zzzzzz", ""},
		{"partitions", ""},
	}
	for _, tc := range tests {
		if got := closest(tc.key, names); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
