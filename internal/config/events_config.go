package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The Event APIs the Events collector can watch (collector.events.apis).
const (
	EventsAPIEventsV1 = "events.k8s.io/v1"
	EventsAPICoreV1   = "v1"
)

// EventsConfig configures the Events collector (package collector/events):
// informers on events.k8s.io/v1 and/or core/v1 Events, the leader election
// that lets exactly one collector per cluster ship them, the watermark that
// keeps a restarted (or newly elected) collector from re-shipping what was
// already shipped, and enrichment of Pod Events from a Pod informer.
type EventsConfig struct {
	Enabled bool `yaml:"enabled"`
	// APIs are the Event APIs to watch: events.k8s.io/v1 and/or v1. Both
	// views of one Event share a record ID, so watching both costs
	// bandwidth but no duplicates in Elasticsearch.
	APIs []string `yaml:"apis"`
	// Namespaces limits the informers to these namespaces; empty means all
	// namespaces (one cluster-wide watch per API).
	Namespaces []string `yaml:"namespaces"`
	// FieldSelector and LabelSelector are passed to every Event list/watch.
	FieldSelector string `yaml:"field_selector"`
	LabelSelector string `yaml:"label_selector"`
	// MaxAge applies at the very first start only (no usable watermark):
	// Events whose latest occurrence is older are skipped and counted.
	MaxAge time.Duration `yaml:"max_age"`
	// QueueSize bounds the Events handed from the informers to the
	// shipping worker; when it is full the informer handler waits.
	QueueSize int `yaml:"queue_size"`
	// ShutdownGrace is how long queued Events may still be shipped (and the
	// watermark written) when the collector stops or loses leadership.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`

	Watermark      EventsWatermarkConfig      `yaml:"watermark"`
	LeaderElection EventsLeaderElectionConfig `yaml:"leader_election"`
	Enrich         EventsEnrichConfig         `yaml:"enrich"`
	Batch          EventsBatchConfig          `yaml:"batch"`
}

// EventsWatermarkConfig says where the collector keeps its per-cluster
// watermark: an annotation of a coordination.k8s.io Lease it owns (a Lease,
// not a ConfigMap, so that the collector's only write permission is on
// Leases in its own namespace).
type EventsWatermarkConfig struct {
	Enabled bool `yaml:"enabled"`
	// Namespace of the Lease; empty means the collector's own namespace
	// (POD_NAMESPACE, else the service account's namespace file, else
	// "default" outside a pod).
	Namespace string `yaml:"namespace"`
	// LeaseName is the Lease holding the watermark annotation.
	LeaseName string `yaml:"lease_name"`
	// Interval is how often the watermark is written when it advanced.
	Interval time.Duration `yaml:"interval"`
}

// EventsLeaderElectionConfig configures the coordination.k8s.io Lease
// election (client-go leaderelection) that picks the one collector per
// cluster that ships Events.
type EventsLeaderElectionConfig struct {
	Enabled bool `yaml:"enabled"`
	// Namespace of the Lease; empty means the collector's own namespace
	// ("default" outside a pod).
	Namespace string `yaml:"namespace"`
	// LeaseName is the election Lease.
	LeaseName string `yaml:"lease_name"`
	// LeaseDuration is how long followers wait after the last renewal
	// before taking over: the failover time after a crash.
	LeaseDuration time.Duration `yaml:"lease_duration"`
	// RenewDeadline is how long the leader keeps trying to renew before it
	// gives up leadership.
	RenewDeadline time.Duration `yaml:"renew_deadline"`
	// RetryPeriod is the pause between attempts to acquire or renew.
	RetryPeriod time.Duration `yaml:"retry_period"`
	// Identity names this collector in the Lease; empty means POD_NAME, else
	// the host name plus a random suffix.
	Identity string `yaml:"identity"`
	// ReleaseOnCancel gives the Lease up on a clean shutdown, so that a
	// rolling update fails over at once instead of after lease_duration.
	ReleaseOnCancel bool `yaml:"release_on_cancel"`
}

// EventsEnrichConfig configures enrichment of Events about Pods from a Pod
// informer's cache (never a GET per Event).
type EventsEnrichConfig struct {
	// Pods enables the Pod informer; off means no Pod list/watch at all.
	Pods bool `yaml:"pods"`
	// Labels are the Pod label keys copied onto the Event.
	Labels []string `yaml:"labels"`
}

// EventsBatchConfig bounds one Publish call of the Events collector.
type EventsBatchConfig struct {
	// MaxRecords is the most records per batch.
	MaxRecords int `yaml:"max_records"`
	// MaxWait is how long a batch waits for more records after its first.
	MaxWait time.Duration `yaml:"max_wait"`
}

// DefaultEventsConfig returns the defaults of the collector.events section.
func DefaultEventsConfig() EventsConfig {
	return EventsConfig{
		Enabled:       false,
		APIs:          []string{EventsAPIEventsV1},
		MaxAge:        time.Hour,
		QueueSize:     10000,
		ShutdownGrace: 10 * time.Second,
		Watermark: EventsWatermarkConfig{
			Enabled:   true,
			LeaseName: "kubesift-events-watermark",
			Interval:  5 * time.Second,
		},
		LeaderElection: EventsLeaderElectionConfig{
			Enabled:         true,
			LeaseName:       "kubesift-events-leader",
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
		},
		Enrich: EventsEnrichConfig{
			Pods:   true,
			Labels: []string{"app.kubernetes.io/name", "app"},
		},
		Batch: EventsBatchConfig{MaxRecords: 500, MaxWait: 100 * time.Millisecond},
	}
}

// UnmarshalYAML fills the defaults before reading, so keys absent from the
// file keep them.
func (c *EventsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultEventsConfig()
	type plain EventsConfig
	return unmarshal((*plain)(c))
}

// leaderElectionJitter is client-go's leaderelection.JitterFactor: the
// renew deadline must exceed retry_period times it.
const leaderElectionJitter = 1.2

// validate adds problems of the collector.events section, with full field
// paths, to v. A section that is entirely zero (the configuration was built
// without DefaultEventsConfig) gets the defaults first.
func (c *EventsConfig) validate(v *validator) {
	if reflect.ValueOf(*c).IsZero() {
		*c = DefaultEventsConfig()
	}
	const p = "collector.events."
	if len(c.APIs) == 0 {
		v.add(p+"apis", "at least one of "+EventsAPIEventsV1+", "+EventsAPICoreV1+" is required")
	}
	seen := map[string]bool{}
	for i, a := range c.APIs {
		f := fmt.Sprintf(p+"apis[%d]", i)
		v.oneOf(f, a, EventsAPIEventsV1, EventsAPICoreV1)
		if seen[a] {
			v.add(f, "duplicate API")
		}
		seen[a] = true
	}
	seen = map[string]bool{}
	for i, ns := range c.Namespaces {
		f := fmt.Sprintf(p+"namespaces[%d]", i)
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			v.add(f, "not a namespace name: "+strings.Join(errs, "; "))
		}
		if seen[ns] {
			v.add(f, "duplicate namespace")
		}
		seen[ns] = true
	}
	if c.FieldSelector != "" {
		if _, err := fields.ParseSelector(c.FieldSelector); err != nil {
			v.add(p+"field_selector", err.Error())
		}
	}
	if c.LabelSelector != "" {
		if _, err := labels.Parse(c.LabelSelector); err != nil {
			v.add(p+"label_selector", err.Error())
		}
	}
	if c.MaxAge <= 0 {
		v.add(p+"max_age", "must be positive")
	}
	if c.QueueSize <= 0 {
		v.add(p+"queue_size", "must be positive")
	}
	if c.ShutdownGrace < 0 {
		v.add(p+"shutdown_grace", "must not be negative")
	}

	w := &c.Watermark
	if w.Namespace != "" {
		if errs := validation.IsDNS1123Label(w.Namespace); len(errs) > 0 {
			v.add(p+"watermark.namespace", "not a namespace name: "+strings.Join(errs, "; "))
		}
	}
	if w.Enabled {
		if errs := validation.IsDNS1123Subdomain(w.LeaseName); len(errs) > 0 {
			v.add(p+"watermark.lease_name", "not a Lease name: "+strings.Join(errs, "; "))
		}
	}
	if w.Interval <= 0 {
		v.add(p+"watermark.interval", "must be positive")
	}

	le := &c.LeaderElection
	le.validate(v, p+"leader_election.")
	if le.Enabled && w.Enabled && le.LeaseName == w.LeaseName && le.Namespace == w.Namespace {
		// The elector rewrites its Lease from a cached copy; sharing it
		// would make every watermark write a renewal conflict.
		v.add(p+"watermark.lease_name", "must differ from collector.events.leader_election.lease_name")
	}

	for i, k := range c.Enrich.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			v.add(fmt.Sprintf(p+"enrich.labels[%d]", i), "not a label key: "+strings.Join(errs, "; "))
		}
	}
	if c.Batch.MaxRecords <= 0 {
		v.add(p+"batch.max_records", "must be positive")
	}
	if c.Batch.MaxWait <= 0 {
		v.add(p+"batch.max_wait", "must be positive")
	}
}

// validate adds problems of a leader election section to v; p is its path
// with a trailing dot ("collector.events.leader_election.").
func (le *EventsLeaderElectionConfig) validate(v *validator, p string) {
	if le.Namespace != "" {
		if errs := validation.IsDNS1123Label(le.Namespace); len(errs) > 0 {
			v.add(p+"namespace", "not a namespace name: "+strings.Join(errs, "; "))
		}
	}
	if le.Enabled {
		if errs := validation.IsDNS1123Subdomain(le.LeaseName); len(errs) > 0 {
			v.add(p+"lease_name", "not a Lease name: "+strings.Join(errs, "; "))
		}
	}
	// The same rules client-go's NewLeaderElector enforces, reported here
	// with field names instead of at start.
	switch {
	case le.LeaseDuration <= 0:
		v.add(p+"lease_duration", "must be positive")
	case le.RenewDeadline <= 0:
		v.add(p+"renew_deadline", "must be positive")
	case le.RetryPeriod <= 0:
		v.add(p+"retry_period", "must be positive")
	case le.LeaseDuration < time.Second:
		v.add(p+"lease_duration", "must be at least 1s (the Lease stores whole seconds)")
	case le.LeaseDuration <= le.RenewDeadline:
		v.add(p+"lease_duration", "must be greater than renew_deadline")
	case float64(le.RenewDeadline) <= leaderElectionJitter*float64(le.RetryPeriod):
		v.add(p+"renew_deadline", fmt.Sprintf("must be greater than %.1f × retry_period", leaderElectionJitter))
	}
}

// Validate reports every invalid field of the section with its full path
// ("collector.events.…"). Config.Validate covers it once the section is part
// of CollectorConfig; this is for callers holding only the section.
func (c *EventsConfig) Validate() error {
	var v validator
	c.validate(&v)
	return v.err()
}
