package ecs

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
)

// Finding is one posture transition with what its documents need beyond
// the engine's Decision. The Decision's FirstSeen and OpenedAt go into
// every document of the finding, a resolved one's included: the state
// document is replaced whole on every transition (external versioning
// allows no partial update), so it is complete only if each transition
// carries them. Zero leaves them out, except that an open transition is
// its own first_seen and opened_at and a reopened one its own opened_at.
type Finding struct {
	posture.Decision
	// At is when the change that caused the transition was observed (the
	// object record's observed time); zero means the Builder's Now.
	At time.Time
}

// Actor is kubesift.finding.actor: who made the change that opened or last
// reopened the finding (the Decision's Actor; nil while unknown).
type Actor = posture.Actor

// FindingDocs builds the documents of posture findings and scores: the
// state document (one per finding, replaced on each transition), the
// transition document (one per transition) and the score document.
type FindingDocs struct {
	index       string
	transitions stream
	scores      stream
	// Now stamps transitions without an observed time and score documents
	// without one; time.Now unless a test sets it before first use.
	Now func() time.Time
}

// NewFindingDocs returns a FindingDocs for cfg.Findings.
func NewFindingDocs(cfg config.ElasticsearchConfig) (*FindingDocs, error) {
	f := &FindingDocs{index: cfg.Findings.Index, Now: time.Now}
	if f.index == "" {
		return nil, fmt.Errorf("ecs: sink.elasticsearch.findings.index: must not be empty")
	}
	for _, s := range []struct {
		field, name string
		dst         *stream
	}{
		{"findings.transitions_stream", cfg.Findings.TransitionsStream, &f.transitions},
		{"findings.scores_stream", cfg.Findings.ScoresStream, &f.scores},
	} {
		typ, dataset, ns, ok := config.StreamName(s.name)
		if !ok {
			return nil, fmt.Errorf("ecs: sink.elasticsearch.%s: %q is not <type>-<dataset>-<namespace>", s.field, s.name)
		}
		*s.dst = stream{name: s.name, ds: dataStream{Type: typ, Dataset: dataset, Namespace: ns}}
	}
	return f, nil
}

// maxResourceVersion keeps FindingVersion within Elasticsearch's version
// range (a positive long) after doubling.
const maxResourceVersion = math.MaxInt64/2 - 1

// FindingVersion is the external version a finding's state document is
// written with: twice the observed resourceVersion, plus one for a
// resolved state. resourceVersions are etcd revisions, one counter per
// cluster, so a later change of any object the finding depends on carries a
// greater version and a late write of an older transition is refused. The
// added one settles the tie the engine leaves on delete: a finding resolved
// because its object was deleted carries the object's last known
// resourceVersion, the same as the transition that opened it, and the
// resolve must win over that open (and over its replay). A caller that
// knows the deleting change's own resourceVersion may put it in the
// Decision instead; it is greater, and the rule holds.
func FindingVersion(d *posture.Decision) (int64, error) {
	rv, err := strconv.ParseInt(d.ResourceVersion, 10, 64)
	if err != nil || rv <= 0 || rv > maxResourceVersion {
		return 0, &FieldError{ID: d.ID, Field: "observed_resource_version", Msg: fmt.Sprintf("%q is not a positive decimal revision", clipField(d.ResourceVersion))}
	}
	v := 2 * rv
	if d.State == posture.StateResolved {
		v++
	}
	return v, nil
}

// TransitionID is the _id of a transition document: the finding, its new
// state and the version, so the same transition replayed after a restart is
// a Duplicate rather than a second document.
func TransitionID(d *posture.Decision) string {
	return d.ID + "/" + string(d.State) + "/" + d.ResourceVersion
}

// findingFields are kubesift.finding.*: the Decision's fields under their
// JSON names, the lifecycle times and the actor.
type findingFields struct {
	ID         string   `json:"id"`
	State      string   `json:"state"`
	CheckID    string   `json:"check_id"`
	Title      string   `json:"title,omitempty"`
	CIS        []string `json:"cis,omitempty"`
	CISVersion string   `json:"cis_version,omitempty"`
	// CISSection is the section of each CIS item ("5.2" of "5.2.2"), so
	// findings aggregate by benchmark section without a runtime field.
	CISSection       []string          `json:"cis_section,omitempty"`
	Severity         string            `json:"severity"`
	Mitre            *findingMitre     `json:"mitre,omitempty"`
	Object           posture.ObjectRef `json:"object"`
	Message          string            `json:"message,omitempty"`
	Remediation      string            `json:"remediation,omitempty"`
	ResourceVersion  string            `json:"observed_resource_version"`
	Version          int64             `json:"version"`
	FirstSeen        *time.Time        `json:"first_seen,omitempty"`
	OpenedAt         *time.Time        `json:"opened_at,omitempty"`
	ResolvedAt       *time.Time        `json:"resolved_at,omitempty"`
	LastTransitionAt time.Time         `json:"last_transition_at"`
	Actor            *Actor            `json:"actor,omitempty"`
}

type findingMitre struct {
	Tactics    []string `json:"tactics,omitempty"`
	Techniques []string `json:"techniques,omitempty"`
}

type findingDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Message      string       `json:"message,omitempty"`
	Event        findingEvent `json:"event"`
	DataStream   *dataStream  `json:"data_stream,omitempty"`
	Orchestrator orchestrator `json:"orchestrator"`
	Kubesift     struct {
		Finding findingFields `json:"finding"`
	} `json:"kubesift"`
}

type findingEvent struct {
	Kind     string    `json:"kind"`
	Dataset  string    `json:"dataset"`
	ID       string    `json:"id"`
	Ingested time.Time `json:"ingested"`
}

// FindingState builds the state document of f: Index is the findings
// index, ID the finding id, Version FindingVersion. @timestamp is the last
// transition's time.
func (b *FindingDocs) FindingState(f *Finding) (sink.Doc, error) {
	d, v, err := b.finding(f, "state", nil)
	if err != nil {
		return sink.Doc{}, err
	}
	d.Event.ID = f.ID
	body, err := docJSON.Marshal(d)
	if err != nil {
		return sink.Doc{}, &FieldError{ID: f.ID, Field: "finding", Msg: "encode document: " + err.Error()}
	}
	return sink.Doc{Index: b.index, ID: f.ID, Body: validUTF8(body), Version: v}, nil
}

// FindingTransition builds the transition document of f: Index is the
// transitions data stream, ID TransitionID (written with create, so a
// replay is a Duplicate).
func (b *FindingDocs) FindingTransition(f *Finding) (sink.Doc, error) {
	d, _, err := b.finding(f, "event", &b.transitions.ds)
	if err != nil {
		return sink.Doc{}, err
	}
	id := TransitionID(&f.Decision)
	d.Event.ID = id
	body, err := docJSON.Marshal(d)
	if err != nil {
		return sink.Doc{}, &FieldError{ID: f.ID, Field: "finding", Msg: "encode document: " + err.Error()}
	}
	return sink.Doc{Index: b.transitions.name, ID: id, Body: validUTF8(body)}, nil
}

// finding fills the fields both documents share after checking the
// Decision's identity.
func (b *FindingDocs) finding(f *Finding, kind string, ds *dataStream) (*findingDocument, int64, error) {
	if f == nil {
		return nil, 0, &FieldError{Field: "finding", Msg: "nil"}
	}
	for _, req := range []struct{ field, v string }{
		{"id", f.ID}, {"check_id", f.CheckID}, {"cluster", f.Cluster}, {"object.uid", f.Object.UID},
	} {
		if req.v == "" {
			return nil, 0, &FieldError{ID: f.ID, Field: req.field, Msg: "missing"}
		}
	}
	switch f.State {
	case posture.StateOpen, posture.StateResolved, posture.StateReopened:
	default:
		return nil, 0, &FieldError{ID: f.ID, Field: "state", Msg: fmt.Sprintf("%q is not open, resolved or reopened", clipField(string(f.State)))}
	}
	v, err := FindingVersion(&f.Decision)
	if err != nil {
		return nil, 0, err
	}
	now := b.Now().UTC()
	at := f.At.UTC()
	if f.At.IsZero() {
		at = now
	}
	ff := findingFields{
		ID: f.ID, State: string(f.State), CheckID: f.CheckID, Title: f.Title, CIS: f.CIS, CISVersion: f.CISVersion, CISSection: cisSections(f.CIS),
		Severity: f.Severity.String(), Object: f.Object, Message: f.Message, Remediation: f.Remediation,
		ResourceVersion: f.ResourceVersion, Version: v, LastTransitionAt: at, Actor: f.Decision.Actor,
		FirstSeen: timePtr(f.FirstSeen.UTC()), OpenedAt: timePtr(f.OpenedAt.UTC()),
	}
	if len(f.Mitre.Tactics) > 0 || len(f.Mitre.Techniques) > 0 {
		ff.Mitre = &findingMitre{Tactics: f.Mitre.Tactics, Techniques: f.Mitre.Techniques}
	}
	switch f.State {
	case posture.StateOpen:
		if ff.OpenedAt == nil {
			ff.OpenedAt = &at
		}
		if ff.FirstSeen == nil {
			ff.FirstSeen = &at
		}
	case posture.StateReopened:
		if ff.OpenedAt == nil {
			ff.OpenedAt = &at
		}
	case posture.StateResolved:
		ff.ResolvedAt = &at
	}
	d := &findingDocument{Timestamp: at, Message: f.Message, DataStream: ds}
	d.Event = findingEvent{Kind: kind, Dataset: "kubesift.findings", Ingested: now}
	if ds != nil {
		d.Event.Dataset = ds.Dataset
	}
	d.Orchestrator = orchestrator{Type: "kubernetes", Cluster: cluster{Name: f.Cluster}, Namespace: f.Object.Namespace,
		Resource: &orchResource{Type: strings.ToLower(f.Object.Kind), Name: f.Object.Name}}
	d.Kubesift.Finding = ff
	return d, v, nil
}

// clipField bounds a bad value quoted in an error.
func clipField(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Score scopes.
const (
	ScoreScopeCluster   = "cluster"
	ScoreScopeNamespace = "namespace"
)

type scoreDocument struct {
	Timestamp    time.Time    `json:"@timestamp"`
	Event        findingEvent `json:"event"`
	DataStream   dataStream   `json:"data_stream"`
	Orchestrator orchestrator `json:"orchestrator"`
	Kubesift     struct {
		PostureScore scoreFields `json:"posture_score"`
	} `json:"kubesift"`
}

type scoreFields struct {
	Scope        string  `json:"scope"`
	Passed       int     `json:"passed"`
	Failed       int     `json:"failed"`
	PassedWeight int     `json:"passed_weight"`
	Weight       int     `json:"weight"`
	Percent      float64 `json:"percent"`
}

// Score builds the document of one score at time at (zero: Now): the
// cluster's when namespace is empty, else the namespace's. Its _id is
// cluster, namespace and time, so writing the same snapshot twice is a
// Duplicate.
func (b *FindingDocs) Score(clusterName, namespace string, s posture.Score, at time.Time) (sink.Doc, error) {
	if clusterName == "" {
		return sink.Doc{}, &FieldError{Field: "cluster", Msg: "missing"}
	}
	now := b.Now().UTC()
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	d := &scoreDocument{Timestamp: at, DataStream: b.scores.ds}
	d.Orchestrator = orchestrator{Type: "kubernetes", Cluster: cluster{Name: clusterName}, Namespace: namespace}
	scope := ScoreScopeCluster
	if namespace != "" {
		scope = ScoreScopeNamespace
	}
	id := clusterName + "/" + namespace + "/" + at.Format(time.RFC3339Nano)
	d.Event = findingEvent{Kind: "metric", Dataset: b.scores.ds.Dataset, ID: id, Ingested: now}
	d.Kubesift.PostureScore = scoreFields{Scope: scope, Passed: s.Passed, Failed: s.Failed,
		PassedWeight: s.PassedWeight, Weight: s.Weight, Percent: s.Percent}
	body, err := docJSON.Marshal(d)
	if err != nil {
		return sink.Doc{}, &FieldError{ID: id, Field: "posture_score", Msg: "encode document: " + err.Error()}
	}
	return sink.Doc{Index: b.scores.name, ID: id, Body: validUTF8(body)}, nil
}

// FindingsIndex is the index of finding states.
func (b *FindingDocs) FindingsIndex() string { return b.index }

// TransitionsStream is the data stream of finding transitions.
func (b *FindingDocs) TransitionsStream() string { return b.transitions.name }

// ScoresStream is the data stream of posture scores.
func (b *FindingDocs) ScoresStream() string { return b.scores.name }

// cisSections returns the distinct sections ("5.2") of CIS items ("5.2.2"),
// in the items' order; an item of fewer than three parts is its own
// section.
func cisSections(items []string) []string {
	var out []string
	for _, id := range items {
		sec := id
		if i := strings.LastIndexByte(id, '.'); i > 0 && strings.Count(id, ".") >= 2 {
			sec = id[:i]
		}
		if !slices.Contains(out, sec) {
			out = append(out, sec)
		}
	}
	return out
}
