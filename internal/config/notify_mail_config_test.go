package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const notifyMailBase = `
notify:
  receivers:
    - name: sec
      teams_configs:
        - url_env: TEAMS_URL
          kibana_url: https://kibana.example.com
      email_configs:
        - to: [sec@example.com, "Ops <ops@example.com>"]
          from: kubesift <alerts@example.com>
          smarthost: smtp.example.com:587
          auth_username: kubesift
          auth_password_file: %PASSWORD%
          headers: {X-Team: security}
  route:
    receiver: sec
`

func parseMail(t *testing.T, y string, env map[string]string) (*Config, error) {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pw, []byte("smtp-SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Parse([]byte(strings.ReplaceAll(y, "%PASSWORD%", pw)), "k.yaml", func(k string) string { return env[k] })
}

func TestNotifyMailConfigParses(t *testing.T) {
	c, err := parseMail(t, notifyMailBase, map[string]string{"TEAMS_URL": "https://prod.example.com/workflows/x?sig=SIGSECRET"})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Notify.Receivers[0]
	tm, e := r.TeamsConfigs[0], r.EmailConfigs[0]
	if tm.URL != "https://prod.example.com/workflows/x?sig=SIGSECRET" || tm.MaxAlerts != 20 || tm.SendResolved {
		t.Errorf("teams: url-set %v max %d send_resolved %v", tm.URL != "", tm.MaxAlerts, tm.SendResolved)
	}
	if e.AuthPassword != "smtp-SECRET" || !e.RequireTLS || e.SendResolved || len(e.To) != 2 {
		t.Errorf("email: password-set %v require_tls %v send_resolved %v to %v", e.AuthPassword != "", e.RequireTLS, e.SendResolved, e.To)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"SIGSECRET", "smtp-SECRET"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed config contains %q", secret)
		}
	}
}

func TestNotifyMailConfigErrorsNameTheField(t *testing.T) {
	env := map[string]string{"TEAMS_URL": "https://prod.example.com/workflows/x?sig=SIGSECRET"}
	const p = "notify.receivers[0]."
	for _, tc := range []struct{ name, from, to, want string }{
		{"teams url env unset", "url_env: TEAMS_URL", "url_env: NOPE", p + "teams_configs[0].url_env: environment variable NOPE is empty or unset"},
		{"teams bad url", "url_env: TEAMS_URL", "url: ftp://x/SIGSECRET", p + "teams_configs[0].url: not an http(s) URL"},
		{"teams bad kibana", "kibana_url: https://kibana.example.com", "kibana_url: kibana", p + "teams_configs[0].kibana_url: not an http(s) URL"},
		{"teams max_alerts", "kibana_url: https://kibana.example.com", "max_alerts: 0", p + "teams_configs[0].max_alerts: must be positive"},
		{"no recipient", `to: [sec@example.com, "Ops <ops@example.com>"]`, "to: []", p + "email_configs[0].to: at least one recipient"},
		{"bad recipient", `"Ops <ops@example.com>"`, `"Ops <ops@"`, p + "email_configs[0].to[1]: not an e-mail address"},
		{"bad from", "from: kubesift <alerts@example.com>", "from: kubesift", p + "email_configs[0].from: not an e-mail address"},
		{"no port", "smarthost: smtp.example.com:587", "smarthost: smtp.example.com", p + "email_configs[0].smarthost: not host:port"},
		{"password env unset", "auth_password_file: %PASSWORD%", "auth_password_env: NOPE", p + "email_configs[0].auth_password_env: environment variable NOPE is empty or unset"},
		{"password without user", "auth_username: kubesift", "hello: mx.example.com", p + "email_configs[0].auth_username: required with a password"},
		{"reserved header", "X-Team: security", "Subject: hi", p + "email_configs[0].headers.Subject: set by kubesift itself"},
		{"header line break", "X-Team: security", `X-Team: "a\r\nBcc: x@example.com"`, p + "email_configs[0].headers.X-Team: a header value may not contain a line break"},
		{"bad hello", "auth_username: kubesift", "auth_username: kubesift\n          hello: \"a b\"", p + "email_configs[0].hello: must be a single host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(notifyMailBase, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			_, err := parseMail(t, strings.Replace(notifyMailBase, tc.from, tc.to, 1), env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			for _, secret := range []string{"SIGSECRET", "smtp-SECRET"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}
