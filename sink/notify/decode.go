package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// Headers of an alert message on the alerts topic, as the processor
// writes them (pipeline.Processor.produceAlert): the record wire headers.
const (
	HeaderSchema  = record.HeaderSchema
	HeaderID      = record.HeaderID
	HeaderCluster = record.HeaderCluster
)

// alertSchema is the only schema version this notifier reads.
var alertSchema = strconv.Itoa(record.SchemaVersion)

// maxAlertBytes caps one alert message; the processor's alerts are a few
// KiB.
const maxAlertBytes = 1 << 20

// DecodeAlertMessage decodes one alerts-topic message: value is the JSON of
// rules.Alert. The schema header, when present, must be "1"; the ID and
// cluster headers, when present, must agree with the value; id, rule_id,
// cluster, a valid severity and a time are required. Unknown JSON fields
// are ignored (a newer processor may add some within schema 1). Errors name
// the field.
func DecodeAlertMessage(m kafka.Message) (rules.Alert, error) {
	var a rules.Alert
	hs := map[string]string{}
	for _, h := range m.Headers {
		hs[h.Key] = string(h.Value)
	}
	if s, ok := hs[HeaderSchema]; ok && s != alertSchema {
		return a, fmt.Errorf("header %s: schema %q, this notifier reads %q", HeaderSchema, s, alertSchema)
	}
	if len(m.Value) > maxAlertBytes {
		return a, fmt.Errorf("value: %d bytes, more than %d", len(m.Value), maxAlertBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	if err := dec.Decode(&a); err != nil {
		return rules.Alert{}, fmt.Errorf("value: %w", err)
	}
	if dec.More() {
		return rules.Alert{}, errors.New("value: more than one JSON value")
	}
	switch {
	case a.ID == "":
		return rules.Alert{}, errors.New("value: id: missing")
	case a.RuleID == "":
		return rules.Alert{}, errors.New("value: rule_id: missing")
	case a.Cluster == "":
		return rules.Alert{}, errors.New("value: cluster: missing")
	case a.Severity < rules.SeverityInfo || a.Severity > rules.SeverityCritical:
		return rules.Alert{}, errors.New("value: severity: missing")
	case a.Time.IsZero():
		return rules.Alert{}, errors.New("value: time: missing")
	}
	if id, ok := hs[HeaderID]; ok && id != a.ID {
		return rules.Alert{}, fmt.Errorf("header %s: %q, but the value's id is %q", HeaderID, id, a.ID)
	}
	if c, ok := hs[HeaderCluster]; ok && c != a.Cluster {
		return rules.Alert{}, fmt.Errorf("header %s: %q, but the value's cluster is %q", HeaderCluster, c, a.Cluster)
	}
	return a, nil
}
