package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kubesift/kubesift/internal/config"
)

// Opsgenie creates an Opsgenie alert for each notification of a group
// (POST /v2/alerts) and closes it when the group resolves (POST
// /v2/alerts/<alias>/close), identified by the group's alias
// (GroupIncidentKey): Opsgenie de-duplicates an open alert with the same
// alias, so a group's later notifications add to its count instead of
// opening new alerts.
type Opsgenie struct {
	key         string // the API key: a credential, never logged
	base        string // API URL with a trailing slash
	cfg         config.OpsgenieConfig
	priority    map[string]string
	message     *Template
	description *Template
	client      *http.Client
}

// NewOpsgenie builds an Opsgenie notifier, parsing its templates; client
// carries the request timeout.
func NewOpsgenie(cfg config.OpsgenieConfig, client *http.Client) (*Opsgenie, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("opsgenie: API key is empty")
	}
	msg, err := parseTemplate("message", cfg.Message, DefaultIncidentTitle)
	if err != nil {
		return nil, fmt.Errorf("opsgenie: %w", err)
	}
	desc, err := parseTemplate("description", cfg.Description, DefaultIncidentDescription)
	if err != nil {
		return nil, fmt.Errorf("opsgenie: %w", err)
	}
	base := cfg.APIURL
	if base == "" {
		base = config.DefaultOpsgenieURL
	}
	return &Opsgenie{key: string(cfg.APIKey), base: strings.TrimRight(base, "/") + "/", cfg: cfg,
		priority: config.SeverityMap(config.DefaultOpsgeniePriority, cfg.Priority),
		message:  msg, description: desc, client: client}, nil
}

// Opsgenie's limits (Alert API): longer values are refused, so they are
// cut here.
const (
	ogMessageMax     = 130
	ogAliasMax       = 512
	ogDescriptionMax = 15000
	ogSourceMax      = 100
	ogEntityMax      = 512
	// ogDetailMax bounds one details value; Opsgenie caps the whole
	// details map (8000 characters), so only short fields go there.
	ogDetailMax = 500
)

// OGAlert is the body of POST /v2/alerts.
type OGAlert struct {
	Message     string                     `json:"message"`
	Alias       string                     `json:"alias"`
	Description string                     `json:"description,omitempty"`
	Responders  []config.OpsgenieResponder `json:"responders,omitempty"`
	Tags        []string                   `json:"tags,omitempty"`
	Details     map[string]string          `json:"details,omitempty"`
	Entity      string                     `json:"entity,omitempty"`
	Source      string                     `json:"source,omitempty"`
	Priority    string                     `json:"priority"`
}

// OGClose is the body of POST /v2/alerts/<alias>/close.
type OGClose struct {
	Source string `json:"source,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Alert builds the create request for n.
func (o *Opsgenie) Alert(n *Notification) (OGAlert, error) {
	d := NewTemplateData(n)
	msg, err := o.message.Execute(d)
	if err != nil {
		return OGAlert{}, fmt.Errorf("opsgenie: %w", err)
	}
	desc, err := o.description.Execute(d)
	if err != nil {
		return OGAlert{}, fmt.Errorf("opsgenie: %w", err)
	}
	if strings.TrimSpace(msg) == "" {
		msg = "kubesift alerts" // required by Opsgenie
	}
	a := OGAlert{
		Message: cut(msg, ogMessageMax), Alias: o.alias(n), Description: cut(desc, ogDescriptionMax),
		Responders: o.cfg.Responders, Tags: o.cfg.Tags, Details: o.details(n),
		Entity: cut(o.cfg.Entity, ogEntityMax), Source: cut(o.source(), ogSourceMax),
		Priority: severityOf(o.priority, n.Alerts),
	}
	return a, nil
}

func (o *Opsgenie) source() string {
	if o.cfg.Source != "" {
		return o.cfg.Source
	}
	return "kubesift"
}

func (o *Opsgenie) alias(n *Notification) string {
	return GroupIncidentKey(n.Receiver, n.GroupKey) // 64 characters, within ogAliasMax
}

// details are short key/value facts: the group's labels, the counts and
// the first alert's IDs.
func (o *Opsgenie) details(n *Notification) map[string]string {
	out := map[string]string{
		"count": strconv.Itoa(n.Count), "truncated": strconv.Itoa(n.Truncated()), "total": strconv.Itoa(n.Total),
	}
	for k, v := range n.GroupLabels {
		if v != "" {
			out[k] = cut(v, ogDetailMax)
		}
	}
	if first := firstAlert(n); first != nil {
		for k, v := range map[string]string{"alert_id": first.ID, "record_id": first.RecordID, "rule_id": first.RuleID,
			"cluster": first.Cluster, "user": first.User, "source_ip": first.SourceIP, "audit_id": first.AuditID} {
			if v != "" {
				out[k] = cut(v, ogDetailMax)
			}
		}
	}
	return out
}

// Notify implements Notifier: create, or close for a resolved
// notification. Opsgenie answers 202 when it queued the request, 4xx for
// an invalid one or a bad key (not retried), 429 when rate limited.
func (o *Opsgenie) Notify(ctx context.Context, n *Notification) (bool, error) {
	var body any
	op, target := "opsgenie create", o.base+"v2/alerts"
	if n.Resolved {
		op = "opsgenie close"
		target = o.base + "v2/alerts/" + url.PathEscape(o.alias(n)) + "/close?identifierType=alias"
		body = OGClose{Source: cut(o.source(), ogSourceMax), Note: "resolved: the kubesift group went quiet"}
	} else {
		a, err := o.Alert(n)
		if err != nil {
			return false, err
		}
		body = a
	}
	b, err := json.Marshal(body)
	if err != nil {
		return false, fmt.Errorf("%s: encode: %w", op, err)
	}
	h := http.Header{"Authorization": {"GenieKey " + o.key}}
	return postDetail(ctx, o.client, op, target, b, h, redactedDetail(o.key))
}
