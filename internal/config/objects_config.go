package config

import (
	"fmt"
	"reflect"
	"time"
)

// ObjectKinds are the kinds the objects source can collect
// (collector.objects.kinds), in the order they are listed in the docs.
// Secrets are deliberately absent: the collector has no read on them.
var ObjectKinds = []string{
	"Namespace", "Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob",
	"Service", "Ingress", "NetworkPolicy", "ServiceAccount",
	"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
	"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
	"Node",
}

// LeaderElectionConfig is the Lease election of a leader-only source; the
// Events and objects sources each have one, with their own Lease.
type LeaderElectionConfig = EventsLeaderElectionConfig

// ObjectsConfig configures the objects source (package collector/objects):
// informers on the kinds a posture check reads, publishing the current state
// of every object to kafka.topics.objects from exactly one collector per
// cluster (leader election).
type ObjectsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Kinds narrows the collected kinds to these (names of ObjectKinds);
	// empty means all of them.
	Kinds []string `yaml:"kinds"`
	// QueueSize bounds the objects waiting to be published (distinct
	// objects: repeated changes of one object while it waits count once).
	// A change arriving when it is full is dropped, counted, and recovered
	// from the informer cache once the queue has drained.
	QueueSize int `yaml:"queue_size"`
	// ShutdownGrace is how long queued objects may still be published when
	// the collector stops or loses leadership.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`

	LeaderElection LeaderElectionConfig `yaml:"leader_election"`
	Batch          EventsBatchConfig    `yaml:"batch"`
}

// DefaultObjectsConfig returns the defaults of the collector.objects section.
func DefaultObjectsConfig() ObjectsConfig {
	le := DefaultEventsConfig().LeaderElection
	le.LeaseName = "kubesift-objects-leader"
	return ObjectsConfig{
		QueueSize:      10000,
		ShutdownGrace:  10 * time.Second,
		LeaderElection: le,
		Batch:          EventsBatchConfig{MaxRecords: 500, MaxWait: 100 * time.Millisecond},
	}
}

// UnmarshalYAML fills the defaults before reading, so keys absent from the
// file keep them.
func (c *ObjectsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultObjectsConfig()
	type plain ObjectsConfig
	return unmarshal((*plain)(c))
}

// validate adds problems of the collector.objects section, with full field
// paths, to v. A section that is entirely zero (the configuration was built
// without DefaultObjectsConfig) gets the defaults first.
func (c *ObjectsConfig) validate(v *validator) {
	if reflect.ValueOf(*c).IsZero() {
		*c = DefaultObjectsConfig()
	}
	const p = "collector.objects."
	seen := map[string]bool{}
	for i, k := range c.Kinds {
		f := fmt.Sprintf(p+"kinds[%d]", i)
		v.oneOf(f, k, ObjectKinds...)
		if seen[k] {
			v.add(f, "duplicate kind")
		}
		seen[k] = true
	}
	if c.QueueSize <= 0 {
		v.add(p+"queue_size", "must be positive")
	}
	if c.ShutdownGrace < 0 {
		v.add(p+"shutdown_grace", "must not be negative")
	}
	c.LeaderElection.validate(v, p+"leader_election.")
	if c.Batch.MaxRecords <= 0 {
		v.add(p+"batch.max_records", "must be positive")
	}
	if c.Batch.MaxWait <= 0 {
		v.add(p+"batch.max_wait", "must be positive")
	}
}

// Validate reports every invalid field of the section with its full path
// ("collector.objects.…"), for callers holding only the section.
func (c *ObjectsConfig) Validate() error {
	var v validator
	c.validate(&v)
	return v.err()
}
