package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/match"
)

// NotifyConfig configures alert delivery (`kubesift notify`, package
// sink/notify): an Alertmanager-style routing tree, inhibition, receivers,
// silences and the deadman check. docs/alerting.md explains each field.
type NotifyConfig struct {
	// Route is the root of the routing tree. It matches every alert.
	Route RouteConfig `yaml:"route"`
	// InhibitRules mute target alerts while a matching source alert with
	// the same Equal labels was seen recently.
	InhibitRules []InhibitRuleConfig `yaml:"inhibit_rules"`
	// Receivers are named sets of integrations (Slack, webhooks).
	Receivers []ReceiverConfig `yaml:"receivers"`
	// Silences configures the silence store and its HTTP API.
	Silences SilencesConfig `yaml:"silences"`
	// Deadman raises an alert when a cluster sent nothing for a while.
	Deadman DeadmanConfig `yaml:"deadman"`
	// Digest schedules the daily digest per cluster.
	Digest DigestConfig `yaml:"digest"`
	// ConsumerGroup is the Kafka consumer group of the notifiers reading
	// kafka.topics.alerts.
	ConsumerGroup string `yaml:"consumer_group"`
	// MaxGroups caps the aggregation groups held in memory; past it the
	// least recently active group is flushed early and dropped (counted).
	MaxGroups int `yaml:"max_groups"`
	// MaxAlertsPerGroup caps the alerts one group keeps for its next
	// notification; later ones are still counted ("and N more").
	MaxAlertsPerGroup int `yaml:"max_alerts_per_group"`
	// QueueSize bounds each integration's queue of notifications waiting
	// to be sent; when it is full, flushing waits (backpressure).
	QueueSize int `yaml:"queue_size"`
	// Timeout bounds one HTTP request to a receiver.
	Timeout time.Duration `yaml:"timeout"`
	// Retry configures the retry stage (sink.Do) of every integration.
	Retry NotifyRetryConfig `yaml:"retry"`
}

// RouteConfig is one node of the routing tree. Unset group_by and timers
// are inherited from the parent, as in Alertmanager.
type RouteConfig struct {
	// Receiver names the receiver of alerts this route takes; children
	// inherit it when they name none.
	Receiver string `yaml:"receiver"`
	// Matchers select the alerts this route takes, in match syntax
	// (`severity=~"high|critical"`, `tag=privileged`). All must match.
	// The root route takes every alert and has none.
	Matchers []string `yaml:"matchers"`
	// Continue lets an alert that matched this route also try the next
	// siblings (otherwise the first matching sibling wins).
	Continue bool `yaml:"continue"`
	// GroupBy are the labels whose values form a group. For one notifier
	// to own a group, it must include cluster and rule_id: the alerts
	// topic is keyed by cluster/rule_id, so only those keep a group's
	// alerts on one partition.
	GroupBy []string `yaml:"group_by"`
	// GroupWait is how long a new group waits for more alerts before its
	// first notification (0: at once).
	GroupWait *time.Duration `yaml:"group_wait"`
	// GroupInterval is the least time between two notifications of one
	// group; alerts arriving meanwhile go into the next one.
	GroupInterval *time.Duration `yaml:"group_interval"`
	// RepeatInterval is how long a group lives without new alerts. kubesift
	// alerts are events that never resolve, so nothing is re-sent; a group
	// idle for this long is closed and the next alert of its key opens a
	// new one (which waits group_wait again).
	RepeatInterval *time.Duration `yaml:"repeat_interval"`
	// ResolveTimeout is how long a group that sent a notification must
	// take no alert (and send nothing) before it is resolved: its
	// integrations with send_resolved get one more notification, marked
	// resolved. A group closed by repeat_interval resolves then at the
	// latest. Default 5m on the root route (DefaultResolveTimeout).
	ResolveTimeout *time.Duration `yaml:"resolve_timeout"`
	// Routes are the child routes, tried in order.
	Routes []RouteConfig `yaml:"routes"`

	matchers []*match.Matcher // compiled by validate
}

// CompiledMatchers returns the route's matchers, compiled once by
// Validate; a route built in code without validation is compiled here.
func (r *RouteConfig) CompiledMatchers() ([]*match.Matcher, error) {
	if r.matchers != nil || len(r.Matchers) == 0 {
		return r.matchers, nil
	}
	ms, err := match.ParseAll(r.Matchers)
	if err != nil {
		return nil, fmt.Errorf("matchers%w", err)
	}
	r.matchers = ms
	return ms, nil
}

// InhibitRuleConfig mutes alerts matching TargetMatchers while an alert
// matching SourceMatchers with the same values of the Equal labels was seen
// within Window of the target's time — e.g. a critical alert on an object
// mutes the medium ones on the same object.
type InhibitRuleConfig struct {
	SourceMatchers []string      `yaml:"source_matchers"`
	TargetMatchers []string      `yaml:"target_matchers"`
	Equal          []string      `yaml:"equal"`
	Window         time.Duration `yaml:"window"`

	source, target []*match.Matcher
}

// Compiled returns the compiled source and target matchers.
func (r *InhibitRuleConfig) Compiled() (source, target []*match.Matcher, err error) {
	if r.source == nil && len(r.SourceMatchers) > 0 {
		if r.source, err = match.ParseAll(r.SourceMatchers); err != nil {
			return nil, nil, fmt.Errorf("source_matchers%w", err)
		}
	}
	if r.target == nil && len(r.TargetMatchers) > 0 {
		if r.target, err = match.ParseAll(r.TargetMatchers); err != nil {
			return nil, nil, fmt.Errorf("target_matchers%w", err)
		}
	}
	return r.source, r.target, nil
}

// ReceiverConfig is a named receiver: every integration it lists gets each
// notification, each with its own queue and retries.
type ReceiverConfig struct {
	Name           string          `yaml:"name"`
	SlackConfigs   []SlackConfig   `yaml:"slack_configs"`
	WebhookConfigs []WebhookConfig `yaml:"webhook_configs"`
	// The on-call integrations (notify_oncall_config.go).
	AlertmanagerConfigs []AlertmanagerConfig `yaml:"alertmanager_configs"`
	PagerDutyConfigs    []PagerDutyConfig    `yaml:"pagerduty_configs"`
	OpsgenieConfigs     []OpsgenieConfig     `yaml:"opsgenie_configs"`
	TeamsConfigs        []TeamsConfig        `yaml:"teams_configs"`
	EmailConfigs        []EmailConfig        `yaml:"email_configs"`
}

// SlackConfig posts Block Kit messages to a Slack incoming webhook. The
// webhook URL is a credential: give it as url_file or url_env (the name of
// an environment variable), or inline as url; it never prints.
type SlackConfig struct {
	URL     Secret `yaml:"url"`
	URLFile string `yaml:"url_file"`
	URLEnv  string `yaml:"url_env"`
	// Channel overrides the webhook's default channel (legacy webhooks).
	Channel string `yaml:"channel"`
	// KibanaURL is the Kibana base URL (https://kibana.example.com); when
	// set, messages link to Discover on the alerts.
	KibanaURL string `yaml:"kibana_url"`
	// KibanaDataView is the Discover data view id for the alerts index;
	// empty uses Kibana's default data view.
	KibanaDataView string `yaml:"kibana_data_view"`
	// MaxAlerts caps the alerts listed in one message (the count shows all).
	MaxAlerts int `yaml:"max_alerts"`
	// SendResolved also posts a "Resolved" message when the group
	// resolves (route resolve_timeout). Off by default.
	SendResolved bool `yaml:"send_resolved"`
}

// Payload formats of a webhook (notify.receivers[].webhook_configs[].format).
const (
	WebhookFormatKubesift     = "kubesift/v1"
	WebhookFormatAlertmanager = "alertmanager"
)

// WebhookConfig posts JSON to a URL, signed with HMAC-SHA256 when a secret
// is set (header X-Kubesift-Signature, see docs/alerting.md).
type WebhookConfig struct {
	URL     Secret `yaml:"url"`
	URLFile string `yaml:"url_file"`
	URLEnv  string `yaml:"url_env"`
	// Secret is the HMAC key; also from secret_file or secret_env.
	Secret     Secret `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// Format is kubesift/v1 (default) or alertmanager (Alertmanager's
	// webhook_config payload, version "4").
	Format string `yaml:"format"`
	// Headers are added to every request (e.g. Authorization); values are
	// secrets.
	Headers map[string]Secret `yaml:"headers"`
	// MaxAlerts caps the alerts in one payload (the rest are counted as
	// truncated, like Alertmanager's truncatedAlerts).
	MaxAlerts int `yaml:"max_alerts"`
	// SendResolved also posts the resolved notification of a group
	// (route resolve_timeout). Off by default.
	SendResolved bool `yaml:"send_resolved"`
}

// SilencesConfig configures the silence store (an Elasticsearch index shared
// by every notifier replica) and the silence HTTP API.
type SilencesConfig struct {
	// Index is the Elasticsearch index holding silences.
	Index string `yaml:"index"`
	// RefreshInterval is how often each notifier re-reads the silences, so
	// one created on another replica applies here within this time.
	RefreshInterval time.Duration    `yaml:"refresh_interval"`
	API             SilenceAPIConfig `yaml:"api"`
}

// SilenceAPIConfig configures the HTTP API of `kubesift silence`.
type SilenceAPIConfig struct {
	// Listen is host:port; empty disables the API.
	Listen string `yaml:"listen"`
	// Token is the bearer token clients present; from token_file or
	// KUBESIFT_SILENCE_API_TOKEN too. Required when the API is enabled.
	Token     Secret `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// TLSCertFile and TLSKeyFile, when set, make the API serve HTTPS with
	// this certificate (re-read when the files change). Without them
	// the bearer token crosses the network in clear text, which the
	// notifier warns about unless it listens on loopback only.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// MaxConnections caps the API's open connections (0: the default,
	// obs.SilenceAPILimits); connections over it are closed at once.
	MaxConnections int `yaml:"max_connections"`
}

// TLS reports whether the API serves HTTPS.
func (a SilenceAPIConfig) TLS() bool { return a.TLSCertFile != "" }

// DeadmanConfig raises an alert (rule_id kubesift-deadman) when a cluster's
// collector has sent nothing for Threshold.
type DeadmanConfig struct {
	Enabled bool `yaml:"enabled"`
	// Threshold is the silence after which a cluster is reported.
	Threshold time.Duration `yaml:"threshold"`
	// Clusters overrides Threshold per cluster name; the clusters listed
	// here are also reported when they never sent anything.
	Clusters map[string]time.Duration `yaml:"clusters"`
	// CheckInterval is how often the last-seen times are checked.
	CheckInterval time.Duration `yaml:"check_interval"`
	// Severity of the deadman alert.
	Severity string `yaml:"severity"`
}

// NotifyRetryConfig configures sink.Do for every integration.
type NotifyRetryConfig struct {
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// GiveUpAfter bounds the retries of one notification; after it the
	// notification is failed (its alerts' delivery state says why).
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

// Configured reports whether alert delivery is configured at all.
func (c *NotifyConfig) Configured() bool {
	return len(c.Receivers) > 0 || c.Route.Receiver != "" || len(c.Route.Routes) > 0
}

// UnmarshalYAML fills the defaults of an inhibit rule before reading it.
func (r *InhibitRuleConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*r = InhibitRuleConfig{Window: time.Hour}
	type plain InhibitRuleConfig
	return unmarshal((*plain)(r))
}

// UnmarshalYAML fills the defaults of a Slack integration before reading it.
func (s *SlackConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*s = SlackConfig{MaxAlerts: 10}
	type plain SlackConfig
	return unmarshal((*plain)(s))
}

// UnmarshalYAML fills the defaults of a webhook integration before reading it.
func (w *WebhookConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*w = WebhookConfig{Format: WebhookFormatKubesift, MaxAlerts: 1000}
	type plain WebhookConfig
	return unmarshal((*plain)(w))
}

// EnvSilenceAPIToken overrides notify.silences.api.token.
const EnvSilenceAPIToken = "KUBESIFT_SILENCE_API_TOKEN"

func durp(d time.Duration) *time.Duration { return &d }

func defaultNotify() NotifyConfig {
	return NotifyConfig{
		Route: RouteConfig{
			GroupBy:        []string{"cluster", "rule_id"},
			GroupWait:      durp(30 * time.Second),
			GroupInterval:  durp(5 * time.Minute),
			RepeatInterval: durp(4 * time.Hour),
			ResolveTimeout: durp(DefaultResolveTimeout),
		},
		Silences: SilencesConfig{
			Index:           "kubesift-silences",
			RefreshInterval: 10 * time.Second,
		},
		Deadman: DeadmanConfig{
			Threshold:     15 * time.Minute,
			CheckInterval: time.Minute,
			Severity:      "high",
		},
		Digest:            defaultDigest(),
		ConsumerGroup:     "kubesift-notify",
		MaxGroups:         10000,
		MaxAlertsPerGroup: 1000,
		QueueSize:         1000,
		Timeout:           10 * time.Second,
		Retry: NotifyRetryConfig{
			InitialBackoff: time.Second,
			MaxBackoff:     time.Minute,
			GiveUpAfter:    time.Hour,
		},
	}
}

// resolveSecrets reads the notify section's secrets: the named environment
// variable wins over the file, the file over the inline value.
func (c *NotifyConfig) resolveSecrets(getenv func(string) string) error {
	var errs []error
	read := func(dst *Secret, env, file, field string) {
		if env != "" {
			if v := getenv(env); v != "" {
				*dst = Secret(v)
				return
			}
		}
		if file == "" {
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is not secret; the content would be, and is never shown.
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return
		}
		*dst = Secret(strings.TrimSpace(string(b)))
	}
	for i := range c.Receivers {
		r := &c.Receivers[i]
		for j := range r.SlackConfigs {
			s := &r.SlackConfigs[j]
			read(&s.URL, s.URLEnv, s.URLFile, fmt.Sprintf("notify.receivers[%d].slack_configs[%d].url_file", i, j))
		}
		for j := range r.WebhookConfigs {
			w := &r.WebhookConfigs[j]
			p := fmt.Sprintf("notify.receivers[%d].webhook_configs[%d].", i, j)
			read(&w.URL, w.URLEnv, w.URLFile, p+"url_file")
			read(&w.Secret, w.SecretEnv, w.SecretFile, p+"secret_file")
		}
		r.resolveOnCallSecrets(i, read)
		r.resolveMailSecrets(i, read)
	}
	a := &c.Silences.API
	read(&a.Token, EnvSilenceAPIToken, a.TokenFile, "notify.silences.api.token_file")
	return errors.Join(errs...)
}

// validate adds problems of the notify section, with full field paths
// ("notify.…"), to v, and compiles every matcher once.
func (c *NotifyConfig) validate(v *validator) {
	names := map[string]bool{}
	for i := range c.Receivers {
		c.Receivers[i].validate(v, fmt.Sprintf("notify.receivers[%d]", i), names)
	}
	// An unconfigured section is valid: `kubesift notify` refuses to run
	// without receivers (Configured), every other command ignores it.
	if len(c.Route.Matchers) > 0 {
		v.add("notify.route.matchers", "the root route takes every alert and has no matchers")
	}
	if c.Route.GroupWait == nil || c.Route.GroupInterval == nil || c.Route.RepeatInterval == nil {
		v.add("notify.route", "group_wait, group_interval and repeat_interval must be set on the root route")
	}
	if c.Configured() {
		c.Route.validate(v, "notify.route", names, false)
	}

	for i := range c.InhibitRules {
		r := &c.InhibitRules[i]
		p := fmt.Sprintf("notify.inhibit_rules[%d]", i)
		var err error
		if len(r.SourceMatchers) == 0 {
			v.add(p+".source_matchers", "at least one matcher is required")
		} else if r.source, err = compileMatchers(r.SourceMatchers); err != nil {
			v.errs = append(v.errs, fmt.Errorf("%s.source_matchers%w", p, err))
		}
		if len(r.TargetMatchers) == 0 {
			v.add(p+".target_matchers", "at least one matcher is required")
		} else if r.target, err = compileMatchers(r.TargetMatchers); err != nil {
			v.errs = append(v.errs, fmt.Errorf("%s.target_matchers%w", p, err))
		}
		labelNames(v, p+".equal", r.Equal)
		if r.Window <= 0 {
			v.add(p+".window", "must be positive")
		}
	}

	s := &c.Silences
	if s.Index == "" || s.Index != strings.ToLower(s.Index) || strings.ContainsAny(s.Index, ` "*\<|,>/?`) {
		v.add("notify.silences.index", "not a valid Elasticsearch index name")
	}
	if s.RefreshInterval <= 0 {
		v.add("notify.silences.refresh_interval", "must be positive")
	}
	if s.API.Listen != "" {
		if _, port, err := net.SplitHostPort(s.API.Listen); err != nil || port == "" {
			v.add("notify.silences.api.listen", "not host:port")
		}
		if s.API.Token == "" {
			v.add("notify.silences.api.token", "required when the API is enabled (token, token_file or "+EnvSilenceAPIToken+")")
		}
	}
	if s.API.MaxConnections < 0 {
		v.add("notify.silences.api.max_connections", "must not be negative (0: the default)")
	}
	switch {
	case s.API.TLSCertFile != "" && s.API.TLSKeyFile == "":
		v.add("notify.silences.api.tls_key_file", "required with tls_cert_file")
	case s.API.TLSKeyFile != "" && s.API.TLSCertFile == "":
		v.add("notify.silences.api.tls_cert_file", "required with tls_key_file")
	}

	d := &c.Deadman
	if d.Enabled {
		if d.Threshold <= 0 {
			v.add("notify.deadman.threshold", "must be positive")
		}
		if d.CheckInterval <= 0 {
			v.add("notify.deadman.check_interval", "must be positive")
		}
	}
	for name, t := range d.Clusters {
		if t <= 0 {
			v.add("notify.deadman.clusters."+name, "must be positive")
		}
	}
	v.oneOf("notify.deadman.severity", d.Severity, "info", "low", "medium", "high", "critical")
	c.Digest.validate(v, names, c.Retry.GiveUpAfter)

	if c.ConsumerGroup == "" {
		v.add("notify.consumer_group", "must not be empty")
	}
	for _, n := range []struct {
		field string
		val   int
	}{{"max_groups", c.MaxGroups}, {"max_alerts_per_group", c.MaxAlertsPerGroup}, {"queue_size", c.QueueSize}} {
		if n.val <= 0 {
			v.add("notify."+n.field, "must be positive")
		}
	}
	for _, d := range []struct {
		field string
		val   time.Duration
	}{{"timeout", c.Timeout}, {"retry.initial_backoff", c.Retry.InitialBackoff},
		{"retry.max_backoff", c.Retry.MaxBackoff}, {"retry.give_up_after", c.Retry.GiveUpAfter}} {
		if d.val <= 0 {
			v.add("notify."+d.field, "must be positive")
		}
	}
}

// compileMatchers parses matchers; the error text starts with the index,
// "[2]: …", so that callers append it to the field path.
func compileMatchers(ss []string) ([]*match.Matcher, error) {
	ms, err := match.ParseAll(ss)
	if err != nil {
		return nil, err
	}
	for i, m := range ms {
		if !match.KnownName(m.Name) {
			return nil, fmt.Errorf("[%d]: label %q is not one of %s", i, m.Name, strings.Join(match.AlertLabelNames, ", "))
		}
	}
	return ms, nil
}

func labelNames(v *validator, field string, names []string) {
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case !match.KnownName(n):
			v.add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("label %q is not one of %s", n, strings.Join(match.AlertLabelNames, ", ")))
		case seen[n]:
			v.add(fmt.Sprintf("%s[%d]", field, i), "duplicate label "+n)
		}
		seen[n] = true
	}
}

func (r *RouteConfig) validate(v *validator, path string, receivers map[string]bool, hasReceiver bool) {
	if r.Receiver != "" {
		hasReceiver = true
		if !receivers[r.Receiver] {
			v.add(path+".receiver", fmt.Sprintf("no receiver named %q in notify.receivers", r.Receiver))
		}
	} else if !hasReceiver {
		v.add(path+".receiver", "required (no parent route names one)")
	}
	if len(r.Matchers) > 0 {
		ms, err := compileMatchers(r.Matchers)
		if err != nil {
			// err is "[i]: …", so the path reads notify.route.routes[1].matchers[0]: …
			v.errs = append(v.errs, fmt.Errorf("%s.matchers%w", path, err))
		} else {
			r.matchers = ms
		}
	}
	labelNames(v, path+".group_by", r.GroupBy)
	if r.GroupWait != nil && *r.GroupWait < 0 {
		v.add(path+".group_wait", "must not be negative")
	}
	if r.GroupInterval != nil && *r.GroupInterval <= 0 {
		v.add(path+".group_interval", "must be positive")
	}
	if r.RepeatInterval != nil && *r.RepeatInterval <= 0 {
		v.add(path+".repeat_interval", "must be positive")
	}
	if r.ResolveTimeout != nil && *r.ResolveTimeout <= 0 {
		v.add(path+".resolve_timeout", "must be positive")
	}
	for i := range r.Routes {
		r.Routes[i].validate(v, fmt.Sprintf("%s.routes[%d]", path, i), receivers, hasReceiver)
	}
}

func (r *ReceiverConfig) validate(v *validator, path string, names map[string]bool) {
	switch {
	case r.Name == "":
		v.add(path+".name", "required")
	case names[r.Name]:
		v.add(path+".name", fmt.Sprintf("duplicate receiver %q", r.Name))
	}
	names[r.Name] = true
	if len(r.SlackConfigs)+len(r.WebhookConfigs)+r.onCallIntegrations()+len(r.TeamsConfigs)+len(r.EmailConfigs) == 0 {
		v.add(path, "needs at least one of slack_configs, webhook_configs, alertmanager_configs, pagerduty_configs, opsgenie_configs, teams_configs, email_configs")
	}
	r.validateOnCall(v, path)
	r.validateMail(v, path)
	for i := range r.SlackConfigs {
		s := &r.SlackConfigs[i]
		p := fmt.Sprintf("%s.slack_configs[%d]", path, i)
		secretURL(v, p, s.URL, s.URLEnv)
		if s.KibanaURL != "" {
			if u, err := url.Parse(s.KibanaURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(p+".kibana_url", "not an http(s) URL")
			}
		}
		if s.MaxAlerts <= 0 {
			v.add(p+".max_alerts", "must be positive")
		}
	}
	for i := range r.WebhookConfigs {
		w := &r.WebhookConfigs[i]
		p := fmt.Sprintf("%s.webhook_configs[%d]", path, i)
		secretURL(v, p, w.URL, w.URLEnv)
		v.oneOf(p+".format", w.Format, WebhookFormatKubesift, WebhookFormatAlertmanager)
		if w.SecretEnv != "" && w.Secret == "" && w.SecretFile == "" {
			v.add(p+".secret_env", fmt.Sprintf("environment variable %s is empty or unset", w.SecretEnv))
		}
		for h := range w.Headers {
			if h == "" || strings.ContainsAny(h, " :\r\n") {
				v.add(p+".headers", fmt.Sprintf("%q is not a header name", h))
			}
		}
		if w.MaxAlerts <= 0 {
			v.add(p+".max_alerts", "must be positive")
		}
	}
}

// secretURL checks a receiver URL without ever showing it: the message says
// what is wrong, never the value.
func secretURL(v *validator, path string, u Secret, env string) {
	if u == "" {
		if env != "" {
			v.add(path+".url_env", fmt.Sprintf("environment variable %s is empty or unset", env))
			return
		}
		v.add(path+".url", "required (url, url_file or url_env)")
		return
	}
	p, err := url.Parse(string(u))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		v.add(path+".url", "not an http(s) URL (value not shown: it is a secret)")
	}
}
