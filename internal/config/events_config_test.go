package config

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// parseEvents decodes a collector.events section the way Parse decodes the
// whole file (strict), then validates it. (Once CollectorConfig has the
// Events field these cases can go through Parse.)
func parseEvents(t *testing.T, text string) (EventsConfig, error) {
	t.Helper()
	var doc struct {
		Events EventsConfig `yaml:"events"`
	}
	doc.Events = DefaultEventsConfig()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return doc.Events, err
	}
	return doc.Events, doc.Events.Validate()
}

func TestEventsDefaults(t *testing.T) {
	c, err := parseEvents(t, "events:\n  enabled: true\n  leader_election:\n    identity: pod-a\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"enabled from file", c.Enabled, true},
		{"identity from file", c.LeaderElection.Identity, "pod-a"},
		{"lease duration kept when section given", c.LeaderElection.LeaseDuration, 15 * time.Second},
		{"renew deadline", c.LeaderElection.RenewDeadline, 10 * time.Second},
		{"retry period", c.LeaderElection.RetryPeriod, 2 * time.Second},
		{"leader election on", c.LeaderElection.Enabled, true},
		{"release on cancel", c.LeaderElection.ReleaseOnCancel, true},
		{"api", strings.Join(c.APIs, ","), EventsAPIEventsV1},
		{"max age", c.MaxAge, time.Hour},
		{"queue", c.QueueSize, 10000},
		{"batch", c.Batch.MaxRecords, 500},
		{"batch wait", c.Batch.MaxWait, 100 * time.Millisecond},
		{"watermark lease", c.Watermark.LeaseName, "kubesift-events-watermark"},
		{"watermark interval", c.Watermark.Interval, 5 * time.Second},
		{"pods", c.Enrich.Pods, true},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, tc.got, tc.want)
		}
	}
	if d := DefaultEventsConfig(); d.Enabled {
		t.Error("the Events collector is opt-in (like the audit sources)")
	}
}

func TestEventsValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "events:\n  queue: 1\n", "field queue not found"},
		{"bad api", "events:\n  apis: [events.k8s.io/v1beta1]\n", `collector.events.apis[0]: "events.k8s.io/v1beta1" is not one of events.k8s.io/v1, v1`},
		{"duplicate api", "events:\n  apis: [v1, v1]\n", "collector.events.apis[1]: duplicate API"},
		{"no api", "events:\n  apis: []\n", "collector.events.apis: at least one"},
		{"bad namespace", "events:\n  namespaces: [Kube_System]\n", "collector.events.namespaces[0]: not a namespace name"},
		{"duplicate namespace", "events:\n  namespaces: [a, a]\n", "collector.events.namespaces[1]: duplicate namespace"},
		{"field selector", "events:\n  field_selector: nonsense\n", "collector.events.field_selector"},
		{"label selector", "events:\n  label_selector: \"a in (\"\n", "collector.events.label_selector"},
		{"max age", "events:\n  max_age: 0s\n", "collector.events.max_age: must be positive"},
		{"queue", "events:\n  queue_size: 0\n", "collector.events.queue_size: must be positive"},
		{"grace", "events:\n  shutdown_grace: -1s\n", "collector.events.shutdown_grace: must not be negative"},
		{"batch", "events:\n  batch:\n    max_records: 0\n", "collector.events.batch.max_records: must be positive"},
		{"batch wait", "events:\n  batch:\n    max_wait: 0s\n", "collector.events.batch.max_wait: must be positive"},
		{"watermark lease", "events:\n  watermark:\n    lease_name: \"Not Valid\"\n", "collector.events.watermark.lease_name: not a Lease name"},
		{"watermark interval", "events:\n  watermark:\n    interval: 0s\n", "collector.events.watermark.interval: must be positive"},
		{"watermark namespace", "events:\n  watermark:\n    namespace: \"a.b\"\n", "collector.events.watermark.namespace: not a namespace name"},
		{"same lease", "events:\n  watermark:\n    lease_name: x\n  leader_election:\n    lease_name: x\n", "collector.events.watermark.lease_name: must differ"},
		{"lease <= renew", "events:\n  leader_election:\n    lease_duration: 10s\n", "collector.events.leader_election.lease_duration: must be greater than renew_deadline"},
		{"renew vs retry", "events:\n  leader_election:\n    retry_period: 9s\n", "collector.events.leader_election.renew_deadline: must be greater than 1.2 × retry_period"},
		{"retry zero", "events:\n  leader_election:\n    retry_period: 0s\n", "collector.events.leader_election.retry_period: must be positive"},
		{"sub-second lease", "events:\n  leader_election:\n    lease_duration: 900ms\n    renew_deadline: 500ms\n    retry_period: 100ms\n", "at least 1s"},
		{"label key", "events:\n  enrich:\n    labels: [\"a/b/c\"]\n", "collector.events.enrich.labels[0]: not a label key"},
		{"bad duration", "events:\n  max_age: soon\n", "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseEvents(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEventsReportsEveryProblem(t *testing.T) {
	_, err := parseEvents(t, "events:\n  queue_size: 0\n  max_age: 0s\n  batch:\n    max_records: 0\n")
	for _, want := range []string{"collector.events.queue_size", "collector.events.max_age", "collector.events.batch.max_records"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}

// TestEventsZeroSectionGetsDefaults: a CollectorConfig built without
// DefaultEventsConfig (the section absent) validates as the defaults.
func TestEventsZeroSectionGetsDefaults(t *testing.T) {
	var c EventsConfig
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.QueueSize != DefaultEventsConfig().QueueSize || c.Enabled {
		t.Errorf("zero section became %+v", c)
	}
}

func TestEventsValidSettings(t *testing.T) {
	_, err := parseEvents(t, `events:
  enabled: true
  apis: [events.k8s.io/v1, v1]
  namespaces: [default, kube-system]
  field_selector: type=Warning
  label_selector: app in (a, b)
  max_age: 30m
  queue_size: 100
  watermark: {namespace: kubesift, lease_name: wm, interval: 1s}
  leader_election: {namespace: kubesift, lease_name: le, lease_duration: 3s, renew_deadline: 2s, retry_period: 500ms, identity: a, release_on_cancel: false}
  enrich: {pods: false, labels: [app.kubernetes.io/name]}
  batch: {max_records: 10, max_wait: 5ms}
`)
	if err != nil {
		t.Fatal(err)
	}
}
