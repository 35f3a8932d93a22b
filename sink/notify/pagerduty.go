package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// PagerDuty sends Events API v2 events: a trigger for each notification of
// a group and a resolve when the group resolves, all with the group's
// dedup_key (GroupIncidentKey), so one group is one PagerDuty alert and its
// later notifications add to it instead of paging again.
type PagerDuty struct {
	key      string // the routing key: a credential, never logged
	url      string
	cfg      config.PagerDutyConfig
	severity map[string]string
	summary  *Template
	client   *http.Client
}

// NewPagerDuty builds a PagerDuty notifier, parsing its summary template;
// client carries the request timeout.
func NewPagerDuty(cfg config.PagerDutyConfig, client *http.Client) (*PagerDuty, error) {
	if cfg.RoutingKey == "" {
		return nil, errors.New("pagerduty: routing key is empty")
	}
	summary, err := parseTemplate("summary", cfg.Summary, DefaultIncidentTitle)
	if err != nil {
		return nil, fmt.Errorf("pagerduty: %w", err)
	}
	p := &PagerDuty{key: string(cfg.RoutingKey), url: cfg.URL, cfg: cfg, summary: summary, client: client,
		severity: config.SeverityMap(config.DefaultPagerDutySeverity, cfg.Severity)}
	if p.url == "" {
		p.url = config.DefaultPagerDutyURL
	}
	if p.cfg.Client == "" {
		p.cfg.Client = "kubesift"
	}
	return p, nil
}

// PagerDuty's limits (Events API v2).
const (
	pdSummaryMax  = 1024
	pdDedupKeyMax = 255
	// pdDetailAlerts bounds the alerts listed in custom_details; an event
	// is at most 512 KB and a person reads the first few.
	pdDetailAlerts = 10
	// pdFieldMax bounds source, component, group and class, which
	// PagerDuty shows in one line.
	pdFieldMax = 255
)

// PDEvent is an Events API v2 event.
type PDEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"` // trigger | resolve
	DedupKey    string     `json:"dedup_key"`
	Payload     *PDPayload `json:"payload,omitempty"`
	Client      string     `json:"client,omitempty"`
	ClientURL   string     `json:"client_url,omitempty"`
	Links       []PDLink   `json:"links,omitempty"`
}

// PDPayload is the payload of a trigger event.
type PDPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"` // critical | error | warning | info
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PDLink is a link shown in the incident.
type PDLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Event builds the event for n: resolve for a resolved notification,
// trigger otherwise. The routing key is left out (Notify sets it), so the
// event can be shown.
func (p *PagerDuty) Event(n *Notification) (PDEvent, error) {
	ev := PDEvent{EventAction: "trigger", DedupKey: GroupIncidentKey(n.Receiver, n.GroupKey)}
	if n.Resolved {
		ev.EventAction = "resolve"
		return ev, nil
	}
	summary, err := p.summary.Execute(NewTemplateData(n))
	if err != nil {
		return ev, fmt.Errorf("pagerduty: %w", err)
	}
	if summary == "" {
		summary = "kubesift alerts" // required by PagerDuty
	}
	pl := &PDPayload{
		Summary: cut(summary, pdSummaryMax), Severity: severityOf(p.severity, n.Alerts), Timestamp: n.Time.UTC().Format(time.RFC3339),
		Component: cut(p.cfg.Component, pdFieldMax), Group: cut(p.cfg.Group, pdFieldMax), Class: cut(p.cfg.Class, pdFieldMax),
		Source: cut(p.cfg.Source, pdFieldMax), CustomDetails: p.details(n),
	}
	if first := firstAlert(n); first != nil {
		pl.Timestamp = first.Time.UTC().Format(time.RFC3339)
		if pl.Source == "" {
			pl.Source = cut(first.Cluster, pdFieldMax)
		}
	}
	if pl.Source == "" {
		pl.Source = "kubesift" // required by PagerDuty
	}
	ev.Payload, ev.Client, ev.ClientURL = pl, p.cfg.Client, p.cfg.ClientURL
	return ev, nil
}

// details are the custom_details: the group, the counts and the first
// alerts in brief.
func (p *PagerDuty) details(n *Notification) map[string]any {
	listed := n.Alerts[:min(len(n.Alerts), pdDetailAlerts)]
	alerts := make([]map[string]string, 0, len(listed))
	for i := range listed {
		alerts = append(alerts, alertBrief(&listed[i]))
	}
	return map[string]any{
		"group_key": n.GroupKey, "group_labels": n.GroupLabels, "count": n.Count,
		"truncated": n.Count - len(listed), "total": n.Total, "alerts": alerts,
	}
}

// alertBrief is an alert's who / what / where in a few bounded strings.
func alertBrief(a *rules.Alert) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"id": a.ID, "rule_id": a.RuleID, "time": a.Time.UTC().Format(time.RFC3339), "severity": a.Severity.String(),
		"cluster": a.Cluster, "namespace": a.Namespace, "user": a.User, "verb": a.Verb, "object": object(a),
		"source_ip": a.SourceIP, "user_agent": a.UserAgent, "audit_id": a.AuditID, "message": a.Message,
	} {
		if v != "" {
			out[k] = cut(v, 1024)
		}
	}
	return out
}

// Notify implements Notifier. PagerDuty answers 202 when it took the
// event, 400 for an invalid one (not retried), 429 when rate limited.
func (p *PagerDuty) Notify(ctx context.Context, n *Notification) (bool, error) {
	ev, err := p.Event(n)
	if err != nil {
		return false, err
	}
	ev.RoutingKey = p.key
	body, err := json.Marshal(ev)
	if err != nil {
		return false, fmt.Errorf("pagerduty: encode event: %w", err)
	}
	// PagerDuty's error bodies are short JSON reasons; the key is cut out
	// of them all the same.
	return postDetail(ctx, p.client, "pagerduty "+ev.EventAction, p.url, body, nil, redactedDetail(p.key))
}
