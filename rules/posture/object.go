package posture

import (
	"errors"
	"fmt"
	"time"

	"github.com/kubesift/kubesift/rules"
)

// Object is one Kubernetes object as the engine judges it, independent of
// how it travelled (Kafka record, List response). Body is the object as
// decoded JSON; the engine keeps it and fills kind and apiVersion from the
// fields above when absent (informers strip them).
type Object struct {
	APIVersion      string
	Kind            string
	Namespace       string
	Name            string
	UID             string
	ResourceVersion string
	Body            map[string]any
	// Observed is when this version of the object was observed (the
	// processor gives the object record's Kafka time). The findings its
	// change opens or reopens are stamped with it (FirstSeen, OpenedAt);
	// zero stamps the engine's clock.
	Observed time.Time
}

// State is a finding's state after a transition.
type State string

// Finding states.
const (
	StateOpen     State = "open"
	StateResolved State = "resolved"
	StateReopened State = "reopened"
)

// ObjectRef names the object a finding is about.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Decision is a finding's transition, or (from Findings) its current state.
type Decision struct {
	// ID is cluster/check/object-uid: one finding per (check, object).
	ID          string         `json:"id"`
	Cluster     string         `json:"cluster"`
	State       State          `json:"state"`
	CheckID     string         `json:"check_id"`
	Title       string         `json:"title"`
	CIS         []string       `json:"cis"`
	CISVersion  string         `json:"cis_version"`
	Severity    rules.Severity `json:"severity"`
	Mitre       rules.Mitre    `json:"mitre"`
	Object      ObjectRef      `json:"object"`
	Message     string         `json:"message"`
	Remediation string         `json:"remediation"`
	// ResourceVersion is that of the change that caused the transition:
	// the judged object's own, or that of the object it depends on that
	// changed (a NetworkPolicy resolving a namespace finding). Within one
	// cluster resourceVersions come from one etcd revision counter, so a
	// writer can use it to order transitions of one finding. When that
	// would not order after the finding's previous transition (a cause
	// the engine cannot name; see "Versions of transitions" in the
	// package doc), it is the previous transition's, or for a reopen the
	// revision after it.
	ResourceVersion string `json:"observed_resource_version"`
	// FirstSeen is when the finding first opened and OpenedAt when it last
	// opened (open or reopened): the Observed time of the change that did,
	// or the engine's clock. Every later transition carries them, so a
	// resolved finding's state document still says when it was first seen
	// and opened; Restore takes them back from the states written before.
	// Zero when unknown (a state restored without them).
	FirstSeen time.Time `json:"first_seen,omitzero"`
	OpenedAt  time.Time `json:"opened_at,omitzero"`
	// Actor is who made the change that opened or last reopened the
	// finding, or nil while unknown. The engine never learns it: it clears
	// it on every open and reopen, keeps it through a resolve (the state
	// still names who made the finding fail), keeps what Restore seeded,
	// and takes it from SetActor.
	Actor *Actor `json:"actor,omitempty"`
}

// Actor is who made a change, from the audit record of the same object:
// the requesting user (the impersonated one when the request impersonated),
// or PreExisting for a finding present before kubesift watched the cluster.
// Verb is the request's (create, update, patch, delete). AuditIndex and
// AuditDocID name the audit record's document, when known.
type Actor struct {
	User        string   `json:"user,omitempty"`
	Verb        string   `json:"verb,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	UserAgent   string   `json:"user_agent,omitempty"`
	SourceIP    string   `json:"source_ip,omitempty"`
	AuditID     string   `json:"audit_id,omitempty"`
	AuditIndex  string   `json:"audit_index,omitempty"`
	AuditDocID  string   `json:"audit_doc_id,omitempty"`
	PreExisting bool     `json:"pre_existing,omitempty"`
}

// Open reports whether the finding is failing (open or reopened).
func (d *Decision) Open() bool { return d.State != StateResolved }

// ErrInvalid marks an object the engine cannot judge for missing or
// inconsistent identity fields.
var ErrInvalid = errors.New("invalid object")

// kinds are the kinds the engine keeps, with their API version and whether
// they are namespaced. Others are ignored (counted): the objects source
// collects these, and judging a kind at an unknown version would read
// fields that may not mean the same.
var kinds = map[string]struct {
	apiVersion string
	namespaced bool
}{
	"Namespace":                      {"v1", false},
	"Node":                           {"v1", false},
	"Pod":                            {"v1", true},
	"Service":                        {"v1", true},
	"ServiceAccount":                 {"v1", true},
	"Deployment":                     {"apps/v1", true},
	"StatefulSet":                    {"apps/v1", true},
	"DaemonSet":                      {"apps/v1", true},
	"Job":                            {"batch/v1", true},
	"CronJob":                        {"batch/v1", true},
	"Ingress":                        {"networking.k8s.io/v1", true},
	"NetworkPolicy":                  {"networking.k8s.io/v1", true},
	"Role":                           {"rbac.authorization.k8s.io/v1", true},
	"RoleBinding":                    {"rbac.authorization.k8s.io/v1", true},
	"ClusterRole":                    {"rbac.authorization.k8s.io/v1", false},
	"ClusterRoleBinding":             {"rbac.authorization.k8s.io/v1", false},
	"MutatingWebhookConfiguration":   {"admissionregistration.k8s.io/v1", false},
	"ValidatingWebhookConfiguration": {"admissionregistration.k8s.io/v1", false},
	"ValidatingAdmissionPolicy":      {"admissionregistration.k8s.io/v1", false},
}

// validate checks o's identity. ignored is true (and err nil) for a kind or
// version the engine does not judge.
func validate(o *Object) (ignored bool, err error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("posture: %s %s/%s: %w: "+format, append([]any{o.Kind, o.Namespace, o.Name, ErrInvalid}, a...)...)
	}
	if o.Kind == "" {
		return false, fail("kind is required")
	}
	k, ok := kinds[o.Kind]
	if !ok || (o.APIVersion != "" && o.APIVersion != k.apiVersion) {
		return true, nil
	}
	switch {
	case o.Name == "":
		return false, fail("name is required")
	case o.UID == "":
		return false, fail("uid is required")
	case k.namespaced && o.Namespace == "":
		return false, fail("namespace is required for kind %s", o.Kind)
	case !k.namespaced && o.Namespace != "":
		return false, fail("namespace must be empty for cluster-scoped kind %s", o.Kind)
	}
	if o.Body == nil {
		o.Body = map[string]any{}
	}
	if _, ok := o.Body["kind"].(string); !ok {
		o.Body["kind"] = o.Kind
	}
	if _, ok := o.Body["apiVersion"].(string); !ok {
		o.Body["apiVersion"] = k.apiVersion
	}
	return false, nil
}

// key names an object in a cluster's inventory.
type key struct{ kind, namespace, name string }

func (k key) String() string { return k.kind + "/" + k.namespace + "/" + k.name }

func keyOf(o *Object) key { return key{o.Kind, o.Namespace, o.Name} }

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// metadata fields of a body.
func labels(body map[string]any) map[string]any {
	return asMap(asMap(body["metadata"])["labels"])
}

func annotations(body map[string]any) map[string]any {
	return asMap(asMap(body["metadata"])["annotations"])
}

// controlled reports an ownerReference with controller: true.
func controlled(body map[string]any) bool {
	for _, r := range asSlice(asMap(body["metadata"])["ownerReferences"]) {
		if c, _ := asMap(r)["controller"].(bool); c {
			return true
		}
	}
	return false
}
