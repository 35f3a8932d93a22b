package rules

import (
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

// AuditEnv is what an audit rule's condition sees. Field names (the expr
// tags) are the rule language; they are documented in rules/README.md.
// Request and Response are the request/response objects as generic JSON,
// parsed only when a candidate rule refers to them.
type AuditEnv struct {
	ID                 string            `expr:"id"`
	AuditID            string            `expr:"audit_id"`
	Cluster            string            `expr:"cluster"`
	Time               time.Time         `expr:"time"`
	Stage              string            `expr:"stage"`
	Level              string            `expr:"level"`
	Verb               string            `expr:"verb"`
	User               string            `expr:"user"`
	UserUID            string            `expr:"user_uid"`
	Groups             []string          `expr:"groups"`
	ImpersonatedUser   string            `expr:"impersonated_user"`
	ImpersonatedGroups []string          `expr:"impersonated_groups"`
	SourceIP           string            `expr:"source_ip"`
	SourceIPs          []string          `expr:"source_ips"`
	UserAgent          string            `expr:"user_agent"`
	URI                string            `expr:"uri"`
	APIGroup           string            `expr:"api_group"`
	APIVersion         string            `expr:"api_version"`
	Resource           string            `expr:"resource"`
	Subresource        string            `expr:"subresource"`
	Namespace          string            `expr:"namespace"`
	Name               string            `expr:"name"`
	Code               int               `expr:"code"`
	Decision           string            `expr:"decision"`
	AuthzReason        string            `expr:"authz_reason"`
	Annotations        map[string]string `expr:"annotations"`
	Request            map[string]any    `expr:"request"`
	Response           map[string]any    `expr:"response"`

	// The object after the request, whatever the patch form
	// (record.EffectiveOf); filled only when a candidate rule reads one of
	// these (env_effective.go).
	Effective     map[string]any `expr:"effective"`
	EffectiveFrom string         `expr:"effective_from"` // response | request | patch | partial
	PatchOps      []any          `expr:"patch_ops"`      // {op, path, from, value} maps
	// Where the request came from; built only for rules that read it.
	Source *SourceEnv `expr:"source"`

	rec *record.Record
	// origin is worked out for every record, as the prefilter keys on its
	// class: the record's own when the processor enriched it.
	origin  *netorigin.Origin
	scratch *auditScratch
}

// auditScratch holds an audit env with what its fields point to. The
// origin and the source object live here rather than in the env because
// the env is copied once or twice per record (evalCtx.box): out of it they
// are not copied at all.
type auditScratch struct {
	env    AuditEnv
	origin netorigin.Origin
	source SourceEnv
}

// EventEnv is what an Event rule's condition sees, for core/v1 and
// events.k8s.io/v1 Events alike.
type EventEnv struct {
	ID        string    `expr:"id"`
	Cluster   string    `expr:"cluster"`
	Time      time.Time `expr:"time"`
	Type      string    `expr:"type"` // Normal | Warning
	Reason    string    `expr:"reason"`
	Message   string    `expr:"message"`
	Action    string    `expr:"action"`
	Count     int       `expr:"count"`
	Kind      string    `expr:"kind"` // of the involved (regarding) object
	Namespace string    `expr:"namespace"`
	Name      string    `expr:"name"`
	ObjectUID string    `expr:"object_uid"`
	FieldPath string    `expr:"field_path"`
	Reporter  string    `expr:"reporter"` // reporting controller or source component
	Host      string    `expr:"host"`     // reporting instance or source host
	Node      string    `expr:"node"`     // enrichment: the pod's node
	OwnerKind string    `expr:"owner_kind"`
	OwnerName string    `expr:"owner_name"`
	EventName string    `expr:"event_name"`
	EventNS   string    `expr:"event_namespace"`
	Related   string    `expr:"related"` // kind/namespace/name of the related object, if any

	rec *record.Record
}

// ObjectEnv is what an object (posture) rule's condition sees: one object of
// a cluster's inventory and, through the inventory helpers, the objects it
// is joined with. The helper fields are bound to an Inventory by
// NewObjectEnv; rules call them like functions (network_policies("ns")).
type ObjectEnv struct {
	ID        string         `expr:"id"`
	Cluster   string         `expr:"cluster"`
	Time      time.Time      `expr:"time"`
	Kind      string         `expr:"kind"`
	Namespace string         `expr:"namespace"`
	Name      string         `expr:"name"`
	UID       string         `expr:"uid"`
	Object    map[string]any `expr:"object"`

	NetworkPolicies func(namespace string) []any                `expr:"network_policies"`
	ServiceAccount  func(namespace, name string) map[string]any `expr:"service_account"`
	SubjectsBoundTo func(role map[string]any) []string          `expr:"subjects_bound_to"`
	EffectiveRules  func(subject string) []any                  `expr:"effective_rules"`
	RoleRules       func(role map[string]any) []any             `expr:"role_rules"`
	PolicyControls  func() []string                             `expr:"policy_controls"`
	RBACUsage       func(binding map[string]any) map[string]any `expr:"rbac_usage"`
}

// newAuditEnv fills the scalar fields; objects are added by withObjects.
// The env comes from auditEnvs; Eval gives it back (releaseAuditEnv) when
// the record's rules have run.
func newAuditEnv(r *record.Record) *AuditEnv {
	a := r.Audit
	s := auditEnvs.Get().(*auditScratch)
	e := &s.env
	*e = AuditEnv{
		ID: r.ID, AuditID: string(a.AuditID), Cluster: r.Cluster.Name, Time: r.EventTime,
		Stage: string(a.Stage), Level: string(a.Level), Verb: a.Verb,
		User: a.User.Username, UserUID: a.User.UID, Groups: a.User.Groups,
		SourceIPs: a.SourceIPs, UserAgent: a.UserAgent, URI: a.RequestURI,
		Annotations: a.Annotations, rec: r, origin: &r.Origin, scratch: s,
	}
	if !r.Origin.Known() {
		s.origin = originOf(r)
		e.origin = &s.origin
	}
	if a.ImpersonatedUser != nil {
		e.ImpersonatedUser, e.ImpersonatedGroups = a.ImpersonatedUser.Username, a.ImpersonatedUser.Groups
	}
	if len(a.SourceIPs) > 0 {
		e.SourceIP = a.SourceIPs[0]
	}
	if o := a.ObjectRef; o != nil {
		e.APIGroup, e.APIVersion, e.Resource, e.Subresource = o.APIGroup, o.APIVersion, o.Resource, o.Subresource
		e.Namespace, e.Name = o.Namespace, o.Name
	}
	if a.ResponseStatus != nil {
		e.Code = int(a.ResponseStatus.Code)
	}
	e.Decision = a.Annotations["authorization.k8s.io/decision"]
	e.AuthzReason = a.Annotations["authorization.k8s.io/reason"]
	return e
}

// auditEnvs recycles audit environments: one is some 1,000 bytes with
// pointers, allocated for every audit record and garbage once its rules
// have run, and nothing keeps it (alerts and window state copy the strings
// they need).
var auditEnvs = sync.Pool{New: func() any { return new(auditScratch) }}

func releaseAuditEnv(e *AuditEnv) {
	s := e.scratch
	*s = auditScratch{}
	auditEnvs.Put(s)
}

// withObjects parses the request and/or response object, once per record,
// and returns what it filled: use, and patch_ops with the effective object.
// Undecodable bodies stay nil: a rule reading them sees missing fields.
func (e *AuditEnv) withObjects(use objectUse) objectUse {
	a := e.rec.Audit
	if use&useRequest != 0 && a.RequestObject != nil && len(a.RequestObject.Raw) > 0 {
		e.Request = parseBody(a.RequestObject.Raw)
	}
	if use&useResponse != 0 && a.ResponseObject != nil && len(a.ResponseObject.Raw) > 0 {
		e.Response = parseBody(a.ResponseObject.Raw)
	}
	switch {
	case use&useEffective != 0:
		e.withEffective()
		use |= usePatchOps
	case use&usePatchOps != 0:
		e.withPatchOps()
	}
	if use&useSource != 0 {
		e.scratch.source = newSourceEnv(e.rec, e.origin)
		e.Source = &e.scratch.source
	}
	return use
}

// parseBody parses a request/response body into the generic shapes of
// encoding/json: with record.ParseObject, or with json-iterator (the same
// shapes, and encoding/json's treatment of invalid UTF-8) where that
// declines. nil when neither can.
func parseBody(raw []byte) map[string]any {
	if m, ok := record.ParseObject(raw); ok {
		return m
	}
	var m map[string]any
	_ = objectJSON.Unmarshal(raw, &m)
	return m
}

// objectJSON parses the bodies record.ParseObject declines.
var objectJSON = jsoniter.ConfigCompatibleWithStandardLibrary

func newEventEnv(r *record.Record) *EventEnv {
	e := &EventEnv{ID: r.ID, Cluster: r.Cluster.Name, Time: r.EventTime, rec: r}
	switch {
	case r.CoreEvent != nil:
		ev := r.CoreEvent
		e.Type, e.Reason, e.Message, e.Action = ev.Type, ev.Reason, ev.Message, ev.Action
		e.Count = int(record.CoreEventCount(ev))
		io := ev.InvolvedObject
		e.Kind, e.Namespace, e.Name, e.ObjectUID, e.FieldPath = io.Kind, io.Namespace, io.Name, string(io.UID), io.FieldPath
		e.Reporter, e.Host = ev.ReportingController, ev.ReportingInstance
		if e.Reporter == "" {
			e.Reporter, e.Host = ev.Source.Component, ev.Source.Host
		}
		e.EventName, e.EventNS = ev.Name, ev.Namespace
		if ev.Related != nil {
			e.Related = ev.Related.Kind + "/" + ev.Related.Namespace + "/" + ev.Related.Name
		}
	case r.Event != nil:
		ev := r.Event
		e.Type, e.Reason, e.Message, e.Action = ev.Type, ev.Reason, ev.Note, ev.Action
		e.Count = int(record.EventCount(ev))
		io := ev.Regarding
		e.Kind, e.Namespace, e.Name, e.ObjectUID, e.FieldPath = io.Kind, io.Namespace, io.Name, string(io.UID), io.FieldPath
		e.Reporter, e.Host = ev.ReportingController, ev.ReportingInstance
		if e.Reporter == "" {
			e.Reporter, e.Host = ev.DeprecatedSource.Component, ev.DeprecatedSource.Host
		}
		e.EventName, e.EventNS = ev.Name, ev.Namespace
		if ev.Related != nil {
			e.Related = ev.Related.Kind + "/" + ev.Related.Namespace + "/" + ev.Related.Name
		}
	}
	// Enrichment added by the Events collector travels in annotations of the
	// Event object ("kubesift.io/node", "kubesift.io/owner-kind", …).
	var ann map[string]string
	if r.CoreEvent != nil {
		ann = r.CoreEvent.Annotations
	} else if r.Event != nil {
		ann = r.Event.Annotations
	}
	e.Node, e.OwnerKind, e.OwnerName = ann[AnnotationNode], ann[AnnotationOwnerKind], ann[AnnotationOwnerName]
	return e
}

// Enrichment annotations the Events collector sets on the Event it ships.
const (
	AnnotationNode      = "kubesift.io/node"
	AnnotationOwnerKind = "kubesift.io/owner-kind"
	AnnotationOwnerName = "kubesift.io/owner-name"
)
