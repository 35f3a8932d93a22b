package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/match"
)

const notifyBase = `
notify:
  receivers:
    - name: sec
      slack_configs:
        - url: https://hooks.slack.com/services/T0/B0/SECRETPATH
          kibana_url: https://kibana.example.com
    - name: hook
      webhook_configs:
        - url_env: HOOK_URL
          secret_file: %SECRET%
  route:
    receiver: sec
    routes:
      - matchers: ['severity=~"high|critical"', 'tag=privileged']
        group_wait: 0s
        continue: true
      - receiver: hook
        matchers: ['cluster!~"dev-.*"']
        group_by: [cluster, rule_id, namespace]
  inhibit_rules:
    - source_matchers: [severity=critical]
      target_matchers: [severity=medium]
      equal: [cluster, namespace, resource, name]
  silences:
    api:
      listen: 127.0.0.1:9095
      token: tok
`

func parseNotify(t *testing.T, y string, env map[string]string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	sec := filepath.Join(dir, "hmac")
	if err := os.WriteFile(sec, []byte("hmac-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y = strings.ReplaceAll(y, "%SECRET%", sec)
	return Parse([]byte(y), "k.yaml", func(k string) string { return env[k] })
}

func TestNotifyConfigParses(t *testing.T) {
	c, err := parseNotify(t, notifyBase, map[string]string{"HOOK_URL": "https://hooks.example.com/x?token=t"})
	if err != nil {
		t.Fatal(err)
	}
	n := &c.Notify
	if !n.Configured() {
		t.Fatal("not configured")
	}
	// Defaults of the root route; children leave timers unset (inherited).
	if *n.Route.GroupWait != 30*time.Second || *n.Route.GroupInterval != 5*time.Minute || *n.Route.RepeatInterval != 4*time.Hour {
		t.Errorf("root timers: %v %v %v", *n.Route.GroupWait, *n.Route.GroupInterval, *n.Route.RepeatInterval)
	}
	if got := strings.Join(n.Route.GroupBy, ","); got != "cluster,rule_id" {
		t.Errorf("root group_by = %s", got)
	}
	r0, r1 := &n.Route.Routes[0], &n.Route.Routes[1]
	if r0.GroupWait == nil || *r0.GroupWait != 0 || r0.GroupInterval != nil || !r0.Continue {
		t.Errorf("routes[0]: %+v", r0)
	}
	ms, err := r0.CompiledMatchers()
	if err != nil || len(ms) != 2 {
		t.Fatalf("routes[0] matchers: %v %v", ms, err)
	}
	if !match.All(ms, match.Labels{"severity": {"critical"}, "tag": {"workload", "privileged"}}) {
		t.Error("routes[0] does not match a critical privileged alert")
	}
	if m, _ := r1.CompiledMatchers(); len(m) != 1 || m[0].Op != match.NotRegexp {
		t.Errorf("routes[1] matchers: %v", m)
	}
	// Defaults of list items come from their UnmarshalYAML.
	w := n.Receivers[1].WebhookConfigs[0]
	if w.Format != WebhookFormatKubesift || w.MaxAlerts != 1000 || w.URL != "https://hooks.example.com/x?token=t" || w.Secret != "hmac-key" {
		t.Errorf("webhook: format %q max %d url-set %v secret-set %v", w.Format, w.MaxAlerts, w.URL != "", w.Secret != "")
	}
	if s := n.Receivers[0].SlackConfigs[0]; s.MaxAlerts != 10 {
		t.Errorf("slack max_alerts = %d", s.MaxAlerts)
	}
	if ir := n.InhibitRules[0]; ir.Window != time.Hour {
		t.Errorf("inhibit window = %v", ir.Window)
	}
	src, tgt, err := n.InhibitRules[0].Compiled()
	if err != nil || len(src) != 1 || len(tgt) != 1 {
		t.Errorf("inhibit compiled: %v %v %v", src, tgt, err)
	}
	// Nothing secret prints.
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"SECRETPATH", "token=t", "hmac-key", "tok\n"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed config contains %q", secret)
		}
	}
	// And what prints parses back.
	if _, err := Parse(out, "printed", func(string) string { return "" }); err != nil && !strings.Contains(err.Error(), "url") {
		t.Errorf("printed config does not parse back: %v", err)
	}
}

func TestNotifyConfigErrorsNameTheField(t *testing.T) {
	env := map[string]string{"HOOK_URL": "https://h.example.com/"}
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad matcher", `'tag=privileged'`, `'tag=~"("'`, "notify.route.routes[0].matchers[1]: label tag: invalid regular expression"},
		{"unknown label", `'cluster!~"dev-.*"'`, `'clutser!~"dev-.*"'`, `notify.route.routes[1].matchers[0]: label "clutser" is not one of`},
		{"unknown receiver", "receiver: hook", "receiver: nobody", `notify.route.routes[1].receiver: no receiver named "nobody"`},
		{"bad group_by", "[cluster, rule_id, namespace]", "[cluster, rule]", `notify.route.routes[1].group_by[1]: label "rule" is not one of`},
		{"negative wait", "group_wait: 0s", "group_wait: -1s", "notify.route.routes[0].group_wait: must not be negative"},
		{"unknown key", "continue: true", "contine: true", `contine: unknown key (did you mean "continue"?)`},
		{"bad format", "url_env: HOOK_URL", "url_env: HOOK_URL\n          format: pagerduty", `notify.receivers[1].webhook_configs[0].format: "pagerduty" is not one of`},
		{"bad slack url", "https://hooks.slack.com/services/T0/B0/SECRETPATH", "ftp://hooks.slack.com/SECRETPATH", "notify.receivers[0].slack_configs[0].url: not an http(s) URL"},
		{"unset url env", "url_env: HOOK_URL", "url_env: NOPE_URL", "notify.receivers[1].webhook_configs[0].url_env: environment variable NOPE_URL is empty or unset"},
		{"bad inhibit", "[severity=medium]", "[severity=medium, bogus]", "notify.inhibit_rules[0].target_matchers[1]: matcher \"bogus\""},
		{"bad equal", "equal: [cluster, namespace, resource, name]", "equal: [cluster, cluster]", "notify.inhibit_rules[0].equal[1]: duplicate label cluster"},
		{"api without token", "      token: tok\n", "", "notify.silences.api.token: required"},
		{"api cert without key", "      token: tok\n", "      token: tok\n      tls_cert_file: /etc/tls/tls.crt\n", "notify.silences.api.tls_key_file: required with tls_cert_file"},
		{"api key without cert", "      token: tok\n", "      token: tok\n      tls_key_file: /etc/tls/tls.key\n", "notify.silences.api.tls_cert_file: required with tls_key_file"},
		{"bad kibana", "kibana_url: https://kibana.example.com", "kibana_url: kibana", "notify.receivers[0].slack_configs[0].kibana_url: not an http(s) URL"},
		{"root matchers", "    receiver: sec\n", "    receiver: sec\n    matchers: [severity=low]\n", "notify.route.matchers: the root route takes every alert"},
		{"duplicate receiver", "- name: hook", "- name: sec", `notify.receivers[1].name: duplicate receiver "sec"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := notifyBase
			if !strings.Contains(y, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			y = strings.Replace(y, tc.from, tc.to, 1)
			_, err := parseNotify(t, y, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRETPATH") {
				t.Errorf("error shows the secret URL: %v", err)
			}
		})
	}
}

func TestNotifyUnconfiguredIsValid(t *testing.T) {
	c, err := Parse(nil, "empty", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Notify.Configured() {
		t.Error("empty config says notify is configured")
	}
}

func TestNotifySecretPrecedence(t *testing.T) {
	// The named environment variable wins over the file, the file over the
	// inline value.
	y := strings.Replace(notifyBase, "url_env: HOOK_URL", "url: https://inline.example.com/\n          url_env: HOOK_URL", 1)
	c, err := parseNotify(t, y, map[string]string{"HOOK_URL": "https://env.example.com/", EnvSilenceAPIToken: "envtok"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Notify.Receivers[1].WebhookConfigs[0].URL; got != "https://env.example.com/" {
		t.Errorf("url: env did not win")
	}
	if c.Notify.Silences.API.Token != "envtok" {
		t.Errorf("api token: env did not win")
	}
	c, err = parseNotify(t, y, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Notify.Receivers[1].WebhookConfigs[0].URL; got != "https://inline.example.com/" {
		t.Errorf("url: inline value lost without env")
	}
}
