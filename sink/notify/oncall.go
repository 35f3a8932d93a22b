package notify

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/rules"
)

// Helpers of the on-call integrations (Alertmanager, PagerDuty, Opsgenie):
// systems that keep an alert open until told it resolved.

// GroupIncidentKey is the stable identity of a receiver's group in an
// on-call system (PagerDuty's dedup_key, Opsgenie's alias): the hex
// SHA-256 of receiver and group key, 64 characters. Every notification of
// the group, and its resolution, carries it, so they land on one incident.
func GroupIncidentKey(receiver, groupKey string) string {
	h := sha256.New()
	h.Write([]byte(receiver))
	h.Write([]byte{0})
	h.Write([]byte(groupKey))
	return hex.EncodeToString(h.Sum(nil))
}

// NewHTTPClient builds the HTTP client of a receiver: timeout per request,
// and a TLS client configuration from tc (field names it in errors).
func NewHTTPClient(timeout time.Duration, tc config.ReceiverTLSConfig, field string) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12,
		// For test set-ups only; it is in the operator's file for all to see.
		InsecureSkipVerify: tc.InsecureSkipVerify}
	if tc.CAFile != "" {
		pool, err := tlsfiles.CertPool(tc.CAFile, field+".ca_file")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if tc.CertFile != "" || tc.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
		if err != nil {
			// Its errors name files and parse problems, never key material.
			return nil, fmt.Errorf("%s.cert_file/key_file: %w", field, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return &http.Client{Timeout: timeout, Transport: t}, nil
}

// severityOf maps the highest severity of alerts through m (a complete
// mapping, see config.SeverityMap); no alert, or none with a valid
// severity, counts as info.
func severityOf(m map[string]string, alerts []rules.Alert) string {
	return m[min(max(maxSeverity(alerts), rules.SeverityInfo), rules.SeverityCritical).String()]
}

// redactedDetail makes StatusError.Detail of an error response with the
// secrets cut out first: the on-call services answer a bad request with a
// short reason, useful in the delivery state, which must still never carry
// a key — not even its start, which a cut after the redaction would leave.
func redactedDetail(secrets ...string) func([]byte) string {
	return func(b []byte) string {
		for _, s := range secrets {
			if s != "" {
				b = bytes.ReplaceAll(b, []byte(s), []byte("<secret>"))
			}
		}
		return shortDetail(b)
	}
}

// firstAlert returns the oldest alert of n, or nil for a notification that
// lists none (every alert only counted).
func firstAlert(n *Notification) *rules.Alert {
	if len(n.Alerts) == 0 {
		return nil
	}
	return &n.Alerts[0]
}

// DefaultIncidentTitle is the default one-line title of an incident
// (PagerDuty summary, Opsgenie message): severity, rule title, cluster and
// how many alerts.
const DefaultIncidentTitle = `{{ with .Alerts }}{{ with index . 0 }}[{{ .Severity }}] {{ .Title }} in {{ .Cluster }}{{ end }}{{ else }}kubesift alerts of {{ .GroupKey }}{{ end }}{{ if gt .Count 1 }} ({{ .Count }} alerts){{ end }}`

// DefaultIncidentDescription is the default long text (Opsgenie
// description): one line per listed alert, and how many more there were.
const DefaultIncidentDescription = `{{ range .Alerts }}{{ .Time.UTC.Format "2006-01-02T15:04:05Z07:00" }} {{ .Message }}
{{ end }}{{ if .Truncated }}… and {{ .Truncated }} more
{{ end }}`

// parseTemplate parses text, or def when text is empty, naming field.
func parseTemplate(field, text, def string) (*Template, error) {
	if text == "" {
		text = def
	}
	return ParseTemplate(field, text)
}
