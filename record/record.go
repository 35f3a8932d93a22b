// Package record defines the one envelope that every kubesift room exchanges:
// collectors produce Records, Kafka carries them, the rules engine reads them
// and the sinks index them. It is a top-level package (not part of collector or
// sink) because it is the language all rooms speak; putting it inside any one
// room would make every other room depend on that room.
//
// # Identity
//
// A Record's ID is a pure function of the object it carries, so a re-delivery
// anywhere on the path (webhook retry, tail restart, Kafka redelivery) carries
// the same ID and the Elasticsearch sink turns at-least-once delivery into one
// document:
//
//   - audit: "<auditID>:<stage>" — one audit request yields one record per stage.
//   - core/v1 and events.k8s.io/v1 Event: "<uid>:<count>" where count is the
//     series count (or the deprecated/legacy count, at least 1); every
//     repetition of an Event is its own record, and both API views of the same
//     occurrence share one ID.
//   - object: "<uid>:<resourceVersion>".
//
// # Objects
//
// Objects (source "object") are the current state of a cluster's API objects,
// published by the collector's objects source on the compacted topic
// kubesift.objects so that the topic always holds the latest version of every
// object:
//
//   - key: KeyObjectRef, "<cluster>/<kind>/<namespace>/<name>" (namespace
//     empty for cluster-scoped kinds). Compaction keeps one message per key,
//     so the key names the object, not its UID: a re-created object replaces
//     the record of the one it succeeds.
//   - id: "<uid>:<resourceVersion>" (ObjectRecordID).
//   - api_version: the object's own (e.g. "apps/v1"); the object carries its
//     kind and apiVersion.
//   - event_time: when the collector observed the change (the informer's
//     notification); the API server records no change time on objects.
//   - initial_list: true when the record comes from the collector's initial
//     list of the kind (a new collector or leader lists every object once)
//     rather than from a watched change; absent otherwise. A consumer that
//     attributes changes to their authors (the posture consumer's actor)
//     treats such an object as possibly older than the collector.
//
// A deleted object is published as a Kafka tombstone: its key and a nil
// value, so that compaction eventually removes the object from the topic
// (after delete.retention.ms). The tombstone still carries the headers
// kubesift-id ("<uid>:<resourceVersion>" of the object's final version, as
// the delete notification reported it),
// kubesift-source "object" and kubesift-cluster, and its key names the
// cluster, kind, namespace and name: a consumer learns of the delete from
// ParseTombstone without a value to decode. In the collector a tombstone is
// a Record with Deleted set and no Object (NewObjectTombstone); Marshal
// refuses it, the publisher sends it with a nil value. A consumer that
// rebuilds its state from the topic later than delete.retention.ms after the
// delete sees neither the object nor its tombstone, which is the same state.
//
// # Wire format (Kafka)
//
// The message value is the JSON envelope produced by Marshal:
//
//	{"schema":1,"id":"…","cluster":{"name":"prod-eu","uid":"…"},"source":"audit",
//	 "api_version":"audit.k8s.io/v1","event_time":"RFC3339Nano","observed_time":"RFC3339Nano",
//	 "key":"prod-eu/alice","flags":{"truncated":true,"redacted":["secret-data"]},
//	 "object":{…the original object, verbatim JSON…}}
//
// The message key is Record.Key (see the Key* functions) and these headers are
// set so routers and dead-letter tools need not parse the value:
//
//	kubesift-schema   "1"
//	kubesift-id       Record.ID
//	kubesift-source   "audit" | "event" | "object"
//	kubesift-cluster  Record.Cluster.Name
//
// A consumer must reject a schema it does not know (Unmarshal does) rather than
// guess; new optional envelope fields may be added without a schema bump.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/netorigin"
)

// SchemaVersion is the version of the envelope written by Marshal.
const SchemaVersion = 1

// Source says which kind of input a Record came from.
type Source string

// The sources a Record can have.
const (
	SourceAudit  Source = "audit"
	SourceEvent  Source = "event"
	SourceObject Source = "object"
)

// Valid reports whether s is one of the known sources.
func (s Source) Valid() bool {
	return s == SourceAudit || s == SourceEvent || s == SourceObject
}

// API versions of the objects a Record can carry.
const (
	APIAuditV1      = "audit.k8s.io/v1"
	APIAuditV1beta1 = "audit.k8s.io/v1beta1"
	APICoreV1       = "v1"
	APIEventsV1     = "events.k8s.io/v1"
)

// Cluster identifies the cluster a Record comes from: a configured name and
// the UID of its kube-system namespace, which stays stable across renames.
type Cluster struct {
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

// Flags record what the collector did to a Record before publishing it, so
// that a reader of the indexed document can tell an edited record from the
// original.
type Flags struct {
	// Truncated is set when request/response bodies were dropped by the size policy.
	Truncated bool `json:"truncated,omitempty"`
	// Redacted lists the kinds of redaction applied (e.g. "secret-data").
	Redacted []string `json:"redacted,omitempty"`
}

// Record is the envelope. Object holds the original JSON; exactly one of the
// typed views (Audit, CoreEvent, Event) is set, matching Source and APIVersion.
// The typed views share no memory with Object beyond what encoding/json does,
// so a stage that edits the typed view (redaction) must re-encode Object with
// SyncObject.
type Record struct {
	Schema       int             `json:"schema"`
	ID           string          `json:"id"`
	Cluster      Cluster         `json:"cluster"`
	Source       Source          `json:"source"`
	APIVersion   string          `json:"api_version"`
	EventTime    time.Time       `json:"event_time"`
	ObservedTime time.Time       `json:"observed_time"`
	Key          string          `json:"key"`
	InitialList  bool            `json:"initial_list,omitempty"` // an object record of the collector's initial list (package doc)
	Flags        Flags           `json:"flags,omitzero"`
	Object       json.RawMessage `json:"object"`

	// Audit is the typed view of an audit.k8s.io Event (v1beta1 input is read
	// into the v1 type: its fields are a superset for everything we use).
	Audit *auditv1.Event `json:"-"`
	// CoreEvent is the typed view of a core/v1 Event.
	CoreEvent *corev1.Event `json:"-"`
	// Event is the typed view of an events.k8s.io/v1 Event.
	Event *eventsv1.Event `json:"-"`
	// Deleted marks an object's tombstone (NewObjectTombstone): no Object,
	// sent with a nil value.
	Deleted bool `json:"-"`
	// Origin is where an audit record's request came from (address class,
	// network lists, geo and AS): set once per record by the processor
	// (netorigin.Resolver.LookupSources) and read by the rules and the
	// document builder. Not part of the wire format; zero until set.
	Origin netorigin.Origin `json:"-"`
}

// NewAudit builds the Record for an audit event. raw is the event's original
// JSON; if nil it is encoded from ev.
func NewAudit(ev *auditv1.Event, raw []byte, c Cluster, observed time.Time) (*Record, error) {
	r := new(Record)
	if err := newAudit(r, ev, raw, c, observed); err != nil {
		return nil, err
	}
	return r, nil
}

// newAudit is NewAudit into r, which the stream decoder allocates with the
// event's parts (auditRecord).
func newAudit(r *Record, ev *auditv1.Event, raw []byte, c Cluster, observed time.Time) error {
	if ev.AuditID == "" {
		return &FieldError{Field: "auditID", Msg: "missing"}
	}
	if ev.Stage == "" {
		return &FieldError{Field: "stage", Msg: "missing"}
	}
	apiVersion := ev.APIVersion
	if apiVersion == "" {
		apiVersion = APIAuditV1
	}
	*r = Record{
		Schema:       SchemaVersion,
		ID:           AuditRecordID(ev),
		Cluster:      c,
		Source:       SourceAudit,
		APIVersion:   apiVersion,
		EventTime:    AuditTime(ev),
		ObservedTime: observed.UTC(),
		Key:          KeyAudit(c, ev.User.Username),
		Object:       raw,
		Audit:        ev,
	}
	return r.ensureObject()
}

// NewCoreEvent builds the Record for a core/v1 Event.
func NewCoreEvent(ev *corev1.Event, raw []byte, c Cluster, observed time.Time) (*Record, error) {
	if ev.UID == "" {
		return nil, &FieldError{Field: "metadata.uid", Msg: "missing"}
	}
	r := &Record{
		Schema:       SchemaVersion,
		ID:           EventRecordID(string(ev.UID), CoreEventCount(ev)),
		Cluster:      c,
		Source:       SourceEvent,
		APIVersion:   APICoreV1,
		EventTime:    CoreEventTime(ev),
		ObservedTime: observed.UTC(),
		Key:          KeyObject(c, string(ev.InvolvedObject.UID), ev.InvolvedObject.Namespace, ev.InvolvedObject.Name),
		Object:       raw,
		CoreEvent:    ev,
	}
	return r, r.ensureObject()
}

// NewEvent builds the Record for an events.k8s.io/v1 Event.
func NewEvent(ev *eventsv1.Event, raw []byte, c Cluster, observed time.Time) (*Record, error) {
	if ev.UID == "" {
		return nil, &FieldError{Field: "metadata.uid", Msg: "missing"}
	}
	r := &Record{
		Schema:       SchemaVersion,
		ID:           EventRecordID(string(ev.UID), EventCount(ev)),
		Cluster:      c,
		Source:       SourceEvent,
		APIVersion:   APIEventsV1,
		EventTime:    EventTime(ev),
		ObservedTime: observed.UTC(),
		Key:          KeyObject(c, string(ev.Regarding.UID), ev.Regarding.Namespace, ev.Regarding.Name),
		Object:       raw,
		Event:        ev,
	}
	return r, r.ensureObject()
}

func (r *Record) ensureObject() error {
	if r.Object != nil {
		return nil
	}
	return r.SyncObject()
}

// SyncObject re-encodes Object from the typed view. Stages that edit the typed
// view (redaction, size policy) call it so Object and the view agree.
func (r *Record) SyncObject() error {
	var v any
	switch {
	case r.Audit != nil:
		v = r.Audit
	case r.CoreEvent != nil:
		v = r.CoreEvent
	case r.Event != nil:
		v = r.Event
	default:
		return errors.New("record: no typed view to encode")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record %s: encode object: %w", r.ID, err)
	}
	r.Object = b
	return nil
}

// AuditRecordID is the deterministic ID of an audit event: auditID and stage.
func AuditRecordID(ev *auditv1.Event) string {
	return string(ev.AuditID) + ":" + string(ev.Stage)
}

// EventRecordID is the deterministic ID of one occurrence of an Event.
func EventRecordID(uid string, count int32) string {
	return uid + ":" + strconv.FormatInt(int64(count), 10)
}

// AuditTime is the time an audit event describes: the stage timestamp, or the
// request timestamp when the stage timestamp is missing (old v1beta1 logs).
func AuditTime(ev *auditv1.Event) time.Time {
	if !ev.StageTimestamp.IsZero() {
		return ev.StageTimestamp.UTC()
	}
	return ev.RequestReceivedTimestamp.UTC()
}

// CoreEventCount is the occurrence number of a core/v1 Event (at least 1).
func CoreEventCount(ev *corev1.Event) int32 {
	if ev.Series != nil && ev.Series.Count > 0 {
		return ev.Series.Count
	}
	return max(ev.Count, 1)
}

// EventCount is the occurrence number of an events.k8s.io/v1 Event (at least 1).
func EventCount(ev *eventsv1.Event) int32 {
	if ev.Series != nil && ev.Series.Count > 0 {
		return ev.Series.Count
	}
	return max(ev.DeprecatedCount, 1)
}

// CoreEventTime is the time of the latest occurrence of a core/v1 Event.
func CoreEventTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.UTC()
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.UTC()
	case !ev.EventTime.IsZero():
		return ev.EventTime.UTC()
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.UTC()
	}
	return ev.CreationTimestamp.UTC()
}

// EventTime is the time of the latest occurrence of an events.k8s.io/v1 Event.
func EventTime(ev *eventsv1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.UTC()
	case !ev.EventTime.IsZero():
		return ev.EventTime.UTC()
	case !ev.DeprecatedLastTimestamp.IsZero():
		return ev.DeprecatedLastTimestamp.UTC()
	}
	return ev.CreationTimestamp.UTC()
}

// KeyAudit is the partition key of an audit record: cluster and user, so all
// of one identity's requests land in one partition and per-identity stateful
// rules see them in order, whichever processor owns the partition.
func KeyAudit(c Cluster, username string) string {
	return c.Name + "/" + username
}

// KeyObject is the partition key of an Event: cluster and the involved
// object's UID (or namespace/name when the UID is unknown), so the history of
// one object stays ordered.
func KeyObject(c Cluster, uid, namespace, name string) string {
	if uid != "" {
		return c.Name + "/" + uid
	}
	return c.Name + "/" + namespace + "/" + name
}
