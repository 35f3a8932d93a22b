package pipeline

import (
	"fmt"
	"net/http"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/notify"
)

// buildOnCall builds receiver i's Alertmanager, PagerDuty and Opsgenie
// integrations ("security/pagerduty[0]"), each parsing its templates now so
// that a broken one stops the start-up. They report resolution when their
// send_resolved says so.
func buildOnCall(cfg *config.NotifyConfig, i int, r config.ReceiverConfig) ([]notify.Integration, error) {
	var out []notify.Integration
	// PagerDuty and Opsgenie are public services: the system's CAs.
	client := &http.Client{Timeout: cfg.Timeout}
	for j, ac := range r.AlertmanagerConfigs {
		field := fmt.Sprintf("notify.receivers[%d].alertmanager_configs[%d]", i, j)
		timeout := ac.Timeout
		if timeout <= 0 {
			timeout = cfg.Timeout
		}
		amClient, err := notify.NewHTTPClient(timeout, ac.TLS, field+".tls")
		if err != nil {
			return nil, err
		}
		a, err := notify.NewAlertmanager(ac, amClient)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, notify.Integration{Name: fmt.Sprintf("%s/alertmanager[%d]", r.Name, j), Notifier: a, SendResolved: ac.SendResolved})
	}
	for j, pc := range r.PagerDutyConfigs {
		p, err := notify.NewPagerDuty(pc, client)
		if err != nil {
			return nil, fmt.Errorf("notify.receivers[%d].pagerduty_configs[%d]: %w", i, j, err)
		}
		out = append(out, notify.Integration{Name: fmt.Sprintf("%s/pagerduty[%d]", r.Name, j), Notifier: p, SendResolved: pc.SendResolved})
	}
	for j, oc := range r.OpsgenieConfigs {
		o, err := notify.NewOpsgenie(oc, client)
		if err != nil {
			return nil, fmt.Errorf("notify.receivers[%d].opsgenie_configs[%d]: %w", i, j, err)
		}
		out = append(out, notify.Integration{Name: fmt.Sprintf("%s/opsgenie[%d]", r.Name, j), Notifier: o, SendResolved: oc.SendResolved})
	}
	return out, nil
}
