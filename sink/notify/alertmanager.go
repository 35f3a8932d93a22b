package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// Alertmanager posts a notification's alerts to Prometheus Alertmanager's
// API v2 (POST /api/v2/alerts) on every configured URL, as Prometheus does
// with an HA pair: Alertmanager then groups, silences and routes them with
// the rest of the organisation's alerts.
//
// A kubesift alert is an event, so it is posted with an endsAt end_after
// after its startsAt — or after now, if it is delivered late — and resolves
// in Alertmanager by itself; a resolved notification posts the same alerts
// (same labels, so the same Alertmanager alerts) with endsAt = now.
type Alertmanager struct {
	targets  []string // <url>/api/v2/alerts
	header   http.Header
	secret   string // the bearer token or password, for redaction
	endAfter time.Duration
	kibana   string
	dataView string
	client   *http.Client
	// Now is the clock of endsAt (tests).
	Now func() time.Time
}

// NewAlertmanager builds an Alertmanager notifier; client carries the
// timeout and TLS configuration (NewHTTPClient).
func NewAlertmanager(cfg config.AlertmanagerConfig, client *http.Client) (*Alertmanager, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("alertmanager: no URLs")
	}
	a := &Alertmanager{header: http.Header{}, endAfter: cfg.EndAfter, kibana: cfg.KibanaURL,
		dataView: cfg.KibanaDataView, client: client, Now: time.Now}
	if a.endAfter <= 0 {
		a.endAfter = 5 * time.Minute
	}
	for _, u := range cfg.URLs {
		a.targets = append(a.targets, strings.TrimRight(u, "/")+"/api/v2/alerts")
	}
	a.header.Set("User-Agent", "kubesift-notify")
	switch {
	case cfg.BearerToken != "":
		a.header.Set("Authorization", "Bearer "+string(cfg.BearerToken))
		a.secret = string(cfg.BearerToken)
	case cfg.BasicAuth != nil:
		creds := cfg.BasicAuth.Username + ":" + string(cfg.BasicAuth.Password)
		a.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
		a.secret = string(cfg.BasicAuth.Password)
	}
	return a, nil
}

// AMPostableAlert is one alert of the API's POST /api/v2/alerts body
// (Alertmanager's postableAlert).
type AMPostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// maxAnnotation bounds one annotation value: a message is a sentence, and
// Alertmanager keeps every alert in memory.
const maxAnnotation = 16 << 10

// Alerts builds the body for n at time now: one postable alert per listed
// alert (the counted-only ones have no labels to post).
func (a *Alertmanager) Alerts(n *Notification, now time.Time) []AMPostableAlert {
	out := make([]AMPostableAlert, 0, len(n.Alerts))
	for i := range n.Alerts {
		al := &n.Alerts[i]
		starts := al.Time.UTC()
		if starts.IsZero() {
			starts = now.UTC()
		}
		// At least end_after from now: an alert delivered late (a retry,
		// a restart's re-read) must arrive firing — an alert that arrives
		// resolved is never notified by Alertmanager.
		ends := maxTime(starts, now.UTC()).Add(a.endAfter)
		if n.Resolved {
			// Never before startsAt, which Alertmanager refuses (a clock
			// ahead of ours).
			ends = maxTime(starts, now.UTC())
		}
		link := discoverURL(a.kibana, a.dataView, n.Alerts[i:i+1])
		out = append(out, AMPostableAlert{
			Labels: AMLabels(al), Annotations: amAnnotations(al, link),
			StartsAt: starts, EndsAt: ends, GeneratorURL: link,
		})
	}
	return out
}

// AMLabels are an alert's labels in Alertmanager: the routing labels
// (Labels; alertname is the rule ID), multi-valued ones joined by ",",
// empty ones dropped (Alertmanager treats an empty label as absent).
func AMLabels(a *rules.Alert) map[string]string {
	ls := Labels(a)
	out := make(map[string]string, len(ls))
	for k := range ls {
		if v := ls.Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

func amAnnotations(a *rules.Alert, link string) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"summary": a.Title, "description": a.Message, "alert_id": a.ID, "record_id": a.RecordID,
		"user_agent": a.UserAgent, "source_ip": a.SourceIP, "audit_id": a.AuditID, "kibana_url": link,
	} {
		if v != "" {
			out[k] = cut(v, maxAnnotation)
		}
	}
	return out
}

// Notify implements Notifier: the notification is accepted when at least
// one Alertmanager accepted it (clustered ones gossip it), retried
// when every one failed and all of them retryably; one that refused the
// body for good (4xx) would refuse it again.
func (a *Alertmanager) Notify(ctx context.Context, n *Notification) (bool, error) {
	if len(n.Alerts) == 0 {
		return false, nil // nothing with labels to post
	}
	body, err := json.Marshal(a.Alerts(n, a.Now()))
	if err != nil {
		return false, fmt.Errorf("alertmanager: encode alerts: %w", err)
	}
	var errs []error
	accepted, retry := false, true
	for i, t := range a.targets {
		// Every one, like Prometheus: they do not all gossip (a pair
		// split by a partition, or not clustered at all).
		r, err := postDetail(ctx, a.client, fmt.Sprintf("alertmanager[%d] post", i), t, body, a.header.Clone(), redactedDetail(a.secret))
		if err == nil {
			accepted = true
			continue
		}
		errs = append(errs, err)
		retry = retry && r
	}
	if accepted {
		return false, nil
	}
	return retry, errors.Join(errs...)
}
