// Package notify delivers kubesift alerts to people and systems, on the
// model of Prometheus Alertmanager: a routing tree picks receivers by label
// matchers, a Dispatcher aggregates alerts into groups (group_wait,
// group_interval, repeat_interval), inhibition and silences mute alerts, and
// each receiver's integrations (Slack, webhooks, Alertmanager, PagerDuty,
// Opsgenie, Microsoft Teams, e-mail) send Notifications through one retry
// stage.
//
// # Labels
//
// Routing, grouping, inhibition and silences see an alert through its labels
// (Labels): severity, rule_id, title, source, cluster, namespace, user, verb,
// resource, name, and one value per MITRE tactic, technique and tag. See
// package internal/match for the matcher syntax.
//
// # Digests
//
// A Digest (one cluster's daily figures, rendered) is not a Notification:
// it goes straight to the integrations that implement DigestNotifier
// (TakesDigest), under the same contract, and DigestClaims lets one of
// several notifier replicas send each.
//
// The Kafka loop that reads the alerts topic and hands each alert to a
// Dispatcher, committing its offset once the alert is final, is
// pipeline.NotifyConsumer: this package sits below pipeline and imports
// nothing above sink.
//
// # The Notifier contract
//
// A Notifier sends one Notification and says whether a failure is worth
// retrying, exactly like Alertmanager's notify.Notifier:
//
//   - Notify returns (false, nil) when the receiver accepted it (2xx).
//   - (true, err) when a retry may succeed: 429, 5xx, or no answer at all
//     (refused, reset, timeout) — the classification is sink.Retryable's,
//     never the Notifier's own. A 429's Retry-After travels in the error
//     (sink.StatusError.After) and the retry stage waits that long.
//   - (false, err) when it never will: any other 4xx, an unusable payload.
//   - E-mail has no HTTP status: Email classifies SMTP the same way (no
//     answer and 4xx replies retried, 5xx replies not).
//   - Errors never contain the receiver's URL or keys (see stripURL).
//
// Retries live only in Retry (the retry stage), which wraps sink.Do. Every
// Notification carries an IdempotencyKey, deterministic in the receiver, the
// group key and the set of alerts it reports, so a retry — and a re-send of
// the same alerts after a notifier restart — carries the same key and a
// receiver can drop the duplicate.
package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// Notification is what a receiver gets for one flush of one group.
type Notification struct {
	// Receiver is the receiver's name in the configuration.
	Receiver string
	// GroupKey identifies the group: the route and the values of its
	// group_by labels, e.g. `{}/{severity=~"high|critical"}:{cluster="prod",rule_id="x"}`.
	GroupKey string
	// GroupLabels are the group_by labels and their values.
	GroupLabels map[string]string
	// Alerts are the new alerts since the group's previous notification,
	// oldest first, at most notify.max_alerts_per_group of them.
	Alerts []rules.Alert
	// Count is how many new alerts this notification reports; Count -
	// len(Alerts) of them were only counted.
	Count int
	// Total is how many alerts the group has taken since it opened.
	Total int
	// Seq numbers the group's notifications from 1; a resolved one keeps
	// the Seq of the notification it resolves.
	Seq int
	// Time is when the group was flushed.
	Time time.Time
	// IdempotencyKey is deterministic in receiver, group key and the IDs of
	// the alerts reported (see IdempotencyKey).
	IdempotencyKey string
	// Resolved marks the notification sent when a group closes, for the
	// integrations that report resolution (send_resolved); Alerts are
	// then the alerts the group reported since it last resolved (the
	// newest notify.max_alerts_per_group), Count how many.
	Resolved bool

	// ids are every reported alert's ID (also those only counted), for the
	// delivery state.
	ids []string
}

// AlertIDs returns the IDs of every alert the notification reports.
func (n *Notification) AlertIDs() []string { return n.ids }

// Truncated is how many reported alerts are not in Alerts.
func (n *Notification) Truncated() int { return n.Count - len(n.Alerts) }

// Notifier sends notifications; see the package doc for the contract.
type Notifier interface {
	Notify(ctx context.Context, n *Notification) (retry bool, err error)
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n *Notification) (bool, error)

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n *Notification) (bool, error) { return f(ctx, n) }

// IdempotencyKey derives a notification's key: the first 128 bits of
// SHA-256 over the receiver, the group key and the sorted alert IDs, hex.
// Sorting makes it independent of arrival order, so the same alerts
// re-delivered by Kafka after a crash and flushed together again give the
// same key.
func IdempotencyKey(receiver, groupKey string, alertIDs []string) string {
	ids := append([]string(nil), alertIDs...)
	sort.Strings(ids)
	h := sha256.New()
	// NUL separators: no field can contain one, so distinct inputs never
	// concatenate to the same bytes.
	io.WriteString(h, receiver)
	h.Write([]byte{0})
	io.WriteString(h, groupKey)
	for _, id := range ids {
		h.Write([]byte{0})
		io.WriteString(h, id)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Retry is the retry stage: it sends n through notifier with sink.Do (the
// one retry wrapper; sink.Retryable is the one classifier, applied inside
// the notifiers) until it is accepted, fails for good, or ctx ends.
// onRetry, if not nil, sees each failed attempt that will be retried.
func Retry(ctx context.Context, b backoff.Policy, notifier Notifier, n *Notification, onRetry func(attempt int, err error)) error {
	return sink.Do(ctx, b, func(ctx context.Context) (bool, error) {
		return notifier.Notify(ctx, n)
	}, onRetry)
}

// Labels returns the labels routing, grouping, inhibition and silences see
// for an alert (see the package doc).
func Labels(a *rules.Alert) match.Labels {
	l := match.Labels{
		"severity":  {a.Severity.String()},
		"rule_id":   {a.RuleID},
		"alertname": {a.RuleID},
		"title":     {a.Title},
		"source":    {string(a.Source)},
		"cluster":   {a.Cluster},
	}
	for k, v := range map[string]string{"namespace": a.Namespace, "user": a.User, "verb": a.Verb, "resource": a.Resource, "name": a.Name} {
		if v != "" {
			l[k] = []string{v}
		}
	}
	if len(a.Mitre.Tactics) > 0 {
		l["tactic"] = a.Mitre.Tactics
	}
	if len(a.Mitre.Techniques) > 0 {
		l["technique"] = a.Mitre.Techniques
	}
	if len(a.Tags) > 0 {
		l["tag"] = a.Tags
	}
	return l
}

// post sends body to target and classifies the answer with sink.Retryable.
// The error never contains target: net/http's *url.Error prints the whole
// URL, whose path or query is the credential of a Slack webhook, so it is
// replaced by its operation and cause. detail, if set, turns a short
// response body into StatusError.Detail (only for receivers whose error
// bodies are known to be short codes, like Slack's "invalid_payload").
func post(ctx context.Context, client *http.Client, op, target string, body []byte, header http.Header, detail bool) (bool, error) {
	var d func([]byte) string
	if detail {
		d = shortDetail
	}
	return postDetail(ctx, client, op, target, body, header, d)
}

// postDetail is post with the function that makes StatusError.Detail of
// the start of an error response (nil: none).
func postDetail(ctx context.Context, client *http.Client, op, target string, body []byte, header http.Header, detail func([]byte) string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, stripURL(err))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		err = stripURL(err)
		return sink.Retryable(0, err), fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	// Read a little of the body (for Detail) and drain the rest so the
	// connection is reused.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	se := &sink.StatusError{Op: op, StatusCode: resp.StatusCode, After: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if detail != nil {
		se.Detail = detail(head)
	}
	return sink.Retryable(resp.StatusCode, nil), se
}

// urlFreeError keeps a *url.Error's operation and cause, not its URL. It
// unwraps to the cause so that errors.Is(err, context.DeadlineExceeded) and
// the classifier still work.
type urlFreeError struct {
	op  string
	err error
}

func (e *urlFreeError) Error() string { return e.op + ": " + e.err.Error() }
func (e *urlFreeError) Unwrap() error { return e.err }

// stripURL removes every URL net/url and net/http put into err.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &urlFreeError{op: ue.Op, err: stripURL(ue.Err)}
	}
	return err
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// shortDetail keeps a short, printable, single-line server reason.
func shortDetail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80]
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
}
