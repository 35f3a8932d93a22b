package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// Slack posts Block Kit messages to a Slack incoming webhook: one message
// per notification, a colour bar by severity, the rule title, who / what /
// where of the first alert, the others listed briefly, the count, and a
// Kibana Discover link to the alerts.
type Slack struct {
	url    string // the webhook URL: a credential, never logged
	cfg    config.SlackConfig
	client *http.Client
}

// NewSlack builds a Slack notifier; client carries the request timeout.
func NewSlack(cfg config.SlackConfig, client *http.Client) (*Slack, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("slack: webhook URL is empty")
	}
	if cfg.MaxAlerts <= 0 {
		cfg.MaxAlerts = 10
	}
	return &Slack{url: string(cfg.URL), cfg: cfg, client: client}, nil
}

// Notify implements Notifier.
func (s *Slack) Notify(ctx context.Context, n *Notification) (bool, error) {
	body, err := json.Marshal(s.Message(n))
	if err != nil {
		return false, fmt.Errorf("slack: encode message: %w", err)
	}
	// Slack's error bodies are short codes (invalid_payload,
	// channel_not_found, rate_limited): safe and useful as Detail.
	return post(ctx, s.client, "slack post", s.url, body, nil, true)
}

// SlackMessage is the JSON body of an incoming-webhook post.
type SlackMessage struct {
	Channel     string            `json:"channel,omitempty"`
	Text        string            `json:"text"`
	Attachments []SlackAttachment `json:"attachments"`
}

// SlackAttachment carries the colour bar; the blocks inside it render as
// Block Kit.
type SlackAttachment struct {
	Color  string       `json:"color"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block (header, section, context, actions).
type SlackBlock struct {
	Type     string        `json:"type"`
	Text     *SlackText    `json:"text,omitempty"`
	Fields   []SlackText   `json:"fields,omitempty"`
	Elements []SlackButton `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type  string `json:"type"` // plain_text | mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// SlackButton is a Block Kit element: a link button in actions, or a text
// element (Type mrkdwn, Text set) in context blocks.
type SlackButton struct {
	Type string `json:"type"`
	Text any    `json:"text,omitempty"`
	URL  string `json:"url,omitempty"`
}

// severityColor is the attachment bar per severity.
var severityColor = map[rules.Severity]string{
	rules.SeverityCritical: "#B71C1C",
	rules.SeverityHigh:     "#E65100",
	rules.SeverityMedium:   "#F9A825",
	rules.SeverityLow:      "#1E88E5",
	rules.SeverityInfo:     "#9E9E9E",
}

// Slack's limits: header text 150 characters, section text 3000, field
// 2000. Longer text is cut (with an ellipsis) rather than refused.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
)

// Message builds the message for n (exported for golden tests and for
// users who want to see what will be sent).
func (s *Slack) Message(n *Notification) SlackMessage {
	if len(n.Alerts) == 0 {
		return SlackMessage{Channel: s.cfg.Channel, Text: fmt.Sprintf("%d kubesift alerts (%s)", n.Count, n.GroupKey)}
	}
	first := &n.Alerts[0]
	sev := maxSeverity(n.Alerts)
	count := ""
	if n.Count > 1 {
		count = fmt.Sprintf(" (%d alerts)", n.Count)
	}
	// Text is the notification preview and the fallback for clients
	// without Block Kit; it is plain, so it is escaped like mrkdwn too.
	text := fmt.Sprintf("[%s] %s%s in %s", strings.ToUpper(sev.String()), first.Title, count, first.Cluster)

	blocks := []SlackBlock{
		{Type: "header", Text: &SlackText{Type: "plain_text", Text: cut(first.Title+count, slackHeaderMax)}},
	}
	if first.Message != "" {
		blocks = append(blocks, SlackBlock{Type: "section", Text: mrkdwn(cut(esc(first.Message), slackSectionMax))})
	}
	blocks = append(blocks, SlackBlock{Type: "section", Fields: []SlackText{
		*mrkdwn(cut("*Who*\n"+orDash(esc(first.User)), slackFieldMax)),
		*mrkdwn(cut("*What*\n"+orDash(esc(strings.TrimSpace(first.Verb+" "+object(first)))), slackFieldMax)),
		*mrkdwn(cut("*Where*\n"+esc(where(first)), slackFieldMax)),
		*mrkdwn("*Severity*\n" + sev.String()),
		*mrkdwn(cut("*Rule*\n`"+esc(first.RuleID)+"`", slackFieldMax)),
		*mrkdwn(fmt.Sprintf("*Count*\n%d", n.Count)),
	}})
	if len(n.Alerts) > 1 {
		var b strings.Builder
		shown := min(len(n.Alerts), s.cfg.MaxAlerts)
		for i := 1; i < shown; i++ {
			a := &n.Alerts[i]
			fmt.Fprintf(&b, "• %s %s %s — %s\n", orDash(esc(a.User)), esc(a.Verb), esc(object(a)), esc(where(a)))
		}
		if more := n.Count - shown; more > 0 {
			fmt.Fprintf(&b, "… and %d more", more)
		}
		if b.Len() > 0 {
			blocks = append(blocks, SlackBlock{Type: "section", Text: mrkdwn(cut(strings.TrimSpace(b.String()), slackSectionMax))})
		}
	}
	ctxParts := []string{first.Time.UTC().Format(time.RFC3339)}
	if len(first.Mitre.Techniques) > 0 {
		ctxParts = append(ctxParts, "MITRE "+esc(strings.Join(first.Mitre.Techniques, ", ")))
	}
	if len(first.Mitre.Tactics) > 0 {
		ctxParts = append(ctxParts, esc(strings.Join(first.Mitre.Tactics, ", ")))
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackButton{{Type: "mrkdwn", Text: strings.Join(ctxParts, " · ")}}})
	if link := s.discoverURL(n); link != "" {
		blocks = append(blocks, SlackBlock{Type: "actions", Elements: []SlackButton{{
			Type: "button", Text: SlackText{Type: "plain_text", Text: "Open in Kibana"}, URL: link,
		}}})
	}
	return SlackMessage{
		Channel:     s.cfg.Channel,
		Text:        cut(esc(text), slackSectionMax),
		Attachments: []SlackAttachment{{Color: severityColor[sev], Blocks: blocks}},
	}
}

// Fields of the alerts index the Discover query uses (ECS names, as
// sink/ecs writes alert documents).
const (
	kibanaRuleField    = "rule.id"
	kibanaClusterField = "orchestrator.cluster.name"
)

// discoverURL is the Discover link of n (kibanaDiscoverURL).
func (s *Slack) discoverURL(n *Notification) string {
	return kibanaDiscoverURL(s.cfg.KibanaURL, s.cfg.KibanaDataView, n)
}

// kibanaDiscoverURL links to Discover on n's alerts (the rule in the
// cluster) from 15 minutes before the first to 15 minutes after the last;
// "" without a Kibana URL.
func kibanaDiscoverURL(kibanaURL, dataView string, n *Notification) string {
	if kibanaURL == "" || len(n.Alerts) == 0 {
		return ""
	}
	from, to := n.Alerts[0].Time, n.Alerts[0].Time
	for _, a := range n.Alerts {
		if a.Time.Before(from) {
			from = a.Time
		}
		if a.Time.After(to) {
			to = a.Time
		}
	}
	first := &n.Alerts[0]
	kql := fmt.Sprintf(`%s:"%s" and %s:"%s"`, kibanaRuleField, kqlEscape(first.RuleID), kibanaClusterField, kqlEscape(first.Cluster))
	a := "(query:(language:kuery,query:" + risonString(kql) + ")"
	if dataView != "" {
		a = "(index:" + risonString(dataView) + ",query:(language:kuery,query:" + risonString(kql) + ")"
	}
	a += ")"
	g := fmt.Sprintf("(time:(from:'%s',to:'%s'))",
		from.Add(-15*time.Minute).UTC().Format(time.RFC3339), to.Add(15*time.Minute).UTC().Format(time.RFC3339))
	return strings.TrimRight(kibanaURL, "/") + "/app/discover#/?_g=" + url.QueryEscape(g) + "&_a=" + url.QueryEscape(a)
}

// risonString quotes s for Rison (Kibana's URL state): '…' with ' and !
// escaped by !.
func risonString(s string) string {
	return "'" + strings.NewReplacer("!", "!!", "'", "!'").Replace(s) + "'"
}

// kqlEscape escapes a value inside a KQL quoted string.
func kqlEscape(s string) string { return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) }

// esc escapes Slack mrkdwn control characters. Alert fields come from audit
// records — user names and object names an attacker chooses — so an
// unescaped "<!channel>" or "<https://evil|click here>" would ping everyone
// or plant a link in the security channel.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func mrkdwn(s string) *SlackText { return &SlackText{Type: "mrkdwn", Text: s} }

// cut shortens s to at most n runes, ending in an ellipsis when cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// object renders resource/name.
func object(a *rules.Alert) string {
	switch {
	case a.Resource != "" && a.Name != "":
		return a.Resource + "/" + a.Name
	case a.Resource != "":
		return a.Resource
	}
	return a.Name
}

func where(a *rules.Alert) string {
	if a.Namespace != "" {
		return "namespace " + a.Namespace + " · cluster " + a.Cluster
	}
	return "cluster " + a.Cluster
}

func maxSeverity(as []rules.Alert) rules.Severity {
	var s rules.Severity
	for i := range as {
		s = max(s, as[i].Severity)
	}
	return s
}
