package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// TestBuildReceiversOnCall: every integration of a receiver is built under
// its own name (the integration label of the notify metrics), reports
// resolution as its send_resolved says, and a broken template or TLS file
// stops the start-up naming the field.
func TestBuildReceiversOnCall(t *testing.T) {
	receiver := func() config.ReceiverConfig {
		return config.ReceiverConfig{Name: "oncall",
			SlackConfigs:        []config.SlackConfig{{URL: "https://hooks.example.com/s", SendResolved: true}},
			WebhookConfigs:      []config.WebhookConfig{{URL: "https://hooks.example.com/w"}},
			AlertmanagerConfigs: []config.AlertmanagerConfig{{URLs: []string{"http://am:9093"}, SendResolved: true}, {URLs: []string{"http://am2:9093"}}},
			PagerDutyConfigs:    []config.PagerDutyConfig{{RoutingKey: "k", SendResolved: true}},
			OpsgenieConfigs:     []config.OpsgenieConfig{{APIKey: "k", SendResolved: true}},
		}
	}
	tests := []struct {
		name    string
		mod     func(*config.ReceiverConfig)
		want    string // integration:send_resolved, in order
		wantErr string
	}{
		{name: "all", want: "oncall/slack[0]:true oncall/webhook[0]:false oncall/alertmanager[0]:true oncall/alertmanager[1]:false oncall/pagerduty[0]:true oncall/opsgenie[0]:true"},
		{name: "bad summary", mod: func(r *config.ReceiverConfig) { r.PagerDutyConfigs[0].Summary = "{{ .Count" },
			wantErr: "notify.receivers[0].pagerduty_configs[0]: pagerduty: template summary"},
		{name: "bad description", mod: func(r *config.ReceiverConfig) { r.OpsgenieConfigs[0].Description = "{{ end }}" },
			wantErr: "notify.receivers[0].opsgenie_configs[0]: opsgenie: template description"},
		{name: "missing CA", mod: func(r *config.ReceiverConfig) { r.AlertmanagerConfigs[1].TLS.CAFile = "/nonexistent/ca.pem" },
			wantErr: "notify.receivers[0].alertmanager_configs[1].tls.ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := receiver()
			if tc.mod != nil {
				tc.mod(&r)
			}
			cfg := &config.NotifyConfig{Receivers: []config.ReceiverConfig{r}, Timeout: time.Second}
			got, err := buildReceivers(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, in := range got["oncall"] {
				names = append(names, fmt.Sprintf("%s:%v", in.Name, in.SendResolved))
			}
			if s := strings.Join(names, " "); s != tc.want {
				t.Errorf("integrations\n%s\nwant\n%s", s, tc.want)
			}
		})
	}
}
