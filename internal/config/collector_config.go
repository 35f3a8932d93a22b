package config

import (
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// CollectorConfig configures the collector's sources (`kubesift collect`):
// the audit webhook receiver, the audit log tail, and what happens to every
// record before it leaves the collector (redaction, size policy, cluster
// identity).
type CollectorConfig struct {
	// ClusterUID is the UID of the cluster's kube-system namespace. It is
	// used when the collector cannot read it from the API server (no
	// kubeconfig and not in a cluster, or the read failed).
	ClusterUID string `yaml:"cluster_uid"`
	// Kubeconfig is the kubeconfig used to read the kube-system namespace
	// UID once at start. Empty: the in-cluster configuration when running in
	// a pod, else no API access.
	Kubeconfig string `yaml:"kubeconfig"`
	// DeadLetterMaxBytes caps the original bytes kept in one dead letter
	// (malformed line or item, oversized request).
	DeadLetterMaxBytes int `yaml:"dead_letter_max_bytes"`
	// MemoryLimit is the collector's soft memory limit in bytes
	// (runtime/debug.SetMemoryLimit). 0, the default: 85% of the memory
	// limit of the container's cgroup (v2 memory.max, v1
	// memory.limit_in_bytes), or 60 MiB outside a memory-limited cgroup,
	// which keeps the tail's RSS under 100 MiB at 50,000+ records/s (without
	// a limit the heap grows to twice the ~30 MiB live heap between
	// collections). -1: no limit. The GOMEMLIMIT environment variable, when
	// set, takes precedence over all of these. It is soft: a larger live
	// heap (big webhook bodies) exceeds it instead of failing.
	MemoryLimit int64 `yaml:"memory_limit"`

	AuditWebhook AuditWebhookConfig `yaml:"audit_webhook"`
	AuditTail    AuditTailConfig    `yaml:"audit_tail"`
	Redaction    RedactionConfig    `yaml:"redaction"`
	Size         SizeConfig         `yaml:"size"`
	// Events configures the Events collector (events_config.go).
	Events EventsConfig `yaml:"events"`
	// Objects configures the objects source (objects_config.go).
	Objects ObjectsConfig `yaml:"objects"`
}

// AuditWebhookConfig configures the HTTPS endpoint that kube-apiserver's
// audit webhook backend (--audit-webhook-config-file) posts EventLists to.
// The API server is authenticated by a client certificate signed by
// ClientCAFile, or by a bearer token, or either when both are set.
type AuditWebhookConfig struct {
	Enabled bool `yaml:"enabled"`
	// Listen is host:port of the HTTPS listener.
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile are the serving certificate and key.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// ClientCAFile holds the CA(s) that sign the API server's client
	// certificate (mTLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// BearerToken is the token the API server presents (the "token" of the
	// user in the webhook kubeconfig). BearerTokenFile is read at load time.
	BearerToken     Secret `yaml:"bearer_token"`
	BearerTokenFile string `yaml:"bearer_token_file"`
	// MaxBodyBytes caps one request body; larger requests get 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInFlight caps concurrently processed requests; beyond it the
	// receiver answers 429 at once.
	MaxInFlight int `yaml:"max_in_flight"`
	// RetryAfter is the Retry-After sent with 429 and 503 answers.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ShutdownGrace is how long in-flight requests may finish on shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxInflightBytes caps the request body bytes held by all connections
	// together. A request is admitted against its Content-Length (a body of
	// unknown length is charged as it arrives); beyond the budget the
	// receiver answers 429 with Retry-After.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// BodyReadTimeout bounds the time a request body may take to arrive; a
	// request holds no max_in_flight slot until its body is read.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// AllowedClientNames, when set, are globs (path.Match) of which one must
	// match a DNS name, a URI or the common name of the client certificate;
	// a certificate of client_ca_file with none of them is answered 403.
	// Empty: any certificate client_ca_file signed is accepted (a warning
	// is logged at start).
	AllowedClientNames []string `yaml:"allowed_client_names"`
	// MaxConnections caps the receiver's open connections (0: the default,
	// obs.AuditWebhookLimits); connections over it are closed at once.
	MaxConnections int `yaml:"max_connections"`
}

// Defaults of the audit webhook's intake bounds.
const (
	DefaultWebhookInflightBytes   = 128 << 20
	DefaultWebhookBodyReadTimeout = 30 * time.Second
)

// AuditTailConfig configures the tail of audit log files written by
// kube-apiserver's log backend (--audit-log-path, --audit-log-format=json).
type AuditTailConfig struct {
	Enabled bool `yaml:"enabled"`
	// Paths are the audit log files to follow.
	Paths []string `yaml:"paths"`
	// PositionsFile keeps, per path, the inode and offset up to which
	// records are durable, so a restart resumes there.
	PositionsFile string `yaml:"positions_file"`
	// PositionsSyncInterval is how often the positions file is rewritten
	// (when it changed); it is also written on shutdown.
	PositionsSyncInterval time.Duration `yaml:"positions_sync_interval"`
	// StartAt applies to a file that exists at the very first start (no
	// saved position): "end" skips what it already holds, "beginning" reads it.
	StartAt string `yaml:"start_at"`
	// PollInterval is how often a file at EOF is checked for new data and
	// rotation.
	PollInterval time.Duration `yaml:"poll_interval"`
	// A batch is published when it holds BatchLines lines or BatchBytes
	// bytes, or BatchWait after its first line was read.
	BatchLines int           `yaml:"batch_lines"`
	BatchBytes int           `yaml:"batch_bytes"`
	BatchWait  time.Duration `yaml:"batch_wait"`
	// MaxLineBytes caps one line; longer lines become dead letters.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// StallAfter is how long a file may have unread data while its
	// position does not move before /readyz fails for it (check
	// "audit-tail:<path>", gauge kubesift_source_stalled).
	StallAfter time.Duration `yaml:"stall_after"`
}

// RedactionConfig configures what is removed from records before they leave
// the collector.
type RedactionConfig struct {
	Enabled bool `yaml:"enabled"`
	// ConfigMapKeyPatterns are case-insensitive regular expressions; a
	// ConfigMap data key matching any of them has its value redacted.
	ConfigMapKeyPatterns []string `yaml:"configmap_key_patterns"`
	// ExtraQueryParams are requestURI query parameters whose values are
	// redacted in addition to the built-in ones (token, access_token,
	// password, …), compared case-insensitively.
	ExtraQueryParams []string `yaml:"extra_query_params"`
}

// SizeConfig is the size policy.
type SizeConfig struct {
	// MaxRecordBytes caps an encoded record; larger audit records keep
	// their metadata and lose request/response bodies (flagged truncated).
	// One still larger has its longest strings cut to fit (listed in the
	// annotation kubesift.io/truncated-fields). Keep it below
	// publish.batch_bytes: a record over that goes to the dead-letter topic.
	MaxRecordBytes int `yaml:"max_record_bytes"`
}

// DefaultConfigMapKeyPatterns are the ConfigMap keys treated as credentials
// when the configuration names none.
var DefaultConfigMapKeyPatterns = []string{
	`password`, `passwd`, `secret`, `token`, `api[_-]?key`, `private[_-]?key`,
	`access[_-]?key`, `credential`, `aws_secret_access_key`, `\.pem$`, `\.key$`,
}

func defaultCollector() CollectorConfig {
	return CollectorConfig{
		Events:             DefaultEventsConfig(),
		Objects:            DefaultObjectsConfig(),
		DeadLetterMaxBytes: 64 << 10,
		AuditWebhook: AuditWebhookConfig{
			Listen:        ":8443",
			MaxBodyBytes:  32 << 20,
			MaxInFlight:   8,
			RetryAfter:    time.Second,
			ShutdownGrace: 20 * time.Second,

			MaxInflightBytes: DefaultWebhookInflightBytes,
			BodyReadTimeout:  DefaultWebhookBodyReadTimeout,
		},
		AuditTail: AuditTailConfig{
			Paths:                 []string{"/var/log/kubernetes/audit/audit.log"},
			PositionsFile:         "/var/lib/kubesift/positions.yaml",
			PositionsSyncInterval: 2 * time.Second,
			StartAt:               "end",
			PollInterval:          250 * time.Millisecond,
			BatchLines:            1000,
			BatchBytes:            4 << 20,
			BatchWait:             200 * time.Millisecond,
			MaxLineBytes:          16 << 20,
			StallAfter:            5 * time.Minute,
		},
		Redaction: RedactionConfig{
			Enabled:              true,
			ConfigMapKeyPatterns: append([]string(nil), DefaultConfigMapKeyPatterns...),
		},
		Size: SizeConfig{MaxRecordBytes: 1_000_000},
	}
}

// validate adds problems of the collector section, with full field paths
// ("collector.…"), to v. It also reads bearer_token_file (the file wins over
// bearer_token, as every *_file does): config.go resolves the other secret
// files before validation, and this keeps the collector's in this file.
func (c *CollectorConfig) validate(v *validator) {
	c.Events.validate(v)
	c.Objects.validate(v)
	if c.DeadLetterMaxBytes <= 0 {
		v.add("collector.dead_letter_max_bytes", "must be positive")
	}
	// Below a few tens of MiB the collector's live heap alone (decoded
	// batches, Kafka batches, zstd encoders) is over it and the GC would
	// run without pause.
	if c.MemoryLimit < -1 || c.MemoryLimit > 0 && c.MemoryLimit < 32<<20 {
		v.add("collector.memory_limit", "must be 0 (from the cgroup), -1 (no limit) or at least 33554432 (32 MiB)")
	}

	c.AuditWebhook.validate(v)
	c.AuditTail.validate(v)

	for i, p := range c.Redaction.ConfigMapKeyPatterns {
		if _, err := regexp.Compile("(?i)" + p); err != nil {
			v.add(fmt.Sprintf("collector.redaction.configmap_key_patterns[%d]", i), "invalid regular expression: "+err.Error())
		}
	}
	for i, p := range c.Redaction.ExtraQueryParams {
		if p == "" || strings.ContainsAny(p, "&=?# ") {
			v.add(fmt.Sprintf("collector.redaction.extra_query_params[%d]", i), "not a query parameter name")
		}
	}
	if c.Size.MaxRecordBytes < 4096 {
		v.add("collector.size.max_record_bytes", "must be at least 4096")
	}
}

// validate adds the audit webhook's problems, with full field paths, to v,
// and reads bearer_token_file into BearerToken.
func (w *AuditWebhookConfig) validate(v *validator) {
	const wp = "collector.audit_webhook."
	if w.BearerTokenFile != "" {
		if b, err := os.ReadFile(w.BearerTokenFile); err != nil {
			// The path is not secret; the content would be, and is never shown.
			v.add(wp+"bearer_token_file", err.Error())
		} else if tok := strings.TrimSpace(string(b)); tok == "" {
			v.add(wp+"bearer_token_file", "file is empty")
		} else {
			w.BearerToken = Secret(tok)
		}
	}
	if w.Enabled {
		if _, port, err := net.SplitHostPort(w.Listen); err != nil || port == "" {
			v.add(wp+"listen", "not host:port")
		}
		if w.TLSCertFile == "" || w.TLSKeyFile == "" {
			v.add(wp+"tls_cert_file", "tls_cert_file and tls_key_file are required (the endpoint is HTTPS only)")
		}
		if w.ClientCAFile == "" && w.BearerToken == "" {
			v.add(wp+"client_ca_file", "set client_ca_file (mTLS) or bearer_token(_file): the API server must authenticate")
		}
	}
	if w.MaxBodyBytes <= 0 {
		v.add(wp+"max_body_bytes", "must be positive")
	}
	if w.MaxInFlight <= 0 {
		v.add(wp+"max_in_flight", "must be positive")
	}
	if w.RetryAfter < time.Second {
		v.add(wp+"retry_after", "must be at least 1s (Retry-After has whole seconds)")
	}
	if w.ShutdownGrace < 0 {
		v.add(wp+"shutdown_grace", "must not be negative")
	}
	// One body of max_body_bytes must fit, or it would be answered 429
	// forever.
	if w.MaxInflightBytes < w.MaxBodyBytes {
		v.add(wp+"max_inflight_bytes", "must be at least max_body_bytes")
	}
	if w.BodyReadTimeout < time.Second {
		v.add(wp+"body_read_timeout", "must be at least 1s")
	}
	if w.MaxConnections < 0 {
		v.add(wp+"max_connections", "must not be negative (0: the default)")
	}
	for i, g := range w.AllowedClientNames {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			v.add(fmt.Sprintf(wp+"allowed_client_names[%d]", i), "not a glob pattern")
		}
	}
}

// validate adds the audit tail's problems, with full field paths, to v.
func (tl *AuditTailConfig) validate(v *validator) {
	const tp = "collector.audit_tail."
	if tl.Enabled {
		if len(tl.Paths) == 0 {
			v.add(tp+"paths", "at least one path is required")
		}
		if tl.PositionsFile == "" {
			v.add(tp+"positions_file", "required")
		}
	}
	seen := map[string]bool{}
	for i, p := range tl.Paths {
		switch {
		case p == "":
			v.add(fmt.Sprintf(tp+"paths[%d]", i), "must not be empty")
		case seen[p]:
			v.add(fmt.Sprintf(tp+"paths[%d]", i), "duplicate path")
		}
		seen[p] = true
	}
	v.oneOf(tp+"start_at", tl.StartAt, "end", "beginning")
	for _, d := range []struct {
		field string
		val   time.Duration
	}{{"poll_interval", tl.PollInterval}, {"batch_wait", tl.BatchWait}, {"positions_sync_interval", tl.PositionsSyncInterval}, {"stall_after", tl.StallAfter}} {
		if d.val <= 0 {
			v.add(tp+d.field, "must be positive")
		}
	}
	for _, n := range []struct {
		field string
		val   int
	}{{"batch_lines", tl.BatchLines}, {"batch_bytes", tl.BatchBytes}, {"max_line_bytes", tl.MaxLineBytes}} {
		if n.val <= 0 {
			v.add(tp+n.field, "must be positive")
		}
	}
}
