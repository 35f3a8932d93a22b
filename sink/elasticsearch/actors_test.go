package elasticsearch

import (
	"context"
	"net/http"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink"
)

// auditWrite is one audit record of a write, for FindActor's tests.
type auditWrite struct {
	id, cluster, user, verb, resource, group, ns, name, sub, rv string
	code                                                        int32
	at                                                          time.Duration // stageTimestamp relative to the test's observation time
	stage                                                       auditv1.Stage
	impersonated                                                string
}

func (w auditWrite) record(t *testing.T, observed time.Time) *record.Record {
	t.Helper()
	ev := &auditv1.Event{
		AuditID: types.UID("a-" + w.id), Stage: w.stage, Verb: w.verb, Level: auditv1.LevelMetadata,
		User:      authnv1.UserInfo{Username: w.user, Groups: []string{"team-" + w.user, "system:authenticated"}},
		SourceIPs: []string{"10.0.0." + w.id[len(w.id)-1:]}, UserAgent: "agent-" + w.user,
		ObjectRef: &auditv1.ObjectReference{Resource: w.resource, APIGroup: w.group, Namespace: w.ns, Name: w.name,
			Subresource: w.sub},
		ResponseStatus:           &metav1.Status{Code: w.code},
		RequestReceivedTimestamp: metav1.NewMicroTime(observed.Add(w.at - 5*time.Millisecond)),
		StageTimestamp:           metav1.NewMicroTime(observed.Add(w.at)),
	}
	if ev.Stage == "" {
		ev.Stage = auditv1.StageResponseComplete
	}
	if ev.ResponseStatus.Code == 0 {
		ev.ResponseStatus.Code = 200
	}
	if w.impersonated != "" {
		ev.ImpersonatedUser = &authnv1.UserInfo{Username: w.impersonated, Groups: []string{"imp-group"}}
	}
	if w.rv != "" {
		ev.Level = auditv1.LevelRequestResponse
		ev.ResponseObject = &runtime.Unknown{Raw: []byte(`{"kind":"X","apiVersion":"v1","metadata":{"name":"` + w.name +
			`","resourceVersion":"` + w.rv + `"}}`)}
	}
	c := w.cluster
	if c == "" {
		c = "prod"
	}
	r, err := record.NewAudit(ev, nil, record.Cluster{Name: c}, observed)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFindActorOnRealElasticsearch indexes ECS audit documents built by
// sink/ecs (exact-version and time matches, and decoys of other verbs,
// stages, statuses, subresources, objects and clusters) and checks which
// write FindActor names for each change.
func TestFindActorOnRealElasticsearch(t *testing.T) {
	es, cfg, b := realESSetUp(t)
	now := time.Now().Truncate(time.Millisecond)
	writes := []auditWrite{
		// Deployment shop/web at version 100: written by alice long ago
		// (outside the time window), then a later write by mallory.
		{id: "x1", user: "alice", verb: "update", resource: "deployments", group: "apps", ns: "shop", name: "web", rv: "100", at: -time.Hour},
		{id: "x2", user: "mallory", verb: "patch", resource: "deployments", group: "apps", ns: "shop", name: "web", rv: "101", at: -time.Second},
		// NetworkPolicy shop/deny, Metadata level: bob's patch is the
		// latest in the window; carol's earlier; the rest are decoys.
		{id: "m1", user: "carol", verb: "update", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: -5 * time.Second},
		{id: "m2", user: "bob", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: -2 * time.Second},
		{id: "d1", user: "old", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: -time.Minute},
		{id: "d2", user: "future", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: 5 * time.Second},
		{id: "d3", user: "reader", verb: "get", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: -time.Second},
		{id: "d4", user: "denied", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", code: 403, at: -time.Second},
		{id: "d5", user: "status", verb: "update", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", sub: "status", at: -time.Second},
		{id: "d6", user: "elsewhere", cluster: "other", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", at: -time.Second},
		{id: "d7", user: "otherns", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "dev", name: "deny", at: -time.Second},
		{id: "d8", user: "started", verb: "patch", resource: "networkpolicies", group: "networking.k8s.io", ns: "shop", name: "deny", stage: auditv1.StageResponseStarted, at: -time.Second},
		// Pod shop/p deleted by dave; erin's earlier update produced the
		// version the tombstone carries.
		{id: "p1", user: "erin", verb: "update", resource: "pods", ns: "shop", name: "p", rv: "70", at: -3 * time.Second},
		{id: "p2", user: "dave", verb: "delete", resource: "pods", ns: "shop", name: "p", at: -time.Second},
		// Namespace ns1 created by an admin impersonating frank; the API
		// server writes the namespace's own name as objectRef.namespace.
		{id: "n1", user: "admin", impersonated: "frank", verb: "create", resource: "namespaces", ns: "ns1", name: "ns1", rv: "80", at: -time.Second},
	}
	var recs []*record.Record
	for _, w := range writes {
		recs = append(recs, w.record(t, now))
	}
	for id, r := range writeAll(t, es, cfg, buildDocs(t, b, recs)) {
		if r.Status != sink.Indexed {
			t.Fatalf("%s: %v %s", id, r.Status, r.Reason)
		}
	}
	if status, _, _, err := Call(context.Background(), es, http.MethodPost, "/"+cfg.Streams.Audit+"/_refresh", nil); err != nil || status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, err)
	}

	q := func(group, resource, ns, name, rv string, deleted bool) ActorQuery {
		return ActorQuery{Cluster: "prod", APIGroup: group, Resource: resource, Namespace: ns, Name: name, ResourceVersion: rv,
			Deleted: deleted, ObservedAt: now, Skew: time.Second, Window: 10 * time.Second}
	}
	tests := []struct {
		name      string
		q         ActorQuery
		wantAudit string // "" = no actor
		wantUser  string
	}{
		{"exact version wins over a later write in the window", q("apps", "deployments", "shop", "web", "100", false), "a-x1", "alice"},
		{"latest write in the window when no body names the version", q("networking.k8s.io", "networkpolicies", "shop", "deny", "55", false), "a-m2", "bob"},
		{"a delete matches deletes only", q("", "pods", "shop", "p", "70", true), "a-p2", "dave"},
		{"impersonated user, cluster-scoped", q("", "namespaces", "", "ns1", "80", false), "a-n1", "frank"},
		{"no write of the object", q("apps", "deployments", "shop", "absent", "1", false), "", ""},
		{"other cluster has none", func() ActorQuery {
			x := q("apps", "deployments", "shop", "web", "100", false)
			x.Cluster = "none"
			return x
		}(), "", ""},
		{"missing audit stream", func() ActorQuery { return q("apps", "deployments", "shop", "web", "100", false) }(), "missing", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			index := cfg.Streams.Audit
			if tc.wantAudit == "missing" {
				index += "-missing"
				tc.wantAudit = ""
			}
			a, err := FindActor(context.Background(), es, index, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantAudit == "" {
				if a != nil {
					t.Fatalf("found %+v, want none", a)
				}
				return
			}
			if a == nil || a.AuditID != tc.wantAudit || a.User != tc.wantUser || a.Verb == "" {
				t.Fatalf("found %+v, want audit %s by %s", a, tc.wantAudit, tc.wantUser)
			}
			if a.UserAgent == "" || a.SourceIP == "" || len(a.Groups) == 0 || a.AuditIndex == "" ||
				a.AuditDocID != tc.wantAudit+":ResponseComplete" {
				t.Errorf("incomplete actor %+v", a)
			}
		})
	}
}
