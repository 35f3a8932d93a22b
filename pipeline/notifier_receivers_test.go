package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// TestBuildReceiversTeamsAndEmail: Teams and e-mail integrations are built
// under names that show no URL or address, and a template that does not
// parse stops the build with the field's path.
func TestBuildReceiversTeamsAndEmail(t *testing.T) {
	cfg := func() *config.NotifyConfig {
		return &config.NotifyConfig{Timeout: time.Second, Receivers: []config.ReceiverConfig{{Name: "sec",
			TeamsConfigs: []config.TeamsConfig{{URL: "https://flows.example.com/wf?sig=SIGSECRET", MaxAlerts: 5}},
			EmailConfigs: []config.EmailConfig{{To: []string{"secops@example.com"}, From: "kubesift <alerts@example.com>",
				Smarthost: "smtp.example.com:587", RequireTLS: true}},
		}}}
	}
	out, err := buildReceivers(cfg())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range out["sec"] {
		names = append(names, in.Name)
	}
	if got := strings.Join(names, ","); got != "sec/teams[0],sec/email[0]" {
		t.Errorf("integrations %s", got)
	}
	for _, tc := range []struct {
		name string
		set  func(*config.NotifyConfig)
		want string
	}{
		{"teams title", func(c *config.NotifyConfig) { c.Receivers[0].TeamsConfigs[0].Title = "{{ .Count " },
			"notify.receivers[0].teams_configs[0]: template teams title"},
		{"email html", func(c *config.NotifyConfig) { c.Receivers[0].EmailConfigs[0].HTML = "{{ end }}" },
			"notify.receivers[0].email_configs[0]: template email html"},
	} {
		c := cfg()
		tc.set(c)
		if _, err := buildReceivers(c); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "SIGSECRET") {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}
