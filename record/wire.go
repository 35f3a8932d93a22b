package record

import (
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Header names of the Kafka wire format (see the package doc).
const (
	HeaderSchema  = "kubesift-schema"
	HeaderID      = "kubesift-id"
	HeaderSource  = "kubesift-source"
	HeaderCluster = "kubesift-cluster"
)

// Header is one message header; kept free of any Kafka client type so that
// this package does not depend on one.
type Header struct {
	Key   string
	Value []byte
}

// Marshal encodes r as the wire envelope.
func Marshal(r *Record) ([]byte, error) {
	if r.Object == nil {
		if err := r.SyncObject(); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("record %s: marshal envelope: %w", r.ID, err)
	}
	return b, nil
}

// Headers returns the wire headers of r.
func Headers(r *Record) []Header {
	return []Header{
		{Key: HeaderSchema, Value: []byte(strconv.Itoa(SchemaVersion))},
		{Key: HeaderID, Value: []byte(r.ID)},
		{Key: HeaderSource, Value: []byte(r.Source)},
		{Key: HeaderCluster, Value: []byte(r.Cluster.Name)},
	}
}

// Unmarshal decodes a wire envelope and its typed view. Errors name the field.
func Unmarshal(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, jsonError("", err)
	}
	switch {
	case r.Schema != SchemaVersion:
		return nil, fmt.Errorf("schema %d (this build reads %d): %w", r.Schema, SchemaVersion, ErrSchema)
	case r.ID == "":
		return nil, &FieldError{Field: "id", Msg: "missing"}
	case !r.Source.Valid():
		return nil, &FieldError{Field: "source", Msg: fmt.Sprintf("unknown source %q", r.Source)}
	case len(r.Object) == 0 || r.Object[0] != '{':
		return nil, &FieldError{Field: "object", Msg: "missing or not a JSON object"}
	}
	var err error
	switch {
	case r.Source == SourceAudit:
		r.Audit = new(auditv1.Event)
		err = unmarshalTyped(r.Object, r.Audit)
	case r.Source == SourceEvent && r.APIVersion == APIEventsV1:
		r.Event = new(eventsv1.Event)
		err = unmarshalTyped(r.Object, r.Event)
	case r.Source == SourceEvent && r.APIVersion == APICoreV1:
		r.CoreEvent = new(corev1.Event)
		err = unmarshalTyped(r.Object, r.CoreEvent)
	case r.Source == SourceEvent:
		return nil, &FieldError{Field: "api_version", Msg: fmt.Sprintf("unknown Event API %q", r.APIVersion)}
	}
	if err != nil {
		return nil, jsonError("object", err)
	}
	return &r, nil
}
