package ecs

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

// auditDocument is an audit record's document. kubernetes.audit.* mirrors the
// audit event with the integration's names (which are the event's own JSON
// names); the ECS fields are what the integration's ingest pipeline derives.
type auditDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Event        event        `json:"event"`
	User         *user        `json:"user,omitempty"`
	Source       *source      `json:"source,omitempty"`
	UserAgent    *userAgent   `json:"user_agent,omitempty"`
	Orchestrator orchestrator `json:"orchestrator"`
	DataStream   dataStream   `json:"data_stream"`
	Kubernetes   struct {
		Audit auditFields `json:"audit"`
	} `json:"kubernetes"`
	Kubesift kubesiftMeta `json:"kubesift"`
}

type auditFields struct {
	APIVersion               string            `json:"apiVersion,omitempty"`
	Kind                     string            `json:"kind,omitempty"`
	Level                    string            `json:"level,omitempty"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI,omitempty"`
	Verb                     string            `json:"verb,omitempty"`
	User                     *auditUser        `json:"user,omitempty"`
	ImpersonatedUser         *auditUser        `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *objectRef        `json:"objectRef,omitempty"`
	ResponseStatus           *responseStatus   `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty"`
	RequestReceivedTimestamp *time.Time        `json:"requestReceivedTimestamp,omitempty"`
	StageTimestamp           *time.Time        `json:"stageTimestamp,omitempty"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

type auditUser struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

type objectRef struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

type responseStatus struct {
	Code    int32  `json:"code,omitempty"`
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// decision annotation of the authorizer (the integration's event.outcome).
const annDecision = "authorization.k8s.io/decision"

// auditParts holds an audit document and the values its pointer fields
// point to, so one (pooled) allocation backs the whole document instead of
// a dozen small ones per record. Nothing of it outlives Record: the body is
// copied out before the parts go back to the pool.
type auditParts struct {
	doc                auditDocument
	user               user
	group              userGroup
	source             source
	geo                sourceGeo
	location           geoPoint
	as                 sourceAS
	asOrg              asOrg
	origin             originMeta
	userAgent          userAgent
	objectRef          objectRef
	status             responseStatus
	resource           orchResource
	received, stage    time.Time
	created            time.Time
	auditUser, imperso auditUser
}

var auditPool = sync.Pool{New: func() any { return new(auditParts) }}

// ECS event.category and event.type values, shared read-only by every
// audit document (the encoders only read them).
var (
	apiCategory = []string{"api"}
	verbTypes   = map[string][]string{}
)

func init() {
	for _, t := range []string{"creation", "deletion", "change", "access", "info"} {
		verbTypes[t] = []string{t}
	}
}

// auditDoc builds the document of an audit record in a fresh auditParts
// (tests; Record uses pooled ones).
func (b *Builder) auditDoc(r *record.Record) (any, error) {
	ps := new(auditParts)
	if err := b.fillAudit(r, ps); err != nil {
		return nil, err
	}
	return &ps.doc, nil
}

// fillAudit builds the document of an audit record into ps, which must be
// zero (new, or reset before it went back to the pool).
func (b *Builder) fillAudit(r *record.Record, ps *auditParts) error {
	a := r.Audit
	if a == nil {
		return &FieldError{ID: r.ID, Field: "object", Msg: "audit record without its decoded event"}
	}
	d := &ps.doc
	d.Timestamp, d.Orchestrator, d.DataStream = eventTime(r), newOrchestrator(r), b.audit.ds
	d.Kubesift.Record = newRecordMeta(r)
	k := &d.Kubernetes.Audit
	k.APIVersion, k.Kind = a.APIVersion, a.Kind
	if k.APIVersion == "" {
		k.APIVersion = r.APIVersion
	}
	if k.Kind == "" {
		k.Kind = "Event"
	}
	k.Level, k.AuditID, k.Stage = string(a.Level), string(a.AuditID), string(a.Stage)
	k.RequestURI, k.Verb, k.UserAgent = a.RequestURI, a.Verb, a.UserAgent
	k.User = fillAuditUser(&ps.auditUser, a.User.Username, a.User.UID, a.User.Groups, a.User.Extra)
	if iu := a.ImpersonatedUser; iu != nil {
		k.ImpersonatedUser = fillAuditUser(&ps.imperso, iu.Username, iu.UID, iu.Groups, iu.Extra)
	}
	k.SourceIPs = a.SourceIPs
	if o := a.ObjectRef; o != nil {
		ps.objectRef = objectRef{
			Resource: o.Resource, Namespace: o.Namespace, Name: o.Name, UID: string(o.UID),
			APIGroup: o.APIGroup, APIVersion: o.APIVersion, ResourceVersion: o.ResourceVersion, Subresource: o.Subresource,
		}
		k.ObjectRef = &ps.objectRef
	}
	if s := a.ResponseStatus; s != nil {
		ps.status = responseStatus{Code: s.Code, Status: s.Status, Message: s.Message, Reason: string(s.Reason)}
		k.ResponseStatus = &ps.status
	}
	k.RequestReceivedTimestamp = storeTime(&ps.received, a.RequestReceivedTimestamp.UTC())
	k.StageTimestamp = storeTime(&ps.stage, a.StageTimestamp.UTC())
	// Annotation names become field names with "." replaced by "_"
	// (authorization.k8s.io/decision -> authorization_k8s_io/decision),
	// exactly as the integration's pipeline does, so they never expand into
	// objects or conflict with each other.
	k.Annotations = cleanKeys(a.Annotations, false)

	meta := &d.Kubesift.Record
	if a.RequestObject != nil {
		k.RequestObject = b.body(a.RequestObject.Raw, "requestObject", meta)
	}
	if a.ResponseObject != nil {
		k.ResponseObject = b.body(a.ResponseObject.Raw, "responseObject", meta)
	}

	// ECS, as the integration's ingest pipeline derives it.
	d.Event = event{
		Kind: "event", Category: apiCategory, Type: verbTypes[verbType(a.Verb)], Action: a.Verb,
		Outcome: auditOutcome(a), Dataset: b.audit.ds.Dataset, ID: r.ID,
		Created: storeTime(&ps.created, r.ObservedTime), Ingested: b.Now().UTC(),
	}
	if a.User.Username != "" || a.User.UID != "" || len(a.User.Groups) > 0 {
		ps.user = user{Name: a.User.Username, ID: a.User.UID}
		d.User = &ps.user
		if len(a.User.Groups) > 0 {
			ps.group = userGroup{Name: a.User.Groups}
			d.User.Group = &ps.group
		}
	}
	// source.ip is an ip field: only a parseable address goes there (the
	// raw list stays in kubernetes.audit.sourceIPs, mapped as text). It is
	// the origin address, which geo, as and kubesift.source describe when
	// the processor looked it up; without that, the same address
	// (netorigin LookupSources), as the rules' source.ip is.
	if o := &r.Origin; o.Known() {
		fillOrigin(ps, o, a.SourceIPs)
	} else if o := (*netorigin.Resolver)(nil).LookupSources(a.SourceIPs); o.Known() {
		ps.source = source{IP: o.IPString(a.SourceIPs)}
		d.Source = &ps.source
	}
	if a.UserAgent != "" {
		ps.userAgent = userAgent{Original: a.UserAgent}
		d.UserAgent = &ps.userAgent
	}
	if o := a.ObjectRef; o != nil {
		d.Orchestrator.Namespace = o.Namespace
		if o.Resource != "" || o.Name != "" {
			ps.resource = orchResource{Type: o.Resource, Name: o.Name}
			d.Orchestrator.Resource = &ps.resource
		}
	}
	return nil
}

// fillOrigin sets source.* and kubesift.source from the record's origin.
func fillOrigin(ps *auditParts, o *netorigin.Origin, ips []string) {
	d := &ps.doc
	ps.source = source{IP: o.IPString(ips)}
	d.Source = &ps.source
	if g := o.Geo; g != (netorigin.Geo{}) {
		ps.geo = sourceGeo{ContinentCode: g.ContinentCode, ContinentName: g.ContinentName,
			CountryISOCode: g.CountryISOCode, CountryName: g.CountryName,
			RegionISOCode: g.RegionISOCode, RegionName: g.RegionName, CityName: g.CityName}
		if g.HasLocation {
			ps.location = geoPoint{Lat: g.Lat, Lon: g.Lon}
			ps.geo.Location = &ps.location
		}
		ps.source.Geo = &ps.geo
	}
	if as := o.AS; as != (netorigin.AS{}) {
		ps.as = sourceAS{Number: as.Number}
		if as.Organization != "" {
			ps.asOrg = asOrg{Name: as.Organization}
			ps.as.Organization = &ps.asOrg
		}
		ps.source.AS = &ps.as
	}
	ps.origin = originMeta{Class: string(o.Class), Lists: o.Lists}
	d.Kubesift.Source = &ps.origin
}

// storeTime is timePtr into caller-provided storage.
func storeTime(dst *time.Time, t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	*dst = t
	return dst
}

// body fits one request/response object and notes what was left out.
func (b *Builder) body(raw []byte, name string, meta *recordMeta) json.RawMessage {
	res := fitBody(raw, b.maxBody, name)
	switch {
	case res.tooBig:
		meta.BodyDropped = append(meta.BodyDropped, name+": larger than max_body_bytes")
	case res.invalid:
		meta.BodyDropped = append(meta.BodyDropped, name+": not JSON")
	}
	meta.DroppedFields = append(meta.DroppedFields, res.dropped...)
	return res.raw
}

func fillAuditUser(u *auditUser, name, uid string, groups []string, extra map[string]authnv1.ExtraValue) *auditUser {
	if name == "" && uid == "" && len(groups) == 0 && len(extra) == 0 {
		return nil
	}
	*u = auditUser{Username: name, UID: uid, Groups: groups}
	if len(extra) > 0 {
		// user.extra is flattened: its names (e.g.
		// authentication.kubernetes.io/pod-name) are free-form.
		ex := make(map[string][]string, len(extra))
		for k, v := range extra {
			ex[k] = []string(v)
		}
		u.Extra = cleanKeys(ex, true)
	}
	return u
}

// auditOutcome follows the integration: the authorizer's decision, else the
// response code.
func auditOutcome(a *auditv1.Event) string {
	switch a.Annotations[annDecision] {
	case "allow":
		return "success"
	case "forbid":
		return "failure"
	}
	if s := a.ResponseStatus; s != nil && s.Code != 0 {
		if s.Code >= 400 {
			return "failure"
		}
		return "success"
	}
	return "unknown"
}

// verbType maps a Kubernetes verb to ECS event.type.
func verbType(verb string) string {
	switch strings.ToLower(verb) {
	case "create", "post":
		return "creation"
	case "delete", "deletecollection":
		return "deletion"
	case "update", "patch", "put":
		return "change"
	case "get", "list", "watch", "head":
		return "access"
	}
	return "info"
}
