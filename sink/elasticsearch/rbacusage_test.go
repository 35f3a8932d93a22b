package elasticsearch

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink"
)

// usageRecord is an audit record of an allowed (or denied) request with
// the authorizer's annotations.
func usageRecord(t *testing.T, w auditWrite, observed time.Time, decision, reason string) *record.Record {
	t.Helper()
	r := w.record(t, observed)
	r.Audit.Annotations = map[string]string{"authorization.k8s.io/decision": decision}
	if reason != "" {
		r.Audit.Annotations["authorization.k8s.io/reason"] = reason
	}
	return r
}

// TestUsageStoreOnRealElasticsearch: Uses reads the RBAC grants of allowed
// requests of one cluster from ECS audit documents built by sink/ecs (one
// use per reason and pair, with its latest time; denied requests, other
// authorizers, other clusters and documents outside the period left out;
// a malformed RBAC reason counted), across composite pages; Save and Load
// round-trip a snapshot across bulk batches; a missing index loads empty.
func TestUsageStoreOnRealElasticsearch(t *testing.T) {
	es, cfg, b := realESSetUp(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const (
		ciReason  = `RBAC: allowed by ClusterRoleBinding "ci" of ClusterRole "edit" to ServiceAccount "deployer/ci"`
		webReason = `RBAC: allowed by RoleBinding "web/shop" of Role "reader" to User "alice"`
	)
	recs := []*record.Record{
		usageRecord(t, auditWrite{id: "u1", verb: "get", resource: "pods", ns: "shop", name: "a", at: -3 * time.Second}, now, "allow", ciReason),
		usageRecord(t, auditWrite{id: "u2", verb: "get", resource: "pods", ns: "shop", name: "b", at: -time.Second}, now, "allow", ciReason),
		usageRecord(t, auditWrite{id: "u3", verb: "patch", resource: "deployments", group: "apps", ns: "shop", name: "web", at: -2 * time.Second}, now, "allow", ciReason),
		usageRecord(t, auditWrite{id: "u4", verb: "get", resource: "pods", sub: "log", ns: "shop", name: "a", at: -time.Second}, now, "allow", webReason),
		usageRecord(t, auditWrite{id: "u5", verb: "get", resource: "configmaps", ns: "shop", name: "c", at: -time.Second}, now, "allow", `RBAC: allowed by RoleBinding "x/shop" of Robot "r" to User "u"`),
		usageRecord(t, auditWrite{id: "d1", verb: "delete", resource: "pods", ns: "shop", name: "a", code: 403, at: -time.Second}, now, "forbid", ""),
		usageRecord(t, auditWrite{id: "d2", verb: "get", resource: "nodes", name: "n", at: -time.Second}, now, "allow", ""),
		usageRecord(t, auditWrite{id: "d3", cluster: "other", verb: "list", resource: "secrets", ns: "shop", at: -time.Second}, now, "allow", ciReason),
	}
	// Non-resource requests: no objectRef; the query is not part of the
	// path a nonResourceURLs rule matches.
	hz := usageRecord(t, auditWrite{id: "n1", verb: "get", at: -time.Second}, now, "allow", ciReason)
	hz.Audit.ObjectRef, hz.Audit.RequestURI = nil, "/healthz"
	hzq := usageRecord(t, auditWrite{id: "n2", verb: "get", at: -2 * time.Second}, now, "allow", ciReason)
	hzq.Audit.ObjectRef, hzq.Audit.RequestURI = nil, "/healthz?verbose"
	recs = append(recs, hz, hzq)
	for _, r := range recs {
		r.Audit.Stage = auditv1.StageResponseComplete
	}
	for id, r := range writeAll(t, es, cfg, buildDocs(t, b, recs)) {
		if r.Status != sink.Indexed {
			t.Fatalf("%s: %v %s", id, r.Status, r.Reason)
		}
	}
	if status, _, _, err := Call(context.Background(), es, http.MethodPost, "/"+cfg.Streams.Audit+"/_refresh", nil); err != nil || status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, err)
	}
	defer func(n int) { usagePage = n }(usagePage)
	usagePage = 2 // four resource combinations take two pages

	s := NewUsageStore(es, cfg.Findings.UsageIndex, cfg.Streams.Audit)
	ctx := context.Background()
	uses, st, err := s.Uses(ctx, "prod", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := rbacusage.ParseReason(ciReason, "")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := rbacusage.ParseReason(webReason, "")
	want := map[string]time.Time{
		ci.Key() + " get pods":               now.Add(-time.Second),
		ci.Key() + " patch deployments.apps": now.Add(-2 * time.Second),
		ci.Key() + " get /healthz":           now.Add(-time.Second),
		web.Key() + " get pods/log":          now.Add(-time.Second),
	}
	got := map[string]time.Time{}
	for _, u := range uses { // the latest use of each pair, as the Table keeps it
		if k := u.Grant.Key() + " " + u.Pair.String(); u.At.After(got[k]) {
			got[k] = u.At
		}
	}
	if len(got) != len(want) {
		t.Errorf("uses %v\nwant %v", got, want)
	}
	for k, at := range want {
		// @timestamp is the record's request time or stage time: within a
		// few milliseconds of the stage time the test set.
		if g, ok := got[k]; !ok || g.Sub(at).Abs() > 10*time.Millisecond {
			t.Errorf("%s: %v (present %v), want %v", k, g, ok, at)
		}
	}
	if st.Parsed != 5 || st.Invalid != 1 || st.InvalidErr == nil {
		t.Errorf("stats %+v, want 5 parsed (two URIs of /healthz) and 1 invalid", st)
	}
	if all, _, err := s.Uses(ctx, "prod", time.Time{}, now.Add(time.Hour)); err != nil || len(all) != len(uses) {
		t.Errorf("uses of all history: %d, %v; want %d", len(all), err, len(uses))
	}
	if later, _, err := s.Uses(ctx, "prod", now.Add(time.Hour), now.Add(2*time.Hour)); err != nil || len(later) != 0 {
		t.Errorf("uses of a later period: %v, %v", later, err)
	}
	if none, _, err := NewUsageStore(es, cfg.Findings.UsageIndex, cfg.Streams.Audit+"-missing").Uses(ctx, "prod", time.Time{}, now); err != nil || len(none) != 0 {
		t.Errorf("missing stream: %v, %v", none, err)
	}

	// Save and Load: three batches of two documents.
	defer func(n int) { usageBatch = n }(usageBatch)
	usageBatch = 2
	tb := rbacusage.NewTable()
	for _, u := range uses {
		tb.Observe(u)
	}
	snap := rbacusage.Snapshot{WatchStart: now.Add(-48 * time.Hour).Truncate(time.Second), ReadTo: now.Truncate(time.Second), Usages: tb.All()}
	if err := s.Save(ctx, "prod", snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "other", rbacusage.Snapshot{WatchStart: now}); err != nil {
		t.Fatal(err)
	}
	back, err := s.Load(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	restored := rbacusage.NewTable()
	for _, u := range back.Usages {
		restored.Restore(u)
	}
	if !back.WatchStart.Equal(snap.WatchStart) || !back.ReadTo.Equal(snap.ReadTo) || !reflect.DeepEqual(restored.All(), tb.All()) {
		t.Errorf("loaded %+v\nsaved %+v", back, snap)
	}
	if cls, err := s.Clusters(ctx); err != nil || !reflect.DeepEqual(cls, []string{"other", "prod"}) {
		t.Errorf("Clusters = %v, %v", cls, err)
	}
	missing := NewUsageStore(es, cfg.Findings.UsageIndex+"-missing", cfg.Streams.Audit)
	if empty, err := missing.Load(ctx, "prod"); err != nil || len(empty.Usages) != 0 || !empty.WatchStart.IsZero() {
		t.Errorf("missing index: %+v, %v", empty, err)
	}
	// Writing would create the index without its mapping: refused.
	if err := missing.Save(ctx, "prod", snap); err == nil || !strings.Contains(err.Error(), "setup es") {
		t.Errorf("save to a missing index: %v", err)
	}
	if status, _, _, _ := Call(ctx, es, http.MethodHead, "/"+cfg.Findings.UsageIndex+"-missing", nil); status != http.StatusNotFound {
		t.Errorf("save to a missing index created it: %d", status)
	}
}
