// Package pipelinetest generates deterministic audit records for the
// processor's tests and benchmarks: unique IDs, many users (so the
// collector's cluster/user keys spread over every partition), about 1.5 KB
// each, and a known share that raises an alert (a privileged pod create).
package pipelinetest

import (
	"fmt"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/record"
)

// Cluster is the cluster every generated record names.
var Cluster = record.Cluster{Name: "it-cluster", UID: "0b0e6a1c-0000-4000-8000-0000000000aa"}

// Users is how many distinct users the records spread over.
const Users = 997

// PrivilegedEvery is the period of privileged pod creates: record n is one
// when n%PrivilegedEvery == PrivilegedEvery-1.
const PrivilegedEvery = 50

// Privileged reports whether record n is a privileged pod create (which the
// built-in rule privileged-container alerts on).
func Privileged(n int) bool { return n%PrivilegedEvery == PrivilegedEvery-1 }

// Alerting returns how many of the first n records are privileged creates.
func Alerting(n int) int { return n / PrivilegedEvery }

// base is the fixed time of record 0.
var base = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// Audit returns record n (of a run named run: IDs are unique per run, so
// tests sharing one Elasticsearch never collide).
func Audit(run string, n int) *record.Record {
	user := fmt.Sprintf("user-%03d@example.com", n%Users)
	ts := base.Add(time.Duration(n) * time.Millisecond)
	ev := &auditv1.Event{
		TypeMeta:   metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
		Level:      auditv1.LevelMetadata,
		AuditID:    types.UID(fmt.Sprintf("%s-%08d", run, n)),
		Stage:      auditv1.StageResponseComplete,
		RequestURI: fmt.Sprintf("/api/v1/namespaces/team-%d/configmaps/settings-%d", n%31, n%7),
		Verb:       "get",
		User: authnv1.UserInfo{Username: user, UID: fmt.Sprintf("uid-%d", n%Users),
			Groups: []string{"system:authenticated", "developers"}},
		SourceIPs: []string{fmt.Sprintf("10.%d.%d.%d", n%200, (n/200)%250, n%250+1)},
		UserAgent: "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0",
		ObjectRef: &auditv1.ObjectReference{Resource: "configmaps", Namespace: fmt.Sprintf("team-%d", n%31),
			Name: fmt.Sprintf("settings-%d", n%7), APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: 200},
		RequestReceivedTimestamp: metav1.NewMicroTime(ts),
		StageTimestamp:           metav1.NewMicroTime(ts.Add(3 * time.Millisecond)),
		Annotations: map[string]string{
			"authorization.k8s.io/decision": "allow",
			"authorization.k8s.io/reason":   `RBAC: allowed by RoleBinding "developers/team" of Role "dev" to Group "developers"`,
		},
	}
	if Privileged(n) {
		ns := fmt.Sprintf("team-%d", n%31)
		name := fmt.Sprintf("debug-%d", n)
		ev.Level = auditv1.LevelRequest
		ev.Verb = "create"
		ev.RequestURI = "/api/v1/namespaces/" + ns + "/pods"
		ev.ObjectRef = &auditv1.ObjectReference{Resource: "pods", Namespace: ns, Name: name, APIVersion: "v1"}
		ev.ResponseStatus = &metav1.Status{Code: 201}
		ev.RequestObject = &runtime.Unknown{ContentType: runtime.ContentTypeJSON, Raw: []byte(fmt.Sprintf(
			`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"namespace":%q},"spec":{"containers":[{"name":"sh","image":"docker.io/library/busybox:1.37","securityContext":{"privileged":true}}]}}`,
			name, ns))}
	}
	r, err := record.NewAudit(ev, nil, Cluster, ts.Add(time.Second))
	if err != nil {
		panic(err)
	}
	// Pad to about 1.5 KB, the median of audit records recorded from a real
	// API server (rules/testdata/bench-audit.log.gz).
	if pad := 1500 - len(r.Object) - 200; pad > 0 {
		ev.Annotations["kubesift.test/pad"] = strings.Repeat("p", pad)
		if err := r.SyncObject(); err != nil {
			panic(err)
		}
	}
	return r
}
