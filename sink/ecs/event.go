package ecs

import (
	"encoding/json"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/record"
)

// eventDocument is a Kubernetes Event's document. core/v1 and
// events.k8s.io/v1 Events share one shape under kubernetes.event.*, with the
// names Elastic's Kubernetes integration uses for its event data stream
// (involved_object, source.component, timestamp.first_occurrence, ...).
type eventDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Message      string       `json:"message,omitempty"`
	Event        event        `json:"event"`
	Orchestrator orchestrator `json:"orchestrator"`
	DataStream   dataStream   `json:"data_stream"`
	Kubernetes   struct {
		Event eventFields `json:"event"`
	} `json:"kubernetes"`
	Kubesift kubesiftMeta `json:"kubesift"`
}

type eventFields struct {
	APIVersion     string          `json:"api_version"`
	Type           string          `json:"type,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Action         string          `json:"action,omitempty"`
	Message        string          `json:"message,omitempty"`
	Count          int32           `json:"count"`
	Source         *eventSource    `json:"source,omitempty"`
	InvolvedObject *involvedObject `json:"involved_object,omitempty"`
	Related        *involvedObject `json:"related,omitempty"`
	Metadata       eventMeta       `json:"metadata"`
	Timestamp      eventTimes      `json:"timestamp"`
}

type eventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

type involvedObject struct {
	APIVersion      string `json:"api_version,omitempty"`
	Kind            string `json:"kind,omitempty"`
	Name            string `json:"name,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	UID             string `json:"uid,omitempty"`
	ResourceVersion string `json:"resource_version,omitempty"`
	FieldPath       string `json:"field_path,omitempty"`
}

type eventMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resource_version,omitempty"`
	GenerateName    string            `json:"generate_name,omitempty"`
	Created         *time.Time        `json:"timestamp_created,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
}

type eventTimes struct {
	FirstOccurrence *time.Time `json:"first_occurrence,omitempty"`
	LastOccurrence  *time.Time `json:"last_occurrence,omitempty"`
}

func (b *Builder) eventDoc(r *record.Record) (any, error) {
	d := &eventDocument{Timestamp: eventTime(r), Orchestrator: newOrchestrator(r), DataStream: b.events.ds}
	d.Kubesift.Record = newRecordMeta(r)
	k := &d.Kubernetes.Event
	var om *metav1.ObjectMeta
	switch {
	case r.CoreEvent != nil:
		ev := r.CoreEvent
		om = &ev.ObjectMeta
		k.APIVersion = record.APICoreV1
		k.Type, k.Reason, k.Action, k.Message = ev.Type, ev.Reason, ev.Action, ev.Message
		k.Count = record.CoreEventCount(ev)
		k.Source = newEventSource(ev.Source.Component, ev.Source.Host, ev.ReportingController, ev.ReportingInstance)
		k.InvolvedObject = newInvolved(&ev.InvolvedObject)
		k.Related = newInvolved(ev.Related)
		first := ev.FirstTimestamp.Time
		if first.IsZero() {
			first = ev.EventTime.Time
		}
		k.Timestamp = eventTimes{FirstOccurrence: timePtr(first.UTC()), LastOccurrence: timePtr(record.CoreEventTime(ev))}
	case r.Event != nil:
		ev := r.Event
		om = &ev.ObjectMeta
		k.APIVersion = record.APIEventsV1
		k.Type, k.Reason, k.Action, k.Message = ev.Type, ev.Reason, ev.Action, ev.Note
		k.Count = record.EventCount(ev)
		k.Source = newEventSource(ev.DeprecatedSource.Component, ev.DeprecatedSource.Host, ev.ReportingController, ev.ReportingInstance)
		k.InvolvedObject = newInvolved(&ev.Regarding)
		k.Related = newInvolved(ev.Related)
		first := ev.EventTime.Time
		if !ev.DeprecatedFirstTimestamp.IsZero() {
			first = ev.DeprecatedFirstTimestamp.Time
		}
		k.Timestamp = eventTimes{FirstOccurrence: timePtr(first.UTC()), LastOccurrence: timePtr(record.EventTime(ev))}
	default:
		return nil, &FieldError{ID: r.ID, Field: "object", Msg: "Event record without its decoded Event (api_version " + r.APIVersion + ")"}
	}
	k.Metadata = eventMeta{
		Name: om.Name, Namespace: om.Namespace, UID: string(om.UID), ResourceVersion: om.ResourceVersion,
		GenerateName: om.GenerateName, Created: timePtr(om.CreationTimestamp.UTC()),
		// flattened: label and annotation names are free-form.
		Labels: cleanKeys(om.Labels, true), Annotations: cleanKeys(om.Annotations, true),
	}
	d.Message = k.Message
	d.Event = event{
		Kind: "event", Category: []string{"configuration"}, Type: []string{"info"}, Action: k.Reason,
		Dataset: b.events.ds.Dataset, ID: r.ID, Created: timePtr(r.ObservedTime), Ingested: b.Now().UTC(),
	}
	if io := k.InvolvedObject; io != nil {
		d.Orchestrator.Namespace = io.Namespace
		d.Orchestrator.Resource = &orchResource{Type: strings.ToLower(io.Kind), Name: io.Name}
	}
	return d, nil
}

func newEventSource(component, host, controller, instance string) *eventSource {
	if component == "" {
		component = controller
	}
	if host == "" {
		host = instance
	}
	if component == "" && host == "" {
		return nil
	}
	return &eventSource{Component: component, Host: host}
}

func newInvolved(o *corev1.ObjectReference) *involvedObject {
	if o == nil || (o.Kind == "" && o.Name == "" && o.UID == "") {
		return nil
	}
	return &involvedObject{
		APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, Namespace: o.Namespace,
		UID: string(o.UID), ResourceVersion: o.ResourceVersion, FieldPath: o.FieldPath,
	}
}

// objectDocument is an object (posture) record's document.
type objectDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Event        event        `json:"event"`
	Orchestrator orchestrator `json:"orchestrator"`
	DataStream   dataStream   `json:"data_stream"`
	Kubernetes   struct {
		Object objectFields `json:"object"`
	} `json:"kubernetes"`
	Kubesift kubesiftMeta `json:"kubesift"`
}

type objectFields struct {
	APIVersion string          `json:"apiVersion,omitempty"`
	Kind       string          `json:"kind,omitempty"`
	Metadata   objectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec,omitempty"`
	Status     json.RawMessage `json:"status,omitempty"`
}

type objectMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Created         *time.Time        `json:"creationTimestamp,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
}

// objectInput is the part of an object record the document uses; spec and
// status stay raw until fitted (they become flattened fields).
type objectInput struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		ResourceVersion   string            `json:"resourceVersion"`
		CreationTimestamp string            `json:"creationTimestamp"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec   json.RawMessage `json:"spec"`
	Status json.RawMessage `json:"status"`
}

// flatSchema maps a whole body as one flattened field.
var flatSchema = &node{kind: kFlattened}

func (b *Builder) objectDoc(r *record.Record) (any, error) {
	var in objectInput
	if err := bodyJSON.Unmarshal(r.Object, &in); err != nil {
		// The decoder's message quotes input bytes; the reason must not.
		return nil, &FieldError{ID: r.ID, Field: "object", Msg: "not a JSON Kubernetes object"}
	}
	d := &objectDocument{Timestamp: eventTime(r), Orchestrator: newOrchestrator(r), DataStream: b.posture.ds}
	d.Kubesift.Record = newRecordMeta(r)
	k := &d.Kubernetes.Object
	k.APIVersion, k.Kind = in.APIVersion, in.Kind
	m := in.Metadata
	k.Metadata = objectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: cleanKeys(m.Labels, true), Annotations: cleanKeys(m.Annotations, true),
	}
	if t, err := time.Parse(time.RFC3339, m.CreationTimestamp); err == nil {
		k.Metadata.Created = timePtr(t.UTC())
	}
	meta := &d.Kubesift.Record
	for _, part := range []struct {
		name string
		raw  json.RawMessage
		dst  *json.RawMessage
	}{{"spec", in.Spec, &k.Spec}, {"status", in.Status, &k.Status}} {
		res := fitFlat(part.raw, b.maxBody, part.name)
		if res.tooBig {
			meta.BodyDropped = append(meta.BodyDropped, part.name+": larger than max_body_bytes")
		}
		meta.DroppedFields = append(meta.DroppedFields, res.dropped...)
		*part.dst = res.raw
	}
	d.Event = event{
		Kind: "state", Category: []string{"configuration"}, Type: []string{"info"},
		Dataset: b.posture.ds.Dataset, ID: r.ID, Created: timePtr(r.ObservedTime), Ingested: b.Now().UTC(),
	}
	d.Orchestrator.Namespace = m.Namespace
	if in.Kind != "" || m.Name != "" {
		d.Orchestrator.Resource = &orchResource{Type: strings.ToLower(in.Kind), Name: m.Name}
	}
	return d, nil
}

// fitFlat fits a body that is mapped as one flattened field.
func fitFlat(raw []byte, max int, name string) bodyResult {
	if len(raw) > max {
		return bodyResult{tooBig: true}
	}
	var v any
	if len(raw) == 0 || bodyJSON.Unmarshal(raw, &v) != nil || v == nil {
		return bodyResult{}
	}
	f := fitter{}
	v, ok := f.fit(v, flatSchema, name, 0)
	if _, isMap := v.(map[string]any); !ok || !isMap {
		return bodyResult{dropped: []string{name}}
	}
	out, err := bodyJSON.Marshal(v)
	if err != nil {
		return bodyResult{dropped: []string{name}}
	}
	return bodyResult{raw: out, dropped: f.dropped}
}
