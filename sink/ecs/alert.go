package ecs

import (
	"net/netip"
	"strings"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// DeliveryPending is the kubesift.delivery.state of a new alert document;
// the notifier (sink/notify) updates it in place as it delivers.
const DeliveryPending = "pending"

// alertDocument is an alert's document: ECS event.kind alert, rule.*,
// threat.* (MITRE ATT&CK), and kubesift.alert.* for what ECS has no field for.
type alertDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Message      string       `json:"message,omitempty"`
	Tags         []string     `json:"tags,omitempty"`
	Event        event        `json:"event"`
	Rule         alertRule    `json:"rule"`
	Threat       *threat      `json:"threat,omitempty"`
	User         *user        `json:"user,omitempty"`
	Source       *source      `json:"source,omitempty"`
	UserAgent    *userAgent   `json:"user_agent,omitempty"`
	Orchestrator orchestrator `json:"orchestrator"`
	Kubesift     struct {
		Alert    alertFields `json:"alert"`
		Delivery struct {
			State string `json:"state"`
		} `json:"delivery"`
	} `json:"kubesift"`
}

type alertRule struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

type threat struct {
	Framework string   `json:"framework"`
	Tactic    *idNames `json:"tactic,omitempty"`
	Technique *idNames `json:"technique,omitempty"`
}

type idNames struct {
	ID   []string `json:"id,omitempty"`
	Name []string `json:"name,omitempty"`
}

type alertFields struct {
	Severity string `json:"severity"`
	RecordID string `json:"record_id"`
	Source   string `json:"source"`
	GroupKey string `json:"group_key,omitempty"`
	Count    int    `json:"count,omitempty"`
	Message  string `json:"message,omitempty"`
	Verb     string `json:"verb,omitempty"`
	AuditID  string `json:"audit_id,omitempty"`
}

// riskScores are Elastic Security's risk scores per severity, so kubesift
// alerts sort with Elastic's own.
var riskScores = map[rules.Severity]float64{
	rules.SeverityInfo: 1, rules.SeverityLow: 21, rules.SeverityMedium: 47, rules.SeverityHigh: 73, rules.SeverityCritical: 99,
}

// Alert builds the document of an alert: Index is the alerts index, ID the
// alert ID (deterministic, so a re-delivered record's alert is a Duplicate).
func (b *Builder) Alert(a *rules.Alert) (sink.Doc, error) {
	if a == nil {
		return sink.Doc{}, &FieldError{Field: "alert", Msg: "nil"}
	}
	if a.ID == "" {
		return sink.Doc{}, &FieldError{ID: a.RecordID, Field: "alert.id", Msg: "missing"}
	}
	if a.RuleID == "" {
		return sink.Doc{}, &FieldError{ID: a.RecordID, Field: "alert.rule_id", Msg: "missing"}
	}
	t := a.Time
	if t.IsZero() {
		t = b.Now()
	}
	d := &alertDocument{Timestamp: t.UTC(), Message: a.Message, Tags: a.Tags}
	d.Event = event{
		Kind: "alert", Category: []string{"intrusion_detection"}, Type: []string{"info"}, Action: a.RuleID,
		Dataset: "kubesift.alerts", ID: a.ID, Ingested: b.Now().UTC(),
		Severity: int(a.Severity), Risk: riskScores[a.Severity],
	}
	d.Rule = alertRule{ID: a.RuleID, Name: a.Title}
	if len(a.Mitre.Tactics) > 0 || len(a.Mitre.Techniques) > 0 {
		th := &threat{Framework: "MITRE ATT&CK"}
		if len(a.Mitre.Tactics) > 0 {
			th.Tactic = &idNames{}
			for _, slug := range a.Mitre.Tactics {
				id, name := tactic(slug)
				if id != "" {
					th.Tactic.ID = append(th.Tactic.ID, id)
				}
				th.Tactic.Name = append(th.Tactic.Name, name)
			}
		}
		if len(a.Mitre.Techniques) > 0 {
			th.Technique = &idNames{ID: a.Mitre.Techniques}
		}
		d.Threat = th
	}
	if a.User != "" {
		d.User = &user{Name: a.User}
	}
	if addr, err := netip.ParseAddr(a.SourceIP); err == nil {
		d.Source = &source{IP: addr.String()}
	}
	if a.UserAgent != "" {
		d.UserAgent = &userAgent{Original: a.UserAgent}
	}
	d.Orchestrator = orchestrator{Type: "kubernetes", Cluster: cluster{Name: a.Cluster}, Namespace: a.Namespace}
	if a.Resource != "" || a.Name != "" {
		d.Orchestrator.Resource = &orchResource{Type: a.Resource, Name: a.Name}
	}
	d.Kubesift.Alert = alertFields{
		Severity: a.Severity.String(), RecordID: a.RecordID, Source: string(a.Source),
		GroupKey: a.GroupKey, Count: a.Count, Message: a.Message, Verb: a.Verb, AuditID: a.AuditID,
	}
	d.Kubesift.Delivery.State = DeliveryPending
	body, err := docJSON.Marshal(d)
	if err != nil {
		return sink.Doc{}, &FieldError{ID: a.ID, Field: "alert", Msg: "encode document: " + err.Error()}
	}
	return sink.Doc{Index: b.alerts, ID: a.ID, Body: validUTF8(body)}, nil
}

// mitreTactics maps the rule language's tactic slugs to ATT&CK ids and names.
var mitreTactics = map[string][2]string{
	"reconnaissance":       {"TA0043", "Reconnaissance"},
	"resource-development": {"TA0042", "Resource Development"},
	"initial-access":       {"TA0001", "Initial Access"},
	"execution":            {"TA0002", "Execution"},
	"persistence":          {"TA0003", "Persistence"},
	"privilege-escalation": {"TA0004", "Privilege Escalation"},
	"defense-evasion":      {"TA0005", "Defense Evasion"},
	"credential-access":    {"TA0006", "Credential Access"},
	"discovery":            {"TA0007", "Discovery"},
	"lateral-movement":     {"TA0008", "Lateral Movement"},
	"collection":           {"TA0009", "Collection"},
	"command-and-control":  {"TA0011", "Command and Control"},
	"exfiltration":         {"TA0010", "Exfiltration"},
	"impact":               {"TA0040", "Impact"},
}

// tactic resolves a slug; an unknown one keeps its text as the name.
func tactic(slug string) (id, name string) {
	if t, ok := mitreTactics[strings.ToLower(slug)]; ok {
		return t[0], t[1]
	}
	return "", slug
}
