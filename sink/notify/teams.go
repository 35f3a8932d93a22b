package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// Teams posts an Adaptive Card to a Microsoft Teams channel through a
// Workflows webhook ("Post to a channel when a webhook request is
// received"): the rule title coloured by severity, the first alert's
// message, who / what / where as a FactSet, the other alerts listed
// briefly, the count, and a Kibana Discover button.
type Teams struct {
	url         string // carries the flow's signature: a credential, never logged
	cfg         config.TeamsConfig
	title, text *Template
	client      *http.Client
}

// The built-in templates: the first alert's title with the count, and its
// message. "Resolved" leads the title of a group's resolved card.
const (
	defaultTeamsTitle = `{{ if eq .Status "resolved" }}Resolved: {{ end }}` +
		`{{ range $i, $a := .Alerts }}{{ if eq $i 0 }}{{ $a.Title }}{{ end }}{{ end }}` +
		`{{ if gt .Count 1 }} ({{ .Count }} alerts){{ end }}`
	defaultTeamsText = `{{ range $i, $a := .Alerts }}{{ if eq $i 0 }}{{ $a.Message }}{{ end }}{{ end }}`
)

// NewTeams builds a Teams notifier; client carries the request timeout.
// The templates are parsed here, so a broken one fails the start.
func NewTeams(cfg config.TeamsConfig, client *http.Client) (*Teams, error) {
	if cfg.URL == "" {
		return nil, errors.New("teams: webhook URL is empty")
	}
	if cfg.MaxAlerts <= 0 {
		cfg.MaxAlerts = 20
	}
	t := &Teams{url: string(cfg.URL), cfg: cfg, client: client}
	var err error
	if t.title, err = ParseTemplate("teams title", orDefault(cfg.Title, defaultTeamsTitle)); err != nil {
		return nil, err
	}
	if t.text, err = ParseTemplate("teams text", orDefault(cfg.Text, defaultTeamsText)); err != nil {
		return nil, err
	}
	return t, nil
}

// Notify implements Notifier. A resolved notification is sent only with
// send_resolved; otherwise it is accepted and dropped here, on purpose.
func (t *Teams) Notify(ctx context.Context, n *Notification) (bool, error) {
	if n.Resolved && !t.cfg.SendResolved {
		return false, nil
	}
	body, err := t.Body(n)
	if err != nil {
		return false, err
	}
	// Workflows answers 202 Accepted. Its error bodies are not known to
	// be short codes, so no Detail. The charset is explicit: without it
	// the endpoint may count the body as UTF-16, which halves the
	// size limit.
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	return post(ctx, t.client, "teams post", t.url, body, h, false)
}

// TeamsMessage is the body a Workflows webhook takes: a message with one
// Adaptive Card attachment.
type TeamsMessage struct {
	Type        string            `json:"type"` // "message"
	Attachments []TeamsAttachment `json:"attachments"`
}

// TeamsAttachment carries the card. ContentURL is always null but
// present, as the Workflows template expects.
type TeamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"`
	Content     AdaptiveCard `json:"content"`
}

// AdaptiveCard is the card (schema version 1.4, the one Teams renders).
type AdaptiveCard struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"` // "AdaptiveCard"
	Version string         `json:"version"`
	Body    []CardElement  `json:"body"`
	Actions []CardAction   `json:"actions,omitempty"`
	MSTeams map[string]any `json:"msteams,omitempty"`
}

// CardElement is a TextBlock (Text required) or a FactSet (Facts
// required); the other fields are TextBlock styling.
type CardElement struct {
	Type      string     `json:"type"`
	Text      string     `json:"text,omitempty"`
	Size      string     `json:"size,omitempty"`
	Weight    string     `json:"weight,omitempty"`
	Color     string     `json:"color,omitempty"`
	IsSubtle  bool       `json:"isSubtle,omitempty"`
	Wrap      bool       `json:"wrap,omitempty"`
	Separator bool       `json:"separator,omitempty"`
	Facts     []CardFact `json:"facts,omitempty"`
}

// CardFact is one title/value row of a FactSet.
type CardFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// CardAction is an Action.OpenUrl button.
type CardAction struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

// Card constants.
const (
	AdaptiveCardContentType = "application/vnd.microsoft.card.adaptive"
	AdaptiveCardSchema      = "http://adaptivecards.io/schemas/adaptive-card.json"
	AdaptiveCardVersion     = "1.4"
)

// TeamsMaxBody bounds the JSON body. Teams refuses messages over about
// 28 KB; the margin covers what the flow wraps around the card.
const TeamsMaxBody = 24 << 10

// Per-text limits, in runes. Even with every rune escaped by JSON as
// \uXXXX (6 bytes), title + text + facts stay near 10 KB, so a card
// that lists no other alerts always fits TeamsMaxBody; the list is what
// gets cut.
const (
	teamsTitleMax = 200
	teamsTextMax  = 600
	teamsFactMax  = 120
	teamsLineMax  = 200
)

// teamsColor is the title's colour per severity; a resolved card is good.
func teamsColor(s rules.Severity) string {
	switch {
	case s >= rules.SeverityHigh:
		return "attention"
	case s == rules.SeverityMedium:
		return "warning"
	}
	return "default"
}

// Body renders n as the JSON body, listing as many of the other alerts as
// fit TeamsMaxBody (at most max_alerts in all).
func (t *Teams) Body(n *Notification) ([]byte, error) {
	d := NewTemplateData(n)
	title, err := t.title.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("teams: %w", err)
	}
	text, err := t.text.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("teams: %w", err)
	}
	if title = strings.TrimSpace(title); title == "" {
		title = fmt.Sprintf("%d kubesift alerts", n.Count)
	}
	p := teamsParts{title: cut(oneLine(title), teamsTitleMax), text: cut(strings.TrimSpace(text), teamsTextMax)}
	// shown is the number of alerts listed, the first included.
	return teamsFit(min(len(n.Alerts), 1), min(len(n.Alerts), t.cfg.MaxAlerts), func(shown int) ([]byte, error) {
		return t.encode(n, p, shown)
	})
}

// teamsFit returns the body encode makes of the most parts, from lo to
// hi, that fits TeamsMaxBody — or of lo when none does. It searches
// binarily: a body grows with its parts, and each try encodes it whole.
func teamsFit(lo, hi int, encode func(parts int) ([]byte, error)) ([]byte, error) {
	best, err := encode(lo)
	if err != nil {
		return nil, err
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		b, err := encode(mid)
		if err != nil {
			return nil, err
		}
		if len(b) <= TeamsMaxBody {
			lo, best = mid, b
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}

type teamsParts struct{ title, text string }

func (t *Teams) encode(n *Notification, p teamsParts, shown int) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Alert text is full of < and & (messages, label selectors): escaping
	// them as \u003c would only eat into the size limit.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t.message(n, p, shown)); err != nil {
		return nil, fmt.Errorf("teams: encode card: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (t *Teams) message(n *Notification, p teamsParts, shown int) TeamsMessage {
	color := "default"
	if len(n.Alerts) > 0 {
		color = teamsColor(maxSeverity(n.Alerts))
	}
	if n.Resolved {
		color = "good"
	}
	body := []CardElement{{Type: "TextBlock", Text: mdEscape(p.title), Size: "Large", Weight: "Bolder", Color: color, Wrap: true}}
	if p.text != "" {
		body = append(body, CardElement{Type: "TextBlock", Text: mdEscape(p.text), Wrap: true})
	}
	if len(n.Alerts) > 0 {
		body = append(body, CardElement{Type: "FactSet", Facts: teamsFacts(n)})
	}
	if shown > 1 {
		lines := make([]string, 0, shown-1)
		for i := 1; i < shown; i++ {
			a := &n.Alerts[i]
			lines = append(lines, "- "+mdEscape(cut(oneLine(fmt.Sprintf("%s %s %s — %s", orDash(a.User), a.Verb, object(a), where(a))), teamsLineMax)))
		}
		body = append(body, CardElement{Type: "TextBlock", Text: strings.Join(lines, "\n"), Wrap: true, Separator: true})
	}
	if more := n.Count - shown; more > 0 && n.Count > 1 {
		body = append(body, CardElement{Type: "TextBlock", Text: fmt.Sprintf("… and %d more (%d alerts in this notification, %d in the group)", more, n.Count, n.Total), IsSubtle: true, Wrap: true})
	}
	card := AdaptiveCard{Schema: AdaptiveCardSchema, Type: "AdaptiveCard", Version: AdaptiveCardVersion, Body: body,
		MSTeams: map[string]any{"width": "Full"}}
	if link := discoverURL(t.cfg.KibanaURL, t.cfg.KibanaDataView, n.Alerts); link != "" {
		card.Actions = []CardAction{{Type: "Action.OpenUrl", Title: "Open in Kibana", URL: link}}
	}
	return TeamsMessage{Type: "message", Attachments: []TeamsAttachment{{ContentType: AdaptiveCardContentType, Content: card}}}
}

// teamsFacts are who / what / where of the first alert, and the rest of
// what a reader decides on.
func teamsFacts(n *Notification) []CardFact {
	a := &n.Alerts[0]
	fact := func(title, v string) CardFact {
		return CardFact{Title: title, Value: mdEscape(cut(oneLine(v), teamsFactMax))}
	}
	return []CardFact{
		fact("Who", orDash(a.User)),
		fact("What", orDash(strings.TrimSpace(a.Verb+" "+object(a)))),
		fact("Where", where(a)),
		fact("Severity", maxSeverity(n.Alerts).String()),
		fact("Rule", a.RuleID),
		fact("Count", fmt.Sprint(n.Count)),
		fact("Time", a.Time.UTC().Format(time.RFC3339)),
	}
}

// mdEscape makes s inert in a TextBlock's markdown. Alert fields come from
// audit records (user and object names an attacker picks), so an
// unescaped "[click](https://evil)" would plant a link in the channel.
func mdEscape(s string) string { return mdEscaper.Replace(s) }

var mdEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`,
	"`", "\\`", "#", `\#`, "~", `\~`, "<", `\<`, ">", `\>`)

// oneLine replaces line breaks and other control characters by spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
