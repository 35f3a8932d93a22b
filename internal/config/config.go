// Package config loads kubesift's one YAML configuration file.
//
// Loading is strict: unknown keys and values of the wrong type are errors
// naming the line, the field's path, the expected type and the closest known
// key (decode.go); every section fills its defaults in UnmarshalYAML (so a
// missing section still gets them); and Validate reports every problem at
// once with the field's full path, e.g. "sink.elasticsearch.addresses[0]:
// not a URL", to which Parse adds the line. CheckFiles (files.go) goes
// further for `config validate`: every file the configuration names exists
// and parses. Secrets never live in the file
// if the user does not want them to: each has a *_file variant and an
// environment variable override, and Secret values print as "<secret>".
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Secret is a string that never prints: it marshals to "<secret>" so that
// `config print` and logs cannot leak it.
type Secret string

// MarshalYAML hides the value.
func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return "<secret>", nil
}

// String hides the value from fmt and slog.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// Config is the whole configuration file.
type Config struct {
	Cluster ClusterConfig `yaml:"cluster"`
	Log     LogConfig     `yaml:"log"`
	Server  ServerConfig  `yaml:"server"`
	Kafka   KafkaConfig   `yaml:"kafka"`
	Sink    SinkConfig    `yaml:"sink"`
	// Collector configures `kubesift collect` (collector_config.go).
	Collector CollectorConfig `yaml:"collector"`
	// Publish configures how collectors write to Kafka (publish_config.go).
	Publish PublishConfig `yaml:"publish"`
	// Processor configures `kubesift process` (processor_config.go).
	Processor ProcessorConfig `yaml:"processor"`
	// Notify configures alert delivery (notify_config.go).
	Notify NotifyConfig `yaml:"notify"`
}

// UnmarshalYAML fills defaults before reading, so absent sections keep them.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = Default()
	type plain Config
	return unmarshal((*plain)(c))
}

// ClusterConfig names the cluster a collector runs in.
type ClusterConfig struct {
	// Name is stamped on every record (orchestrator.cluster.name).
	Name string `yaml:"name"`
}

// LogConfig configures log/slog.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | text | auto (text on a terminal)
}

// ServerConfig configures the HTTP server for /metrics, /healthz and /readyz.
type ServerConfig struct {
	Listen string `yaml:"listen"` // host:port; empty disables the server; KUBESIFT_SERVER_LISTEN overrides it
	// MaxConnections caps the server's open connections (0: the default,
	// obs.MetricsLimits); connections over it are closed at once.
	MaxConnections int `yaml:"max_connections"`
	// BearerToken, when set, is required on /metrics (from
	// bearer_token_file or KUBESIFT_METRICS_BEARER_TOKEN too). /healthz
	// and /readyz stay open: the kubelet's probes carry no token.
	BearerToken     Secret `yaml:"bearer_token"`
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLSCertFile and TLSKeyFile, when set, make the server speak HTTPS
	// with this certificate, re-read when the files change.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// KafkaConfig configures every Kafka client.
type KafkaConfig struct {
	Brokers  []string     `yaml:"brokers"`
	ClientID string       `yaml:"client_id"`
	Topics   TopicsConfig `yaml:"topics"`
	TLS      TLSConfig    `yaml:"tls"`
	SASL     SASLConfig   `yaml:"sasl"`
	// TopicSettings are what `kubesift setup kafka` creates the topics
	// with (kafka_topics_config.go).
	TopicSettings TopicSettingsConfig `yaml:"topic_settings"`

	// LagInterval is how often a consumer (processor, posture consumer,
	// notifier) asks the broker for its group's committed offsets and the
	// partitions' high watermarks (kubesift_consumer_lag); 0 disables.
	LagInterval time.Duration `yaml:"lag_interval"`
}

// TopicsConfig names the topics (see ARCHITECTURE.md for their keys).
type TopicsConfig struct {
	Audit   string `yaml:"audit"`
	Events  string `yaml:"events"`
	Objects string `yaml:"objects"`
	Alerts  string `yaml:"alerts"`
	DLQ     string `yaml:"dlq"`
}

// TLSConfig configures a TLS client.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASLConfig configures Kafka SASL authentication.
type SASLConfig struct {
	Mechanism    string `yaml:"mechanism"` // "" | plain | scram-sha-256 | scram-sha-512
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// SinkConfig configures the sinks.
type SinkConfig struct {
	Elasticsearch ElasticsearchConfig `yaml:"elasticsearch"`
}

// Default returns the configuration used when a file says nothing.
func Default() Config {
	return Config{
		Log:    LogConfig{Level: "info", Format: "auto"},
		Server: ServerConfig{Listen: ":9090"},
		Kafka: KafkaConfig{
			ClientID: "kubesift",
			Topics: TopicsConfig{
				Audit: "kubesift.audit", Events: "kubesift.events", Objects: "kubesift.objects",
				Alerts: "kubesift.alerts", DLQ: "kubesift.dlq",
			},
			TopicSettings: defaultTopicSettings(),
			LagInterval:   15 * time.Second,
		},
		Sink:      SinkConfig{Elasticsearch: defaultElasticsearch()},
		Collector: defaultCollector(),
		Publish:   defaultPublish(),
		Processor: defaultProcessor(),
		Notify:    defaultNotify(),
	}
}

// Environment variables that override secrets, so that they can come from a
// Kubernetes Secret instead of the config file.
const (
	EnvKafkaPassword = "KUBESIFT_KAFKA_SASL_PASSWORD"
	EnvESPassword    = "KUBESIFT_ES_PASSWORD"
	EnvESAPIKey      = "KUBESIFT_ES_API_KEY"
	EnvESBearer      = "KUBESIFT_ES_BEARER_TOKEN"
	// EnvMetricsBearer overrides server.bearer_token.
	EnvMetricsBearer = "KUBESIFT_METRICS_BEARER_TOKEN"
	// EnvServerListen overrides server.listen, so that the processes of
	// one host (collect, process, notify) can share one configuration file
	// with a metrics port each (docs/deployment.md).
	EnvServerListen = "KUBESIFT_SERVER_LISTEN"
)

// Parse reads a configuration from YAML text (strict), applies environment
// overrides and secret files, and validates it. name appears in errors.
//
// Every error is an Errors list: each problem names the file, the line when
// the field is written there, and the field's full path (errors.go).
func Parse(data []byte, name string, getenv func(string) string) (*Config, error) {
	d, err := ParseDocument(data, name, getenv)
	if err != nil {
		return nil, err
	}
	return d.Config, nil
}

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	d, err := LoadDocument(path)
	if err != nil {
		return nil, err
	}
	return d.Config, nil
}

// Document is a parsed configuration file with the line of every field
// written in it, so that problems found after parsing (CheckFiles, the
// rules of processor.rules.dirs) are reported as the parser's own are.
type Document struct {
	Config *Config
	File   string
	lines  map[string]int
}

// Locate turns err — "field: problem" texts, joined with errors.Join —
// into Errors naming the file and each field's line.
func (d *Document) Locate(err error) error { return located(d.File, d.lines, err) }

// ParseDocument is Parse, keeping the lines of the fields.
func ParseDocument(data []byte, name string, getenv func(string) string) (*Document, error) {
	c := Default()
	lines, err := decodeStrict(data, &c, name)
	if err != nil {
		return nil, err
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := c.resolveSecrets(getenv); err != nil {
		return nil, located(name, lines, err)
	}
	if v := getenv(EnvServerListen); v != "" {
		c.Server.Listen = v
	}
	if err := c.Validate(); err != nil {
		return nil, located(name, lines, err)
	}
	return &Document{Config: &c, File: name, lines: lines}, nil
}

// LoadDocument reads and parses a configuration file, keeping the lines of
// the fields.
func LoadDocument(path string) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseDocument(data, path, os.Getenv)
}

// resolveSecrets applies environment overrides and *_file indirections.
func (c *Config) resolveSecrets(getenv func(string) string) error {
	override := func(dst *Secret, env, file, field string) error {
		if v := getenv(env); v != "" {
			*dst = Secret(v)
			return nil
		}
		if file == "" {
			return nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is not secret; the content would be, and is never shown.
			return fmt.Errorf("%s: %w", field, err)
		}
		*dst = Secret(strings.TrimSpace(string(b)))
		return nil
	}
	es := &c.Sink.Elasticsearch
	return errors.Join(
		override(&c.Kafka.SASL.Password, EnvKafkaPassword, c.Kafka.SASL.PasswordFile, "kafka.sasl.password_file"),
		override(&es.Password, EnvESPassword, es.PasswordFile, "sink.elasticsearch.password_file"),
		override(&es.APIKey, EnvESAPIKey, es.APIKeyFile, "sink.elasticsearch.api_key_file"),
		override(&es.BearerToken, EnvESBearer, "", "sink.elasticsearch.bearer_token"),
		override(&c.Server.BearerToken, EnvMetricsBearer, c.Server.BearerTokenFile, "server.bearer_token_file"),
		c.Notify.resolveSecrets(getenv),
	)
}

// Validate reports every invalid field with its full path.
func (c *Config) Validate() error {
	var v validator
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text", "auto")
	if c.Server.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
			v.add("server.listen", "not host:port")
		}
	}
	if c.Server.MaxConnections < 0 {
		v.add("server.max_connections", "must not be negative (0: the default)")
	}
	if (c.Server.TLSCertFile == "") != (c.Server.TLSKeyFile == "") {
		v.add("server.tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	for i, b := range c.Kafka.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			v.add(fmt.Sprintf("kafka.brokers[%d]", i), "not host:port")
		}
	}
	for _, t := range []struct{ field, val string }{
		{"kafka.topics.audit", c.Kafka.Topics.Audit}, {"kafka.topics.events", c.Kafka.Topics.Events},
		{"kafka.topics.objects", c.Kafka.Topics.Objects}, {"kafka.topics.alerts", c.Kafka.Topics.Alerts},
		{"kafka.topics.dlq", c.Kafka.Topics.DLQ},
	} {
		if t.val == "" {
			v.add(t.field, "must not be empty")
		}
	}
	v.oneOf("kafka.sasl.mechanism", c.Kafka.SASL.Mechanism, "", "plain", "scram-sha-256", "scram-sha-512")
	if c.Kafka.SASL.Mechanism != "" && (c.Kafka.SASL.Username == "" || c.Kafka.SASL.Password == "") {
		v.add("kafka.sasl", "username and password (or password_file, or "+EnvKafkaPassword+") are required with a mechanism")
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		v.add("kafka.tls", "cert_file and key_file go together")
	}
	c.Kafka.TopicSettings.validate(&v, c)
	if c.Kafka.LagInterval < 0 {
		v.add("kafka.lag_interval", "must not be negative (0 disables)")
	}
	c.Sink.Elasticsearch.validate(&v)
	c.Collector.validate(&v)
	c.Publish.validate(&v)
	c.Processor.validate(&v)
	c.Notify.validate(&v)
	return v.err()
}

// validator collects field errors.
type validator struct{ errs []error }

func (v *validator) add(field, msg string) { v.errs = append(v.errs, fmt.Errorf("%s: %s", field, msg)) }

func (v *validator) oneOf(field, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	var shown []string
	for _, a := range allowed {
		if a != "" {
			shown = append(shown, a)
		}
	}
	v.add(field, fmt.Sprintf("%q is not one of %s", val, strings.Join(shown, ", ")))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

// Marshal renders a configuration as YAML, secrets hidden.
func Marshal(c *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
