// Package ecs builds the documents kubesift stores: ECS fields for every
// record and alert, the audit record under kubernetes.audit.* with the field
// names of Elastic's Kubernetes audit_logs integration (so Elastic Security's
// prebuilt Kubernetes rules run on kubesift data), Events under
// kubernetes.event.*, objects (posture) under kubernetes.object.*, and
// posture findings and scores under kubesift.finding.* and
// kubesift.posture_score.* (FindingDocs, finding.go).
//
// The mappings that go with the documents live here too (mapping.go), so
// documents and mappings cannot drift; sink/elasticsearch installs them and
// every document store writes exactly what Builder returns. The field-by-field
// decisions are in docs/elasticsearch.md.
//
// A Builder never fails on content it can make indexable: a request or
// response body that would conflict with the mapping loses the offending
// values (named in kubesift.record.dropped_fields), a body over
// max_body_bytes is left out (kubesift.record.body_dropped). It fails — with
// an error naming the field — only when the record itself is unusable (no
// typed view, an object that is not JSON); the processor sends those to the
// dead-letter topic.
package ecs

import (
	"bytes"
	"fmt"
	"time"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink"
)

// Builder turns records and alerts into documents. It is safe for
// concurrent use.
type Builder struct {
	audit, events, posture stream
	alerts                 string
	maxBody                int
	// Now stamps event.ingested (Elastic's prebuilt rules use it as their
	// timestamp); time.Now unless a test sets it before first use.
	Now func() time.Time
}

// stream is a data stream name and the data_stream.* fields derived from it.
type stream struct {
	name string
	ds   dataStream
}

// New returns a Builder for the configured stream names.
func New(cfg config.ElasticsearchConfig) (*Builder, error) {
	b := &Builder{alerts: cfg.AlertsIndex, maxBody: cfg.MaxBodyBytes, Now: time.Now}
	for _, s := range []struct {
		field, name string
		dst         *stream
	}{
		{"streams.audit", cfg.Streams.Audit, &b.audit},
		{"streams.events", cfg.Streams.Events, &b.events},
		{"streams.posture", cfg.Streams.Posture, &b.posture},
	} {
		typ, dataset, ns, ok := config.StreamName(s.name)
		if !ok {
			return nil, fmt.Errorf("ecs: sink.elasticsearch.%s: %q is not <type>-<dataset>-<namespace>", s.field, s.name)
		}
		*s.dst = stream{name: s.name, ds: dataStream{Type: typ, Dataset: dataset, Namespace: ns}}
	}
	if b.alerts == "" {
		return nil, fmt.Errorf("ecs: sink.elasticsearch.alerts_index: must not be empty")
	}
	if b.maxBody <= 0 {
		b.maxBody = 256 << 10
	}
	return b, nil
}

// Index returns the data stream of a record source.
func (b *Builder) Index(s record.Source) string {
	switch s {
	case record.SourceAudit:
		return b.audit.name
	case record.SourceEvent:
		return b.events.name
	}
	return b.posture.name
}

// AlertsIndex is the index alerts go to.
func (b *Builder) AlertsIndex() string { return b.alerts }

// FieldError is a record the Builder cannot turn into a document; Field
// names the record field at fault (the dead-letter reason).
type FieldError struct {
	ID    string
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("ecs: record %s: %s: %s", e.ID, e.Field, e.Msg)
}

// Record builds the document of a record: Index is the data stream of its
// source, ID the record ID.
func (b *Builder) Record(r *record.Record) (sink.Doc, error) {
	if r == nil {
		return sink.Doc{}, &FieldError{Field: "record", Msg: "nil"}
	}
	if r.ID == "" {
		return sink.Doc{}, &FieldError{Field: "id", Msg: "missing"}
	}
	var (
		v   any
		idx string
		err error
	)
	switch r.Source {
	case record.SourceAudit:
		return b.auditRecord(r)
	case record.SourceEvent:
		idx = b.events.name
		v, err = b.eventDoc(r)
	case record.SourceObject:
		idx = b.posture.name
		v, err = b.objectDoc(r)
	default:
		return sink.Doc{}, &FieldError{ID: r.ID, Field: "source", Msg: fmt.Sprintf("unknown source %q", r.Source)}
	}
	if err != nil {
		return sink.Doc{}, err
	}
	body, err := docJSON.Marshal(v)
	if err != nil {
		return sink.Doc{}, &FieldError{ID: r.ID, Field: "object", Msg: "encode document: " + err.Error()}
	}
	return sink.Doc{Index: idx, ID: r.ID, Body: validUTF8(body)}, nil
}

// auditRecord is Record for audit records (nearly all of them): the
// document is built in pooled parts and written append-style, without
// reflection; encodeAudit declines what only docJSON reproduces.
func (b *Builder) auditRecord(r *record.Record) (sink.Doc, error) {
	ps := auditPool.Get().(*auditParts)
	defer func() {
		*ps = auditParts{} // drop the references into r before pooling
		auditPool.Put(ps)
	}()
	if err := b.fillAudit(r, ps); err != nil {
		return sink.Doc{}, err
	}
	body, ok := encodeAudit(&ps.doc)
	if !ok {
		var err error
		if body, err = docJSON.Marshal(&ps.doc); err != nil {
			return sink.Doc{}, &FieldError{ID: r.ID, Field: "object", Msg: "encode document: " + err.Error()}
		}
	}
	return sink.Doc{Index: b.audit.name, ID: r.ID, Body: validUTF8(body)}, nil
}

// validUTF8 replaces invalid UTF-8 (which Elasticsearch's parser refuses)
// with U+FFFD. Such bytes can only sit inside JSON strings, so the document
// stays valid JSON; the check is a fast scan, the copy rare.
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

// docJSON encodes documents: struct fields in declaration order, no HTML
// escaping (ES does not need it), maps sorted for stable output. It leaves
// invalid UTF-8 as it is; validUTF8 repairs the result.
var docJSON = jsoniter.Config{EscapeHTML: false, SortMapKeys: true}.Froze()

// The ECS groups shared by all documents.

type dataStream struct {
	Type      string `json:"type"`
	Dataset   string `json:"dataset"`
	Namespace string `json:"namespace"`
}

type event struct {
	Kind     string     `json:"kind"`
	Category []string   `json:"category,omitempty"`
	Type     []string   `json:"type,omitempty"`
	Action   string     `json:"action,omitempty"`
	Outcome  string     `json:"outcome,omitempty"`
	Dataset  string     `json:"dataset"`
	ID       string     `json:"id"`
	Created  *time.Time `json:"created,omitempty"`
	Ingested time.Time  `json:"ingested"`
	Severity int        `json:"severity,omitempty"`
	Risk     float64    `json:"risk_score,omitempty"`
}

type user struct {
	Name  string     `json:"name,omitempty"`
	ID    string     `json:"id,omitempty"`
	Group *userGroup `json:"group,omitempty"`
}

type userGroup struct {
	Name []string `json:"name,omitempty"`
}

// source is where a request came from: the origin address the processor
// resolved (record.Record.Origin), with its location and AS when the
// GeoIP databases know them.
type source struct {
	IP  string     `json:"ip"`
	Geo *sourceGeo `json:"geo,omitempty"`
	AS  *sourceAS  `json:"as,omitempty"`
}

type sourceGeo struct {
	ContinentCode  string    `json:"continent_code,omitempty"`
	ContinentName  string    `json:"continent_name,omitempty"`
	CountryISOCode string    `json:"country_iso_code,omitempty"`
	CountryName    string    `json:"country_name,omitempty"`
	RegionISOCode  string    `json:"region_iso_code,omitempty"`
	RegionName     string    `json:"region_name,omitempty"`
	CityName       string    `json:"city_name,omitempty"`
	Location       *geoPoint `json:"location,omitempty"`
}

type geoPoint struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

type sourceAS struct {
	Number       uint32 `json:"number,omitempty"`
	Organization *asOrg `json:"organization,omitempty"`
}

type asOrg struct {
	Name string `json:"name"`
}

type userAgent struct {
	Original string `json:"original"`
}

type orchestrator struct {
	Type      string        `json:"type"`
	Cluster   cluster       `json:"cluster"`
	Namespace string        `json:"namespace,omitempty"`
	Resource  *orchResource `json:"resource,omitempty"`
}

type cluster struct {
	Name string `json:"name,omitempty"`
	ID   string `json:"id,omitempty"`
}

type orchResource struct {
	Type string `json:"type,omitempty"`
	Name string `json:"name,omitempty"`
}

// kubesiftMeta is what kubesift itself says about a record document.
type kubesiftMeta struct {
	Record recordMeta `json:"record"`
	// Source is kubesift's own part of the origin, which ECS has no
	// field for: the address class and the network lists it is on.
	Source *originMeta `json:"source,omitempty"`
}

type originMeta struct {
	Class string   `json:"class"`
	Lists []string `json:"lists,omitempty"`
}

type recordMeta struct {
	ID           string    `json:"id"`
	Source       string    `json:"source"`
	APIVersion   string    `json:"api_version,omitempty"`
	Key          string    `json:"key,omitempty"`
	ObservedTime time.Time `json:"observed_time"`
	// Truncated and Redacted are the collector's flags (record.Flags).
	Truncated bool     `json:"truncated,omitempty"`
	Redacted  []string `json:"redacted,omitempty"`
	// BodyDropped names bodies left out of this document: over
	// max_body_bytes ("requestObject: too large") or not JSON.
	BodyDropped []string `json:"body_dropped,omitempty"`
	// DroppedFields names values removed because they would conflict with
	// the mapping.
	DroppedFields []string `json:"dropped_fields,omitempty"`
}

func newRecordMeta(r *record.Record) recordMeta {
	return recordMeta{
		ID: r.ID, Source: string(r.Source), APIVersion: r.APIVersion, Key: r.Key,
		ObservedTime: r.ObservedTime, Truncated: r.Flags.Truncated, Redacted: r.Flags.Redacted,
	}
}

func newOrchestrator(r *record.Record) orchestrator {
	return orchestrator{Type: "kubernetes", Cluster: cluster{Name: r.Cluster.Name, ID: r.Cluster.UID}}
}

// eventTime is @timestamp: the time the record describes, or when the
// collector saw it if the record carries no time at all.
func eventTime(r *record.Record) time.Time {
	if r.EventTime.IsZero() {
		return r.ObservedTime
	}
	return r.EventTime
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
