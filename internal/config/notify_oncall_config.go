package config

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The integrations that hand alerts to an on-call system: Alertmanager,
// PagerDuty and Opsgenie (notify.receivers[].*_configs). Unlike Slack and
// webhooks they track an alert's life, so they report resolution by
// default (send_resolved: true; see RouteConfig.ResolveTimeout).

// DefaultResolveTimeout is the root route's resolve_timeout: how long a
// group that sent a notification must stay idle before it is reported
// resolved — Alertmanager's default resolve_timeout.
const DefaultResolveTimeout = 5 * time.Minute

// AlertmanagerConfig posts alerts to Prometheus Alertmanager's API
// (POST /api/v2/alerts) on every URL, as Prometheus does with an HA pair.
type AlertmanagerConfig struct {
	// URLs are the Alertmanagers' base URLs (with a --web.route-prefix if
	// one is set), e.g. http://alertmanager:9093.
	URLs []string `yaml:"urls"`
	// Timeout bounds one request; 0 uses notify.timeout.
	Timeout time.Duration `yaml:"timeout"`
	// BearerToken is sent as "Authorization: Bearer"; also from
	// bearer_token_file or bearer_token_env. Not with basic_auth.
	BearerToken     Secret            `yaml:"bearer_token"`
	BearerTokenFile string            `yaml:"bearer_token_file"`
	BearerTokenEnv  string            `yaml:"bearer_token_env"`
	BasicAuth       *BasicAuthConfig  `yaml:"basic_auth"`
	TLS             ReceiverTLSConfig `yaml:"tls"`
	// SendResolved posts the group's alerts again with endsAt = now when
	// the group resolves.
	SendResolved bool `yaml:"send_resolved"`
	// EndAfter sets endsAt to end_after after the later of the alert's
	// time and the time of sending, so an alert — a one-off event —
	// resolves in Alertmanager by itself, and one delivered late still
	// arrives firing.
	EndAfter time.Duration `yaml:"end_after"`
	// KibanaURL and KibanaDataView make each alert's generatorURL a
	// Kibana Discover link (see SlackConfig); empty leaves it empty.
	KibanaURL      string `yaml:"kibana_url"`
	KibanaDataView string `yaml:"kibana_data_view"`
}

// BasicAuthConfig is HTTP basic authentication; the password is a secret,
// also from password_file.
type BasicAuthConfig struct {
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// ReceiverTLSConfig configures the TLS client of an HTTPS receiver: a
// private CA, a client certificate, or (test set-ups only) no verification.
type ReceiverTLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDutyConfig sends PagerDuty Events API v2 events: a trigger per
// notification, a resolve when the group resolves, both with one dedup_key
// per receiver and group.
type PagerDutyConfig struct {
	// RoutingKey is the integration key of a PagerDuty service; also from
	// routing_key_file or routing_key_env. It never prints.
	RoutingKey     Secret `yaml:"routing_key"`
	RoutingKeyFile string `yaml:"routing_key_file"`
	RoutingKeyEnv  string `yaml:"routing_key_env"`
	URL            string `yaml:"url"`
	// Severity maps kubesift severities to PagerDuty's (critical, error,
	// warning, info); unset keys keep the default mapping.
	Severity map[string]string `yaml:"severity"`
	// Source, Component, Group and Class fill the event payload's fields
	// of the same name; an empty source is the alert's cluster.
	Source    string `yaml:"source"`
	Component string `yaml:"component"`
	Group     string `yaml:"group"`
	Class     string `yaml:"class"`
	// Client and ClientURL name the monitoring client in the incident.
	Client    string `yaml:"client"`
	ClientURL string `yaml:"client_url"`
	// Summary is a template (sink/notify TemplateData) for payload.summary;
	// empty uses the default. Cut to 1024 characters.
	Summary      string `yaml:"summary"`
	SendResolved bool   `yaml:"send_resolved"`
}

// DefaultPagerDutySeverity maps kubesift severities to PagerDuty's.
var DefaultPagerDutySeverity = map[string]string{
	"critical": "critical", "high": "error", "medium": "warning", "low": "info", "info": "info",
}

// DefaultOpsgenieURL is Opsgenie's API (EU accounts use https://api.eu.opsgenie.com/).
const DefaultOpsgenieURL = "https://api.opsgenie.com/"

// OpsgenieConfig creates Opsgenie alerts (POST /v2/alerts) and closes them
// when the group resolves, identified by an alias per receiver and group.
type OpsgenieConfig struct {
	// APIKey is an API integration's key; also from api_key_file or
	// api_key_env. It never prints.
	APIKey     Secret `yaml:"api_key"`
	APIKeyFile string `yaml:"api_key_file"`
	APIKeyEnv  string `yaml:"api_key_env"`
	APIURL     string `yaml:"api_url"`
	// Message (cut to 130 characters) and Description (15000) are
	// templates (sink/notify TemplateData); empty uses the defaults.
	Message     string `yaml:"message"`
	Description string `yaml:"description"`
	// Priority maps kubesift severities to P1…P5; unset keys keep the
	// default mapping.
	Priority   map[string]string   `yaml:"priority"`
	Responders []OpsgenieResponder `yaml:"responders"`
	Tags       []string            `yaml:"tags"`
	Entity     string              `yaml:"entity"`
	Source     string              `yaml:"source"`
	// SendResolved closes the alert when the group resolves.
	SendResolved bool `yaml:"send_resolved"`
}

// OpsgenieResponder is a team, user, escalation or schedule, named by
// exactly one of id, name (teams, escalations, schedules) or username.
type OpsgenieResponder struct {
	ID       string `yaml:"id" json:"id,omitempty"`
	Name     string `yaml:"name" json:"name,omitempty"`
	Username string `yaml:"username" json:"username,omitempty"`
	Type     string `yaml:"type" json:"type"`
}

// DefaultOpsgeniePriority maps kubesift severities to Opsgenie priorities.
var DefaultOpsgeniePriority = map[string]string{
	"critical": "P1", "high": "P2", "medium": "P3", "low": "P4", "info": "P5",
}

// UnmarshalYAML fills the defaults of an Alertmanager integration.
func (a *AlertmanagerConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*a = AlertmanagerConfig{SendResolved: true, EndAfter: 5 * time.Minute}
	type plain AlertmanagerConfig
	return unmarshal((*plain)(a))
}

// UnmarshalYAML fills the defaults of a PagerDuty integration.
func (p *PagerDutyConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*p = PagerDutyConfig{URL: DefaultPagerDutyURL, SendResolved: true}
	type plain PagerDutyConfig
	return unmarshal((*plain)(p))
}

// UnmarshalYAML fills the defaults of an Opsgenie integration.
func (o *OpsgenieConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*o = OpsgenieConfig{APIURL: DefaultOpsgenieURL, SendResolved: true}
	type plain OpsgenieConfig
	return unmarshal((*plain)(o))
}

// SeverityMap returns the default mapping with the configured entries
// over it.
func SeverityMap(defaults, configured map[string]string) map[string]string {
	out := make(map[string]string, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range configured {
		out[k] = v
	}
	return out
}

// resolveOnCallSecrets reads the secrets of receiver i's on-call
// integrations with read (see NotifyConfig.resolveSecrets).
func (r *ReceiverConfig) resolveOnCallSecrets(i int, read func(dst *Secret, env, file, field string)) {
	for j := range r.AlertmanagerConfigs {
		a := &r.AlertmanagerConfigs[j]
		p := fmt.Sprintf("notify.receivers[%d].alertmanager_configs[%d].", i, j)
		read(&a.BearerToken, a.BearerTokenEnv, a.BearerTokenFile, p+"bearer_token_file")
		if a.BasicAuth != nil {
			read(&a.BasicAuth.Password, "", a.BasicAuth.PasswordFile, p+"basic_auth.password_file")
		}
	}
	for j := range r.PagerDutyConfigs {
		c := &r.PagerDutyConfigs[j]
		read(&c.RoutingKey, c.RoutingKeyEnv, c.RoutingKeyFile, fmt.Sprintf("notify.receivers[%d].pagerduty_configs[%d].routing_key_file", i, j))
	}
	for j := range r.OpsgenieConfigs {
		c := &r.OpsgenieConfigs[j]
		read(&c.APIKey, c.APIKeyEnv, c.APIKeyFile, fmt.Sprintf("notify.receivers[%d].opsgenie_configs[%d].api_key_file", i, j))
	}
}

// onCallIntegrations counts receiver r's on-call integrations.
func (r *ReceiverConfig) onCallIntegrations() int {
	return len(r.AlertmanagerConfigs) + len(r.PagerDutyConfigs) + len(r.OpsgenieConfigs)
}

// validateOnCall adds the problems of r's on-call integrations; path is
// the receiver's ("notify.receivers[0]"). Secrets are checked for presence,
// never shown.
func (r *ReceiverConfig) validateOnCall(v *validator, path string) {
	for i := range r.AlertmanagerConfigs {
		r.AlertmanagerConfigs[i].validate(v, fmt.Sprintf("%s.alertmanager_configs[%d]", path, i))
	}
	for i := range r.PagerDutyConfigs {
		c := &r.PagerDutyConfigs[i]
		p := fmt.Sprintf("%s.pagerduty_configs[%d]", path, i)
		requiredSecret(v, p+".routing_key", c.RoutingKey, c.RoutingKeyEnv)
		httpURL(v, p+".url", c.URL, true)
		httpURL(v, p+".client_url", c.ClientURL, false)
		mapping(v, p+".severity", c.Severity, "critical", "error", "warning", "info")
	}
	for i := range r.OpsgenieConfigs {
		c := &r.OpsgenieConfigs[i]
		p := fmt.Sprintf("%s.opsgenie_configs[%d]", path, i)
		requiredSecret(v, p+".api_key", c.APIKey, c.APIKeyEnv)
		httpURL(v, p+".api_url", c.APIURL, true)
		mapping(v, p+".priority", c.Priority, "P1", "P2", "P3", "P4", "P5")
		for j, rs := range c.Responders {
			rp := fmt.Sprintf("%s.responders[%d]", p, j)
			v.oneOf(rp+".type", rs.Type, "team", "teams", "user", "escalation", "schedule")
			if n := btoi(rs.ID != "") + btoi(rs.Name != "") + btoi(rs.Username != ""); n != 1 {
				v.add(rp, "needs exactly one of id, name, username")
			}
		}
		// Opsgenie's limits: at most 20 tags of at most 50 characters.
		if len(c.Tags) > 20 {
			v.add(p+".tags", "at most 20 tags (Opsgenie's limit)")
		}
		for j, t := range c.Tags {
			if t == "" || len([]rune(t)) > 50 {
				v.add(fmt.Sprintf("%s.tags[%d]", p, j), "must be 1 to 50 characters (Opsgenie's limit)")
			}
		}
		if len([]rune(c.Entity)) > 512 {
			v.add(p+".entity", "at most 512 characters (Opsgenie's limit)")
		}
		if len([]rune(c.Source)) > 100 {
			v.add(p+".source", "at most 100 characters (Opsgenie's limit)")
		}
	}
}

func (a *AlertmanagerConfig) validate(v *validator, p string) {
	if len(a.URLs) == 0 {
		v.add(p+".urls", "at least one Alertmanager URL is required")
	}
	for i, u := range a.URLs {
		httpURL(v, fmt.Sprintf("%s.urls[%d]", p, i), u, true)
	}
	if a.Timeout < 0 {
		v.add(p+".timeout", "must not be negative (0: notify.timeout)")
	}
	if a.EndAfter <= 0 {
		v.add(p+".end_after", "must be positive")
	}
	if a.BearerTokenEnv != "" && a.BearerToken == "" && a.BearerTokenFile == "" {
		v.add(p+".bearer_token_env", fmt.Sprintf("environment variable %s is empty or unset", a.BearerTokenEnv))
	}
	if b := a.BasicAuth; b != nil {
		if a.BearerToken != "" {
			v.add(p+".basic_auth", "cannot be combined with bearer_token")
		}
		if b.Username == "" {
			v.add(p+".basic_auth.username", "required")
		}
	}
	httpURL(v, p+".kibana_url", a.KibanaURL, false)
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		v.add(p+".tls", "cert_file and key_file go together")
	}
}

// requiredSecret checks that a key was given, without showing it.
func requiredSecret(v *validator, field string, s Secret, env string) {
	if s != "" {
		return
	}
	if env != "" {
		v.add(field+"_env", fmt.Sprintf("environment variable %s is empty or unset", env))
		return
	}
	v.add(field, fmt.Sprintf("required (%[1]s, %[1]s_file or %[1]s_env)", field[strings.LastIndex(field, ".")+1:]))
}

// httpURL checks an http(s) URL that is not secret; empty is an error only
// when required.
func httpURL(v *validator, field, s string, required bool) {
	if s == "" {
		if required {
			v.add(field, "required")
		}
		return
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(field, "not an http(s) URL")
	}
}

// mapping checks a severity mapping: keys are kubesift severities, values
// one of allowed.
func mapping(v *validator, field string, m map[string]string, allowed ...string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.oneOf(field+"."+k+" (key)", k, "info", "low", "medium", "high", "critical")
		v.oneOf(field+"."+k, m[k], allowed...)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
