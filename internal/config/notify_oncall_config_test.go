package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const onCallBase = `
notify:
  receivers:
    - name: oncall
      alertmanager_configs:
        - urls: [http://am-0:9093, http://am-1:9093/prefix]
          bearer_token_file: %TOKEN%
          tls: {ca_file: /etc/ca.pem}
      pagerduty_configs:
        - routing_key_env: PD_KEY
          severity: {high: critical}
          source: kubesift-prod
      opsgenie_configs:
        - api_key: OG-INLINE-SECRET
          priority: {medium: P2}
          responders: [{name: security, type: team}]
          tags: [kubesift]
  route:
    receiver: oncall
    resolve_timeout: 10m
`

func parseOnCall(t *testing.T, y string, env map[string]string) (*Config, error) {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("AM-FILE-SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Parse([]byte(strings.ReplaceAll(y, "%TOKEN%", tok)), "k.yaml", func(k string) string { return env[k] })
}

func TestOnCallConfigParses(t *testing.T) {
	c, err := parseOnCall(t, onCallBase, map[string]string{"PD_KEY": "PD-ENV-SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Notify.Receivers[0]
	a, p, o := r.AlertmanagerConfigs[0], r.PagerDutyConfigs[0], r.OpsgenieConfigs[0]
	// Defaults of the list items: resolution reported, Alertmanager's
	// alerts end after 5m, the services' public endpoints.
	if !a.SendResolved || a.EndAfter != 5*time.Minute || a.BearerToken != "AM-FILE-SECRET" || a.TLS.CAFile != "/etc/ca.pem" {
		t.Errorf("alertmanager: %+v", a)
	}
	if !p.SendResolved || p.URL != DefaultPagerDutyURL || p.RoutingKey != "PD-ENV-SECRET" || p.Severity["high"] != "critical" {
		t.Errorf("pagerduty: %+v", p)
	}
	if !o.SendResolved || o.APIURL != DefaultOpsgenieURL || o.APIKey != "OG-INLINE-SECRET" || o.Responders[0].Name != "security" {
		t.Errorf("opsgenie: %+v", o)
	}
	if got := *c.Notify.Route.ResolveTimeout; got != 10*time.Minute {
		t.Errorf("resolve_timeout = %v", got)
	}
	if m := SeverityMap(DefaultOpsgeniePriority, o.Priority); m["medium"] != "P2" || m["critical"] != "P1" {
		t.Errorf("priority mapping %v", m)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"AM-FILE-SECRET", "PD-ENV-SECRET", "OG-INLINE-SECRET"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed config contains %q", secret)
		}
	}
	// Slack and webhooks keep not reporting resolution; the root route
	// resolves after 5m unless told otherwise.
	d, err := Parse([]byte("notify:\n  receivers: [{name: s, slack_configs: [{url: 'https://h.example.com/x'}], webhook_configs: [{url: 'https://h.example.com/y'}]}]\n  route: {receiver: s}\n"), "k", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if s, w := d.Notify.Receivers[0].SlackConfigs[0], d.Notify.Receivers[0].WebhookConfigs[0]; s.SendResolved || w.SendResolved {
		t.Error("slack or webhook reports resolution by default")
	}
	if got := *d.Notify.Route.ResolveTimeout; got != DefaultResolveTimeout {
		t.Errorf("default resolve_timeout = %v", got)
	}
}

func TestOnCallConfigErrorsNameTheField(t *testing.T) {
	env := map[string]string{"PD_KEY": "PD-ENV-SECRET"}
	const p = "notify.receivers[0]."
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad am url", "http://am-0:9093,", "am-0:9093,", p + "alertmanager_configs[0].urls[0]: not an http(s) URL"},
		{"no am urls", "urls: [http://am-0:9093, http://am-1:9093/prefix]", "urls: []", p + "alertmanager_configs[0].urls: at least one"},
		{"token and basic auth", "tls: {ca_file: /etc/ca.pem}", "basic_auth: {username: u, password: pw}", p + "alertmanager_configs[0].basic_auth: cannot be combined with bearer_token"},
		{"cert without key", "tls: {ca_file: /etc/ca.pem}", "tls: {cert_file: /c.pem}", p + "alertmanager_configs[0].tls: cert_file and key_file go together"},
		{"end_after", "tls: {ca_file: /etc/ca.pem}", "end_after: 0s", p + "alertmanager_configs[0].end_after: must be positive"},
		{"unset routing key env", "routing_key_env: PD_KEY", "routing_key_env: NOPE", p + "pagerduty_configs[0].routing_key_env: environment variable NOPE is empty or unset"},
		{"no routing key", "routing_key_env: PD_KEY", "component: x", p + "pagerduty_configs[0].routing_key: required"},
		{"bad pd severity", "{high: critical}", "{high: urgent}", p + `pagerduty_configs[0].severity.high: "urgent" is not one of critical, error, warning, info`},
		{"bad pd severity key", "{high: critical}", "{urgent: critical}", p + "pagerduty_configs[0].severity.urgent (key)"},
		{"no api key", "api_key: OG-INLINE-SECRET", "api_key: ''", p + "opsgenie_configs[0].api_key: required"},
		{"bad priority", "{medium: P2}", "{medium: P9}", p + `opsgenie_configs[0].priority.medium: "P9" is not one of`},
		{"bad responder", "{name: security, type: team}", "{name: security, id: x, type: squad}", p + "opsgenie_configs[0].responders[0].type"},
		{"responder names", "{name: security, type: team}", "{name: security, id: x, type: team}", p + "opsgenie_configs[0].responders[0]: needs exactly one of id, name, username"},
		{"long tag", "tags: [kubesift]", "tags: [" + strings.Repeat("t", 51) + "]", p + "opsgenie_configs[0].tags[0]: must be 1 to 50 characters"},
		{"bad api url", "api_key: OG-INLINE-SECRET", "api_key: OG-INLINE-SECRET\n          api_url: opsgenie", p + "opsgenie_configs[0].api_url: not an http(s) URL"},
		{"resolve_timeout", "resolve_timeout: 10m", "resolve_timeout: 0s", "notify.route.resolve_timeout: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(onCallBase, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			_, err := parseOnCall(t, strings.Replace(onCallBase, tc.from, tc.to, 1), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			for _, s := range []string{"AM-FILE-SECRET", "PD-ENV-SECRET", "OG-INLINE-SECRET"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}
