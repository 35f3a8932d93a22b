package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ElasticsearchConfig configures the Elasticsearch sink (sink/elasticsearch)
// and the documents it writes (sink/ecs). docs/elasticsearch.md explains the
// mapping and the write path these settings tune.
type ElasticsearchConfig struct {
	Addresses    []string `yaml:"addresses"`
	Username     string   `yaml:"username"`
	Password     Secret   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	APIKey       Secret   `yaml:"api_key"`
	APIKeyFile   string   `yaml:"api_key_file"`
	BearerToken  Secret   `yaml:"bearer_token"`
	// CAFile is a PEM file of the CA that signed the cluster's certificate.
	CAFile string `yaml:"ca_file"`
	// CAFingerprint is the hex SHA-256 fingerprint of the cluster's CA
	// certificate (what Elasticsearch prints at first start).
	CAFingerprint string `yaml:"ca_fingerprint"`
	// TLS holds the remaining TLS client options.
	TLS ESTLSConfig `yaml:"tls"`
	// RequestTimeout bounds one HTTP request (one bulk attempt); a timed-out
	// attempt is retried like any other network failure.
	RequestTimeout time.Duration `yaml:"request_timeout"`

	// Streams names the data streams per record kind.
	Streams ESStreamsConfig `yaml:"streams"`
	// AlertsIndex is the plain index (not a data stream) alerts go to: the
	// notifier updates kubesift.delivery.state in place.
	AlertsIndex string `yaml:"alerts_index"`
	// Findings names where posture findings go (docs/posture.md, "In
	// Elasticsearch").
	Findings ESFindingsConfig `yaml:"findings"`

	// Workers is the number of concurrent bulk requests.
	Workers int `yaml:"workers"`
	// FlushBytes sends a bulk request once this many bytes are buffered.
	FlushBytes int `yaml:"flush_bytes"`
	// FlushInterval sends whatever is buffered after this long (short: the
	// processor commits Kafka offsets only behind indexed documents).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxQueuedBytes bounds the documents accepted and not yet done
	// (buffered, in flight or being retried). When full, Add blocks: that is
	// the backpressure that pauses Kafka consumption while Elasticsearch
	// refuses writes.
	MaxQueuedBytes int64 `yaml:"max_queued_bytes"`
	// MaxBodyBytes caps each request/response object copied into an audit
	// document; a larger body is left out and the document is flagged
	// (kubesift.record.body_dropped).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// RetryBackoff is the first wait before retrying a refused bulk request
	// or item; waits double up to RetryMaxBackoff, with jitter.
	RetryBackoff    time.Duration `yaml:"retry_backoff"`
	RetryMaxBackoff time.Duration `yaml:"retry_max_backoff"`

	// ILM configures the index lifecycle policy `kubesift setup es` installs
	// where the cluster has ILM.
	ILM ESILMConfig `yaml:"ilm"`
}

// ESTLSConfig holds TLS options of the Elasticsearch client.
type ESTLSConfig struct {
	// InsecureSkipVerify disables certificate verification (test clusters
	// only); it cannot be combined with ca_file or ca_fingerprint.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ESStreamsConfig names the data stream of each record kind. Names follow
// Elastic's "<type>-<dataset>-<namespace>" scheme, from which the documents'
// data_stream.* fields are derived; setting Audit to
// "logs-kubernetes.audit_logs-<namespace>" makes the records visible to
// Elastic Security's prebuilt Kubernetes rules.
type ESStreamsConfig struct {
	Audit   string `yaml:"audit"`
	Events  string `yaml:"events"`
	Posture string `yaml:"posture"`
}

// ESFindingsConfig names the posture findings' index and data streams.
type ESFindingsConfig struct {
	// Index is the plain index holding the current state of every finding,
	// one document per finding id (written with external versioning, so a
	// late write never replaces a newer state).
	Index string `yaml:"index"`
	// TransitionsStream is the data stream of finding transitions, one
	// document per open/resolved/reopened.
	TransitionsStream string `yaml:"transitions_stream"`
	// UsageIndex is the plain index of RBAC usage: one document per
	// (cluster, binding, role, subject) and one per cluster's watch
	// (processor.posture.rbac_usage). Empty: no usage is kept.
	UsageIndex string `yaml:"usage_index"`
	// ScoresStream is the data stream of posture scores per cluster and
	// namespace.
	ScoresStream string `yaml:"scores_stream"`
}

// ESILMConfig is the lifecycle of the data streams' backing indices.
type ESILMConfig struct {
	// Enabled installs the policy (where the cluster has ILM).
	Enabled bool `yaml:"enabled"`
	// Policy is the policy name.
	Policy string `yaml:"policy"`
	// RolloverMaxAge and RolloverMaxPrimaryShardSize start a new backing
	// index, whichever comes first.
	RolloverMaxAge              time.Duration `yaml:"rollover_max_age"`
	RolloverMaxPrimaryShardSize string        `yaml:"rollover_max_primary_shard_size"`
	// DeleteAfter deletes a backing index this long after its rollover; 0
	// keeps data forever (regulated users often must keep a year or more).
	DeleteAfter time.Duration `yaml:"delete_after"`
}

// UnmarshalYAML fills defaults before reading, so a partial section keeps
// the defaults of the fields it does not name.
func (c *ElasticsearchConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultElasticsearch()
	type plain ElasticsearchConfig
	return unmarshal((*plain)(c))
}

// Default data stream and index names.
const (
	DefaultAuditStream   = "logs-kubesift.audit-default"
	DefaultEventsStream  = "logs-kubesift.events-default"
	DefaultPostureStream = "logs-kubesift.posture-default"
	DefaultAlertsIndex   = "kubesift-alerts"

	DefaultFindingsIndex            = "kubesift-findings"
	DefaultRBACUsageIndex           = "kubesift-rbac-usage"
	DefaultFindingTransitionsStream = "logs-kubesift.finding_transitions-default"
	DefaultPostureScoresStream      = "metrics-kubesift.posture_scores-default"
)

func defaultElasticsearch() ElasticsearchConfig {
	return ElasticsearchConfig{
		RequestTimeout: 30 * time.Second,
		Streams: ESStreamsConfig{
			Audit: DefaultAuditStream, Events: DefaultEventsStream, Posture: DefaultPostureStream,
		},
		AlertsIndex:     DefaultAlertsIndex,
		Workers:         2,
		FlushBytes:      5 << 20,
		FlushInterval:   time.Second,
		MaxQueuedBytes:  64 << 20,
		MaxBodyBytes:    256 << 10,
		RetryBackoff:    200 * time.Millisecond,
		RetryMaxBackoff: 10 * time.Second,
		ILM: ESILMConfig{
			Enabled:                     true,
			Policy:                      "kubesift",
			RolloverMaxAge:              7 * 24 * time.Hour,
			RolloverMaxPrimaryShardSize: "50gb",
		},
		Findings: ESFindingsConfig{
			Index: DefaultFindingsIndex, TransitionsStream: DefaultFindingTransitionsStream, ScoresStream: DefaultPostureScoresStream,
			UsageIndex: DefaultRBACUsageIndex,
		},
	}
}

// StreamName splits a data stream name into its type, dataset and
// namespace ("logs-kubesift.audit-default" -> logs, kubesift.audit,
// default). ok is false when the name does not follow the scheme.
func StreamName(name string) (typ, dataset, namespace string, ok bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// validIndexName reports why name cannot be an Elasticsearch index or data
// stream name ("" when it can).
func validIndexName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 255:
		return "longer than 255 bytes"
	case name != strings.ToLower(name):
		return "must be lowercase"
	case strings.ContainsAny(name, `\/*?"<>| ,#:`):
		return `must not contain \ / * ? " < > | space , # :`
	case strings.HasPrefix(name, "-") || strings.HasPrefix(name, "_") || strings.HasPrefix(name, "+") || strings.HasPrefix(name, "."):
		return "must not start with - _ + or ."
	}
	return ""
}

// validate adds problems of the section, with full field paths, to v.
func (c *ElasticsearchConfig) validate(v *validator) {
	const p = "sink.elasticsearch."
	for i, a := range c.Addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(fmt.Sprintf("sink.elasticsearch.addresses[%d]", i), "not a URL")
		}
	}
	auths := 0
	for _, s := range []Secret{c.APIKey, c.BearerToken} {
		if s != "" {
			auths++
		}
	}
	if c.Username != "" || c.Password != "" {
		auths++
	}
	if auths > 1 {
		v.add("sink.elasticsearch", "use one of username/password, api_key, bearer_token")
	}
	if (c.Username == "") != (c.Password == "") {
		v.add("sink.elasticsearch.username", "username and password (or password_file, or "+EnvESPassword+") go together")
	}
	if c.CAFingerprint != "" {
		fp := strings.ReplaceAll(c.CAFingerprint, ":", "")
		if len(fp) != 64 || strings.Trim(strings.ToLower(fp), "0123456789abcdef") != "" {
			v.add(p+"ca_fingerprint", "not a hex SHA-256 fingerprint (64 hex digits, colons allowed)")
		}
	}
	if c.TLS.InsecureSkipVerify && (c.CAFile != "" || c.CAFingerprint != "") {
		v.add(p+"tls.insecure_skip_verify", "cannot be combined with ca_file or ca_fingerprint")
	}
	positiveDur := func(field string, d time.Duration) {
		if d <= 0 {
			v.add(p+field, "must be positive")
		}
	}
	positive := func(field string, n int64) bool {
		if n <= 0 {
			v.add(p+field, "must be positive")
			return false
		}
		return true
	}
	positiveDur("request_timeout", c.RequestTimeout)

	c.validateNames(v)

	positive("workers", int64(c.Workers))
	flushOK := positive("flush_bytes", int64(c.FlushBytes))
	positiveDur("flush_interval", c.FlushInterval)
	// The queue must hold at least one full bulk request, or a flush could
	// never be assembled while the queue blocks.
	if positive("max_queued_bytes", c.MaxQueuedBytes) && flushOK && c.MaxQueuedBytes < int64(c.FlushBytes) {
		v.add(p+"max_queued_bytes", fmt.Sprintf("must be at least sink.elasticsearch.flush_bytes (%d)", c.FlushBytes))
	}
	positive("max_body_bytes", int64(c.MaxBodyBytes))
	positiveDur("retry_backoff", c.RetryBackoff)
	if c.RetryMaxBackoff < c.RetryBackoff {
		v.add(p+"retry_max_backoff", "must be at least sink.elasticsearch.retry_backoff")
	}

	if c.ILM.Enabled {
		if msg := validIndexName(c.ILM.Policy); msg != "" {
			v.add(p+"ilm.policy", msg)
		}
		if c.ILM.RolloverMaxAge <= 0 && c.ILM.RolloverMaxPrimaryShardSize == "" {
			v.add(p+"ilm", "set rollover_max_age or rollover_max_primary_shard_size")
		}
		if c.ILM.RolloverMaxAge < 0 {
			v.add(p+"ilm.rollover_max_age", "must not be negative")
		}
		if s := c.ILM.RolloverMaxPrimaryShardSize; s != "" && !validByteSize(s) {
			v.add(p+"ilm.rollover_max_primary_shard_size", fmt.Sprintf("%q is not a size like 50gb", s))
		}
		if c.ILM.DeleteAfter < 0 {
			v.add(p+"ilm.delete_after", "must not be negative (0 keeps data)")
		}
	}
}

// validateNames checks the names of the data streams and indices: valid,
// distinct, and a data stream's of the form Elastic's conventions require.
func (c *ElasticsearchConfig) validateNames(v *validator) {
	const p = "sink.elasticsearch."
	seen := map[string]string{}
	for _, s := range []struct{ field, name string }{
		{"streams.audit", c.Streams.Audit}, {"streams.events", c.Streams.Events},
		{"streams.posture", c.Streams.Posture}, {"alerts_index", c.AlertsIndex},
		{"findings.index", c.Findings.Index}, {"findings.transitions_stream", c.Findings.TransitionsStream},
		{"findings.scores_stream", c.Findings.ScoresStream}, {"findings.usage_index", c.Findings.UsageIndex},
	} {
		if s.field == "findings.usage_index" && s.name == "" {
			continue // no usage index: RBAC usage is not kept
		}
		if msg := validIndexName(s.name); msg != "" {
			v.add(p+s.field, msg)
			continue
		}
		if other, dup := seen[s.name]; dup {
			v.add(p+s.field, "same name as sink.elasticsearch."+other)
		}
		seen[s.name] = s.field
		if s.field == "alerts_index" || s.field == "findings.index" || s.field == "findings.usage_index" {
			continue
		}
		// data_stream.{type,dataset,namespace} are derived from the name,
		// and Elastic's conventions forbid "-" inside dataset and namespace.
		if _, _, _, ok := StreamName(s.name); !ok {
			v.add(p+s.field, fmt.Sprintf("%q is not <type>-<dataset>-<namespace> (e.g. logs-kubernetes.audit_logs-default)", s.name))
		}
	}
}

// validByteSize accepts Elasticsearch byte sizes: digits and a unit.
func validByteSize(s string) bool {
	s = strings.ToLower(s)
	for _, unit := range []string{"pb", "tb", "gb", "mb", "kb", "b"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			return n != "" && strings.Trim(n, "0123456789") == ""
		}
	}
	return false
}

// ESDuration renders d in Elasticsearch time units ("7d", "36h", "90s").
func ESDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
