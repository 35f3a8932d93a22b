package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// Digest is one cluster's daily digest as a receiver gets it: rendered
// once (package sink/report builds and renders the figures), and the
// figures themselves for the webhook. It is not a Notification: it
// reports no alerts, passes no route, group, inhibition or silence, and
// goes to the receivers notify.digest names.
type Digest struct {
	Receiver string
	Cluster  string
	// Day is the local date of the scheduled time the digest is for.
	Day      string
	From, To time.Time
	// Title is one line; Text is plain text (record content in it is
	// not escaped for any markup), HTML a whole page, escaped.
	Title, Text, HTML string
	// Data is the figures as JSON (report.Digest).
	Data json.RawMessage
	// IdempotencyKey is DigestKey: a second send of the same digest (a
	// retry, or a takeover of a slow replica's claim) carries the same.
	IdempotencyKey string
}

// DigestKey is the idempotency key of a receiver's digest of (cluster,
// day).
func DigestKey(receiver, cluster, day string) string {
	return IdempotencyKey(receiver, "digest/"+cluster, []string{day})
}

// DigestNotifier is an integration that sends digests, under the
// Notifier contract (retry, errors without URLs or keys).
type DigestNotifier interface {
	NotifyDigest(ctx context.Context, d *Digest) (retry bool, err error)
}

// TakesDigest returns n's DigestNotifier: Slack, e-mail, Teams and
// kubesift/v1 webhooks take digests. Alertmanager, PagerDuty and Opsgenie
// (and webhooks in Alertmanager's format) do not: a digest is neither an
// alert nor an incident.
func TakesDigest(n Notifier) (DigestNotifier, bool) {
	if w, ok := n.(*Webhook); ok && w.format != config.WebhookFormatKubesift {
		return nil, false
	}
	d, ok := n.(DigestNotifier)
	return d, ok
}

// DigestPayload is the kubesift/v1 webhook body of a digest, told apart
// from an alert notification by Kind (docs/alerting.md).
type DigestPayload struct {
	Version        string          `json:"version"`
	Kind           string          `json:"kind"` // "digest"
	IdempotencyKey string          `json:"idempotency_key"`
	Receiver       string          `json:"receiver"`
	Cluster        string          `json:"cluster"`
	Day            string          `json:"day"`
	From           time.Time       `json:"from"`
	To             time.Time       `json:"to"`
	SentAt         time.Time       `json:"sent_at"`
	Title          string          `json:"title"`
	Digest         json.RawMessage `json:"digest"`
}

// NotifyDigest implements DigestNotifier: the DigestPayload, signed and
// with its Idempotency-Key like an alert notification.
func (w *Webhook) NotifyDigest(ctx context.Context, d *Digest) (bool, error) {
	now := w.Now()
	body, err := json.Marshal(DigestPayload{
		Version: PayloadVersion, Kind: "digest", IdempotencyKey: d.IdempotencyKey, Receiver: d.Receiver,
		Cluster: d.Cluster, Day: d.Day, From: d.From.UTC(), To: d.To.UTC(), SentAt: now.UTC(), Title: d.Title, Digest: d.Data,
	})
	if err != nil {
		return false, fmt.Errorf("webhook: encode digest: %w", err)
	}
	return w.send(ctx, body, d.IdempotencyKey, now)
}

// NotifyDigest implements DigestNotifier: the title as header and the
// text, mrkdwn-escaped, as a preformatted section.
func (s *Slack) NotifyDigest(ctx context.Context, d *Digest) (bool, error) {
	body, err := json.Marshal(s.DigestMessage(d))
	if err != nil {
		return false, fmt.Errorf("slack: encode digest: %w", err)
	}
	return post(ctx, s.client, "slack post", s.url, body, nil, true)
}

// DigestMessage builds the Slack message of d.
func (s *Slack) DigestMessage(d *Digest) SlackMessage {
	// Three backticks end the block early: a reason containing them is
	// given a zero-width joiner, which keeps its look.
	text := strings.ReplaceAll(esc(d.Text), "```", "`\u200d``")
	return SlackMessage{Channel: s.cfg.Channel, Text: cut(esc(d.Title), slackSectionMax), Attachments: []SlackAttachment{{
		Color: resolvedColor, Blocks: []SlackBlock{
			{Type: "header", Text: &SlackText{Type: "plain_text", Text: cut(d.Title, slackHeaderMax)}},
			{Type: "section", Text: mrkdwn("```" + cut(text, slackSectionMax-6) + "```")},
		},
	}}}
}

// NotifyDigest implements DigestNotifier: a card with the title and the
// text, markdown-escaped, line by line.
func (t *Teams) NotifyDigest(ctx context.Context, d *Digest) (bool, error) {
	body, err := t.DigestBody(d)
	if err != nil {
		return false, err
	}
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	return post(ctx, t.client, "teams post", t.url, body, h, false)
}

// DigestBody renders d as the Teams JSON body with as many of its lines
// as fit TeamsMaxBody.
func (t *Teams) DigestBody(d *Digest) ([]byte, error) {
	lines := strings.Split(strings.TrimSpace(d.Text), "\n")
	for i, l := range lines {
		lines[i] = mdEscape(cut(l, teamsLineMax))
	}
	title := mdEscape(cut(oneLine(d.Title), teamsTitleMax))
	encode := func(n int) ([]byte, error) {
		card := AdaptiveCard{Schema: AdaptiveCardSchema, Type: "AdaptiveCard", Version: AdaptiveCardVersion, MSTeams: map[string]any{"width": "Full"},
			Body: []CardElement{
				{Type: "TextBlock", Text: title, Size: "Large", Weight: "Bolder", Wrap: true},
				{Type: "TextBlock", Text: strings.Join(lines[:n], "\n\n"), Wrap: true},
			}}
		b, err := json.Marshal(TeamsMessage{Type: "message", Attachments: []TeamsAttachment{{ContentType: AdaptiveCardContentType, Content: card}}})
		if err != nil {
			return nil, fmt.Errorf("teams: encode digest: %w", err)
		}
		return b, nil
	}
	return teamsFit(0, len(lines), encode)
}

// NotifyDigest implements DigestNotifier: the title as subject, the text
// and the page as the alternatives. The receiver's templates are for
// alert notifications and are not used.
func (e *Email) NotifyDigest(ctx context.Context, d *Digest) (bool, error) {
	msg, err := e.DigestMessage(d)
	if err != nil {
		return false, err
	}
	return e.send(ctx, msg)
}

// DigestMessage renders the whole mail of d.
func (e *Email) DigestMessage(d *Digest) ([]byte, error) {
	return e.compose(d.Title, d.Text, d.HTML, "digest."+d.IdempotencyKey, "digest/"+d.Cluster+"/"+d.Day, d.IdempotencyKey)
}
