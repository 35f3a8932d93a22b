package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// Headers of a webhook request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>" where
	// the HMAC is keyed by the shared secret over "<t>.<body>" — Stripe's
	// scheme, so receivers can check authenticity and reject replays.
	SignatureHeader = "X-Kubesift-Signature"
	// IdempotencyHeader carries Notification.IdempotencyKey: a receiver
	// that has seen the key before has seen this notification.
	IdempotencyHeader = "Idempotency-Key"
)

// PayloadVersion is the version of the kubesift/v1 webhook payload.
const PayloadVersion = "kubesift/v1"

// WebhookPayload is the kubesift/v1 JSON body (documented in
// docs/alerting.md). Fields are only ever added within v1.
type WebhookPayload struct {
	Version        string            `json:"version"`
	IdempotencyKey string            `json:"idempotency_key"`
	Receiver       string            `json:"receiver"`
	GroupKey       string            `json:"group_key"`
	GroupLabels    map[string]string `json:"group_labels"`
	// Count is how many new alerts this notification reports; Truncated
	// of them are not listed in Alerts.
	Count     int `json:"count"`
	Truncated int `json:"truncated"`
	// Total is how many alerts the group took since it opened; Seq numbers
	// the group's notifications from 1.
	Total  int           `json:"total"`
	Seq    int           `json:"seq"`
	SentAt time.Time     `json:"sent_at"`
	Alerts []rules.Alert `json:"alerts"`
	// Resolved marks the notification sent when the group resolves (only
	// with send_resolved); Alerts are then those it reported since it last
	// resolved.
	Resolved bool `json:"resolved,omitempty"`
}

// Webhook posts a JSON payload, kubesift/v1 or Alertmanager's, signed when a
// secret is configured.
type Webhook struct {
	url     string // may carry a token: a credential, never logged
	secret  []byte
	format  string
	headers http.Header
	max     int
	client  *http.Client
	// Now is the clock of the signature timestamp (tests).
	Now func() time.Time
}

// NewWebhook builds a webhook notifier; client carries the request timeout.
func NewWebhook(cfg config.WebhookConfig, client *http.Client) (*Webhook, error) {
	if cfg.URL == "" {
		return nil, errors.New("webhook: URL is empty")
	}
	w := &Webhook{
		url: string(cfg.URL), secret: []byte(cfg.Secret), format: cfg.Format,
		headers: http.Header{}, max: cfg.MaxAlerts, client: client, Now: time.Now,
	}
	if w.format == "" {
		w.format = config.WebhookFormatKubesift
	}
	if w.format != config.WebhookFormatKubesift && w.format != config.WebhookFormatAlertmanager {
		return nil, fmt.Errorf("webhook: unknown format %q", w.format)
	}
	if w.max <= 0 {
		w.max = 1000
	}
	for k, v := range cfg.Headers {
		w.headers.Set(k, string(v))
	}
	return w, nil
}

// Notify implements Notifier.
func (w *Webhook) Notify(ctx context.Context, n *Notification) (bool, error) {
	now := w.Now()
	var body []byte
	var err error
	if w.format == config.WebhookFormatAlertmanager {
		body, err = json.Marshal(AlertmanagerPayload(n, w.max))
	} else {
		body, err = json.Marshal(w.payload(n, now))
	}
	if err != nil {
		return false, fmt.Errorf("webhook: encode payload: %w", err)
	}
	return w.send(ctx, body, n.IdempotencyKey, now)
}

// send posts body with the configured headers, the idempotency key and,
// with a secret, the signature made at now.
func (w *Webhook) send(ctx context.Context, body []byte, key string, now time.Time) (bool, error) {
	h := w.headers.Clone()
	h.Set(IdempotencyHeader, key)
	h.Set("User-Agent", "kubesift-notify")
	if len(w.secret) > 0 {
		h.Set(SignatureHeader, Sign(w.secret, now, body))
	}
	// No Detail: a generic receiver's error body could echo anything.
	return post(ctx, w.client, "webhook post", w.url, body, h, false)
}

func (w *Webhook) payload(n *Notification, now time.Time) WebhookPayload {
	alerts := n.Alerts
	if len(alerts) > w.max {
		alerts = alerts[:w.max]
	}
	if alerts == nil {
		alerts = []rules.Alert{}
	}
	return WebhookPayload{
		Version: PayloadVersion, IdempotencyKey: n.IdempotencyKey, Receiver: n.Receiver,
		GroupKey: n.GroupKey, GroupLabels: n.GroupLabels, Count: n.Count, Truncated: n.Count - len(alerts),
		Total: n.Total, Seq: n.Seq, SentAt: now.UTC(), Alerts: alerts, Resolved: n.Resolved,
	}
}

// Sign returns the SignatureHeader value for body at time t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of VerifySignature.
var (
	ErrSignatureMissing  = errors.New("signature header missing or malformed")
	ErrSignatureMismatch = errors.New("signature does not match")
	ErrSignatureExpired  = errors.New("signature timestamp outside tolerance (replay?)")
)

// VerifySignature checks an X-Kubesift-Signature header against the raw
// request body: the HMAC must match (compared in constant time) and the
// timestamp must be within tolerance of now, so a captured request replayed
// later is refused. A receiver that must also refuse a replay inside the
// tolerance remembers Idempotency-Key values for that long. It is
// self-contained (standard library only) so receivers can copy it.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			// Several v1 values are allowed (a sender rotating secrets).
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrSignatureMissing
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return ErrSignatureMismatch
	}
	// The timestamp is checked after the HMAC: only an authentic header
	// says anything about when it was made.
	d := now.Sub(time.Unix(sec, 0))
	if d < 0 {
		d = -d
	}
	if d > tolerance {
		return ErrSignatureExpired
	}
	return nil
}

// AMPayload is the body Alertmanager's webhook_config sends (version "4"),
// so receivers written for Alertmanager can be reused.
type AMPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []AMAlert         `json:"alerts"`
}

// AMAlert is one alert of an AMPayload.
type AMAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// AlertmanagerPayload converts n to Alertmanager's webhook payload. kubesift
// alerts are events, so every alert is "firing" and EndsAt is zero, except
// in a resolved notification ("resolved", EndsAt its time); labels are the
// routing labels (multi-valued ones joined by ","), annotations carry the
// title, the message and the IDs.
func AlertmanagerPayload(n *Notification, maxAlerts int) AMPayload {
	alerts := n.Alerts
	if maxAlerts > 0 && len(alerts) > maxAlerts {
		alerts = alerts[:maxAlerts]
	}
	status, endsAt := "firing", time.Time{}
	if n.Resolved {
		status, endsAt = "resolved", n.Time.UTC()
	}
	p := AMPayload{
		Version: "4", GroupKey: n.GroupKey, TruncatedAlerts: n.Count - len(alerts), Status: status,
		Receiver: n.Receiver, GroupLabels: n.GroupLabels, CommonAnnotations: map[string]string{},
		ExternalURL: "", Alerts: make([]AMAlert, 0, len(alerts)),
	}
	if p.GroupLabels == nil {
		p.GroupLabels = map[string]string{}
	}
	for i := range alerts {
		a := &alerts[i]
		ls := Labels(a)
		flat := make(map[string]string, len(ls))
		for k := range ls {
			flat[k] = ls.Get(k)
		}
		sum := sha256.Sum256([]byte(a.ID))
		p.Alerts = append(p.Alerts, AMAlert{
			Status: status, Labels: flat,
			Annotations: map[string]string{"summary": a.Title, "description": a.Message, "alert_id": a.ID, "record_id": a.RecordID},
			StartsAt:    a.Time.UTC(), EndsAt: endsAt, Fingerprint: hex.EncodeToString(sum[:8]),
		})
	}
	p.CommonLabels = commonLabels(p.Alerts)
	return p
}

// commonLabels are the labels every alert has with the same value.
func commonLabels(as []AMAlert) map[string]string {
	out := map[string]string{}
	if len(as) == 0 {
		return out
	}
	keys := make([]string, 0, len(as[0].Labels))
	for k := range as[0].Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := as[0].Labels[k]
		same := true
		for _, a := range as[1:] {
			if a.Labels[k] != v {
				same = false
				break
			}
		}
		if same {
			out[k] = v
		}
	}
	return out
}
