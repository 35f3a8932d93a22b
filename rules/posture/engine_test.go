package posture

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
)

const cl = "prod"

func apply(t *testing.T, e *Engine, o Object) []Decision {
	t.Helper()
	ds, err := e.Apply(cl, o)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func wantDecisions(t *testing.T, what string, got []Decision, uid string, want ...string) {
	t.Helper()
	if g := ids(got, uid); !slices.Equal(g, want) {
		t.Errorf("%s: decisions %v, want %v", what, g, want)
	}
}

func TestLifecycleOpenResolveReopen(t *testing.T) {
	e := New(builtin(t))
	for _, o := range goodShop(t) {
		apply(t, e, o)
	}
	good := obj(t, goodDeployment)
	bad := with(t, good, "spec.template.spec.hostPID", true)
	ds := apply(t, e, bad)
	wantDecisions(t, "hostPID set", ds, good.UID, "posture-host-pid:open")
	d := ds[0]
	want := Decision{
		ID: "prod/posture-host-pid/" + good.UID, Cluster: cl, State: StateOpen, CheckID: "posture-host-pid",
		Title: "Pod shares the host's PID namespace", CIS: []string{"5.2.3"}, CISVersion: "1.10", Severity: rules.SeverityHigh,
		Object: ObjectRef{"Deployment", "shop", "web", good.UID}, Message: "Deployment shop/web sets hostPID",
		Remediation: "Remove hostPID from the pod spec.", ResourceVersion: "2",
	}
	d.Mitre = rules.Mitre{}
	if !equalDecision(d, want) {
		t.Errorf("decision\n got %+v\nwant %+v", d, want)
	}
	fixed := with(t, bad, "spec.template.spec.hostPID", false)
	ds = apply(t, e, fixed)
	wantDecisions(t, "hostPID fixed", ds, good.UID, "posture-host-pid:resolved")
	if len(ds) == 1 && ds[0].ResourceVersion != "3" {
		t.Errorf("resolved at resourceVersion %s, want 3", ds[0].ResourceVersion)
	}
	again := with(t, fixed, "spec.template.spec.hostPID", true)
	wantDecisions(t, "hostPID set again", apply(t, e, again), good.UID, "posture-host-pid:reopened")
	if f := e.Findings(cl); len(f) != 1 || f[0].State != StateReopened {
		t.Errorf("findings %v, want the reopened one", ids(f, ""))
	}
}

func equalDecision(a, b Decision) bool {
	return a.ID == b.ID && a.Cluster == b.Cluster && a.State == b.State && a.CheckID == b.CheckID && a.Title == b.Title &&
		slices.Equal(a.CIS, b.CIS) && a.CISVersion == b.CISVersion && a.Severity == b.Severity && a.Object == b.Object &&
		a.Message == b.Message && a.Remediation == b.Remediation && a.ResourceVersion == b.ResourceVersion
}

func TestDeleteResolves(t *testing.T) {
	e := New(builtin(t))
	p := obj(t, privilegedPod)
	if ds := apply(t, e, p); !has(ds, "posture-privileged-container", p.UID) {
		t.Fatalf("privileged Pod: %v", ids(ds, ""))
	}
	ds := e.Delete(cl, "Pod", "shop", "debug")
	for _, d := range ds {
		if d.State != StateResolved || d.Object.UID != p.UID {
			t.Errorf("delete: decision %s %s, want only resolutions of the Pod", d.ID, d.State)
		}
	}
	if !has(ds, "posture-privileged-container", p.UID) {
		t.Errorf("delete: %v, want the privileged finding resolved", ids(ds, ""))
	}
	if f := e.Findings(cl); len(f) != 0 {
		t.Errorf("findings after delete: %v", ids(f, ""))
	}
	if ds := e.Delete(cl, "Pod", "shop", "debug"); len(ds) != 0 {
		t.Errorf("second delete: %v", ids(ds, ""))
	}
}

// TestNetworkPolicyResolvesNamespace: creating a NetworkPolicy re-judges
// only the checks that read its namespace's policies (dependency
// tracking), never other namespaces.
func TestNetworkPolicyResolvesNamespace(t *testing.T) {
	e := New(builtin(t))
	ns := obj(t, goodNamespace)
	other := with(t, ns, "metadata.name", "other")
	other.UID = "uid-other"
	apply(t, e, other)
	ds := apply(t, e, ns)
	wantDecisions(t, "namespace", ds, ns.UID,
		"posture-namespace-without-default-deny-egress:open", "posture-namespace-without-network-policy:open")
	before := e.Stats().Evaluations.Load()
	np := obj(t, goodDenyAll)
	np.ResourceVersion = "7"
	ds = apply(t, e, np)
	wantDecisions(t, "NetworkPolicy created", ds, "",
		"posture-namespace-without-default-deny-egress:resolved", "posture-namespace-without-network-policy:resolved")
	for _, d := range ds {
		if d.Object.UID != ns.UID || d.ResourceVersion != "7" {
			t.Errorf("%s: object %s at resourceVersion %s, want %s at 7 (the NetworkPolicy's)", d.ID, d.Object.UID, d.ResourceVersion, ns.UID)
		}
	}
	// Two namespace checks read network_policies(shop); nothing else.
	if n := e.Stats().Evaluations.Load() - before; n != 2 {
		t.Errorf("NetworkPolicy created: %d evaluations, want 2", n)
	}
	ds = e.Delete(cl, "NetworkPolicy", "shop", "deny-all")
	wantDecisions(t, "NetworkPolicy deleted", ds, ns.UID,
		"posture-namespace-without-default-deny-egress:reopened", "posture-namespace-without-network-policy:reopened")
}

// TestBindingRejudgesWorkloads: a ClusterRoleBinding change re-judges the
// workloads running as its subjects.
func TestBindingRejudgesWorkloads(t *testing.T) {
	e := New(builtin(t))
	for _, o := range goodShop(t) {
		apply(t, e, o)
	}
	crb := obj(t, `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: web-admin}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]`)
	if ds := apply(t, e, crb); len(ds) != 0 {
		t.Errorf("binding to a missing role: %v", ids(ds, ""))
	}
	dep := obj(t, goodDeployment).UID
	ds := apply(t, e, with(t, crb, "roleRef.name", "cluster-admin"))
	wantDecisions(t, "binding now grants cluster-admin", ds, dep, "posture-workload-cluster-admin-sa:open")
	ds = e.Delete(cl, "ClusterRoleBinding", "", "web-admin")
	wantDecisions(t, "binding deleted", ds, dep, "posture-workload-cluster-admin-sa:resolved")
	// Through a group the account is in.
	grp := with(t, crb, "subjects", []any{map[string]any{"kind": "Group", "name": "system:serviceaccounts:shop"}})
	grp = with(t, grp, "roleRef.name", "cluster-admin")
	wantDecisions(t, "cluster-admin to the namespace's accounts", apply(t, e, grp), dep, "posture-workload-cluster-admin-sa:reopened")
	// Deleted and created again under the same name (the delete unseen):
	// the old binding's subjects no longer count.
	recreated := with(t, grp, "subjects", []any{map[string]any{"kind": "User", "name": "alice"}})
	recreated.UID = "uid-recreated"
	wantDecisions(t, "binding recreated for someone else", apply(t, e, recreated), dep, "posture-workload-cluster-admin-sa:resolved")
}

// TestAggregatedClusterRole: a ClusterRole that starts matching an
// aggregationRule changes the aggregated role's verdict.
func TestAggregatedClusterRole(t *testing.T) {
	e := New(builtin(t))
	agg := obj(t, aggregator)
	// Unbound, it fails posture-rbac-role-unbound and nothing else.
	if ds := apply(t, e, agg); len(ds) != 1 || ds[0].CheckID != "posture-rbac-role-unbound" {
		t.Errorf("empty aggregated role: %v", ids(ds, ""))
	}
	reader := with(t, obj(t, secretsReader), "metadata.labels", nil)
	apply(t, e, reader)
	if has(e.Findings(cl), "posture-secrets-access", agg.UID) {
		t.Fatal("aggregated role fails before any member matches")
	}
	ds := apply(t, e, with(t, reader, "metadata.labels", map[string]any{"acme.io/aggregate-to-monitoring": "true"}))
	wantDecisions(t, "member labelled", ds, agg.UID, "posture-secrets-access:open")
	if len(ds) == 1 && ds[0].Message != "ClusterRole monitoring allows reading secrets; bound to: " {
		t.Errorf("message %q", ds[0].Message)
	}
	ds = apply(t, e, with(t, obj(t, secretsReader), "rules.0.resources", []any{"configmaps"}))
	wantDecisions(t, "member narrowed", ds, agg.UID, "posture-secrets-access:resolved")
}

// TestReplayIsSilent: applying the current state again, replacing the
// inventory with it, or a new engine restored from the decisions and then
// given the same state, yields no transitions.
func TestReplayIsSilent(t *testing.T) {
	e := New(builtin(t))
	state := append(goodShop(t), obj(t, privilegedPod), obj(t, aliceAdmin), with(t, obj(t, goodNamespace), "metadata.name", "bare"))
	state[len(state)-1].UID = "uid-bare"
	var all []Decision
	for _, o := range state {
		all = append(all, apply(t, e, o)...)
	}
	if len(all) == 0 {
		t.Fatal("no findings to replay")
	}
	for _, o := range state {
		if ds := apply(t, e, o); len(ds) != 0 {
			t.Errorf("re-apply %s: %v", o.Name, ids(ds, ""))
		}
	}
	if ds, err := e.Replace(cl, state); err != nil || len(ds) != 0 {
		t.Errorf("replace with the same state: %v %v", ids(ds, ""), err)
	}
	restarted := New(builtin(t))
	restarted.Restore(cl, e.Findings(cl))
	if ds, err := restarted.Replace(cl, state); err != nil || len(ds) != 0 {
		t.Errorf("restart: %v %v", ids(ds, ""), err)
	}
	// Fixed and deleted while the process was down.
	restarted = New(builtin(t))
	restarted.Restore(cl, e.Findings(cl))
	next := slices.Clone(state[:len(state)-2]) // aliceAdmin and the bare namespace deleted
	ds, err := restarted.Replace(cl, next)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.State != StateResolved || (d.Object.Name != "alice-admin" && d.Object.Name != "bare") {
			t.Errorf("restart after deletes: %s %s", d.ID, d.State)
		}
	}
	if len(ds) == 0 {
		t.Error("restart after deletes: nothing resolved")
	}
}

// TestAdoptedPodResolves: a Pod judged while bare stops being judged once
// a controller owns it; its finding resolves instead of staying open.
func TestAdoptedPodResolves(t *testing.T) {
	e := New(builtin(t))
	p := obj(t, privilegedPod)
	apply(t, e, p)
	adopted := with(t, p, "metadata.ownerReferences", []any{map[string]any{"kind": "Job", "name": "j", "controller": true}})
	ds := apply(t, e, adopted)
	if !has(ds, "posture-privileged-container", p.UID) || len(e.Findings(cl)) != 0 {
		t.Errorf("adopted: decisions %v, findings %v", ids(ds, ""), ids(e.Findings(cl), ""))
	}
}

// TestBadInput: objects the engine cannot or does not judge are counted,
// never a panic, never kept.
func TestBadInput(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	cases := []struct {
		name    string
		o       Object
		invalid bool
	}{
		{"no kind", Object{Name: "a", UID: "u"}, true},
		{"no name", Object{Kind: "Pod", Namespace: "a", UID: "u"}, true},
		{"no uid", Object{Kind: "Pod", Namespace: "a", Name: "p"}, true},
		{"namespaced kind without namespace", Object{Kind: "Deployment", Name: "d", UID: "u"}, true},
		{"cluster-scoped kind with namespace", Object{Kind: "ClusterRole", Namespace: "a", Name: "r", UID: "u"}, true},
		{"unknown kind", Object{APIVersion: "acme.io/v1", Kind: "Widget", Namespace: "a", Name: "w", UID: "u"}, false},
		{"unknown version", Object{APIVersion: "apps/v1beta1", Kind: "Deployment", Namespace: "a", Name: "d", UID: "u"}, false},
		{"1 MiB ConfigMap", Object{APIVersion: "v1", Kind: "ConfigMap", Namespace: "a", Name: "c", UID: "u",
			Body: map[string]any{"data": map[string]any{"big": big}}}, false},
		{"spec of the wrong type", Object{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "a", Name: "d", UID: "u1",
			Body: map[string]any{"spec": "x", "metadata": []any{1.0}}}, false},
		{"containers of the wrong type", Object{APIVersion: "v1", Kind: "Pod", Namespace: "a", Name: "p", UID: "u2",
			Body: map[string]any{"spec": map[string]any{"containers": 5.0, "volumes": []any{"x", nil}}}}, false},
		{"binding without roleRef", Object{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding", Namespace: "a", Name: "b", UID: "u3",
			Body: map[string]any{"subjects": []any{map[string]any{"kind": 1.0}, "x"}}}, false},
		{"no body", Object{Kind: "Namespace", Name: "n", UID: "u4"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(builtin(t))
			_, err := e.Apply(cl, tc.o)
			if tc.invalid != errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want invalid=%v", err, tc.invalid)
			}
			st := e.Stats()
			if tc.invalid && st.Invalid.Load() != 1 {
				t.Errorf("invalid counted %d times", st.Invalid.Load())
			}
			kept := len(e.cluster(cl).inv.objs)
			if _, ok := kinds[tc.o.Kind]; !tc.invalid && (!ok || (tc.o.APIVersion != "" && kinds[tc.o.Kind].apiVersion != tc.o.APIVersion)) {
				if st.Ignored.Load() != 1 || kept != 0 {
					t.Errorf("ignored %d, kept %d objects; want 1 ignored and none kept", st.Ignored.Load(), kept)
				}
			}
			if _, err := e.Replace(cl, []Object{tc.o}); tc.invalid != (err != nil) {
				t.Errorf("replace: %v", err)
			}
		})
	}
}

// TestScore weighs verdicts by severity, per cluster and namespace.
func TestScore(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, `
rules:
  - {id: ns-high, title: t, severity: high, source: object, condition: 'kind == "Namespace" && name == "bad"'}
  - {id: pod-low, title: t, severity: low, source: object, condition: 'kind == "Pod" && name == "bad"'}
`)
	set, err := rules.Load(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	e := New(set)
	for _, o := range []Object{
		{Kind: "Namespace", Name: "bad", UID: "1"}, {Kind: "Namespace", Name: "good", UID: "2"},
		{Kind: "Pod", Namespace: "bad", Name: "bad", UID: "3"}, {Kind: "Pod", Namespace: "good", Name: "ok", UID: "4"},
		{Kind: "ClusterRole", Name: "r", UID: "5"},
	} {
		apply(t, e, o)
	}
	total, byNS := e.Score(cl)
	// high 6 + low 1 failed; high 6 + low 1 passed.
	if total.Passed != 2 || total.Failed != 2 || total.Weight != 14 || total.PassedWeight != 7 || total.Percent != 50 {
		t.Errorf("cluster score %+v", total)
	}
	if s := byNS["bad"]; s.Failed != 2 || s.Percent != 0 {
		t.Errorf("namespace bad %+v", s)
	}
	if s := byNS["good"]; s.Passed != 2 || s.Percent != 100 {
		t.Errorf("namespace good %+v", s)
	}
}

// TestControlPlanePods: mirror Pods are judged by the checks tagged
// control-plane and only by them; other Pods never by those.
func TestControlPlanePods(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, `
rules:
  - {id: cp, title: t, severity: high, source: object, tags: [control-plane], condition: 'kind == "Pod"'}
  - {id: wl, title: t, severity: high, source: object, condition: 'kind == "Pod"'}
`)
	set, err := rules.Load(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	e := New(set)
	mirror, bare := obj(t, mirrorPod), obj(t, privilegedPod)
	wantDecisions(t, "mirror Pod", apply(t, e, mirror), "", "cp:open")
	wantDecisions(t, "bare Pod", apply(t, e, bare), "", "wl:open")
}

// TestMetrics reads the engine's counters through Prometheus.
func TestMetrics(t *testing.T) {
	e := New(builtin(t))
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.Collector())
	p := obj(t, privilegedPod)
	apply(t, e, p)
	apply(t, e, p) // unchanged
	_, _ = e.Apply(cl, Object{Kind: "Pod", Name: "x"})
	_, _ = e.Apply(cl, Object{Kind: "ConfigMap", Namespace: "a", Name: "c", UID: "u"})
	e.Delete(cl, "Pod", "shop", "debug")
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kubesift_posture_objects_total", []string{"result", "applied"}, 1},
		{"kubesift_posture_objects_total", []string{"result", "unchanged"}, 1},
		{"kubesift_posture_objects_total", []string{"result", "invalid"}, 1},
		{"kubesift_posture_objects_total", []string{"result", "ignored"}, 1},
		{"kubesift_posture_objects_total", []string{"result", "deleted"}, 1},
		{"kubesift_posture_inventory_objects", []string{"cluster", cl}, 0},
	} {
		if got := testenv.Metric(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	opened := testenv.Metric(t, reg, "kubesift_posture_transitions_total", "state", "open")
	resolved := testenv.Metric(t, reg, "kubesift_posture_transitions_total", "state", "resolved")
	if opened == 0 || opened != resolved {
		t.Errorf("transitions: %v opened, %v resolved; want equal and non-zero", opened, resolved)
	}
}

// TestConcurrentClusters applies, deletes and reads from several
// goroutines (run with -race): each cluster has its own lock, and readers
// (Findings, Score, the metrics collector) take it too.
func TestConcurrentClusters(t *testing.T) {
	e := New(builtin(t))
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.Collector())
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(cluster string) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for _, o := range goodShop(t) {
					o.ResourceVersion = strconv.Itoa(i + 1)
					if _, err := e.Apply(cluster, with(t, o, "metadata.labels.round", strconv.Itoa(i))); err != nil {
						t.Error(err)
						return
					}
				}
				e.Delete(cluster, "Deployment", "shop", "web")
				e.Findings(cluster)
				e.Score(cluster)
			}
		}("c" + strconv.Itoa(g%2))
	}
	for i := 0; i < 20; i++ {
		testenv.Metric(t, reg, "kubesift_posture_inventory_objects")
	}
	wg.Wait()
	if n := testenv.Metric(t, reg, "kubesift_posture_inventory_objects"); n != 10 {
		t.Errorf("inventory holds %v objects over two clusters, want 10 (5 each, the Deployment deleted)", n)
	}
}

// TestActorLifecycle: an actor set on the opening transition stays through
// the resolve, a reopen clears it, a restored one is kept, and SetActor on
// a transition the finding has moved past changes nothing.
func TestActorLifecycle(t *testing.T) {
	const check = "posture-privileged-container"
	alice, bob := &Actor{User: "alice", AuditID: "a-1"}, &Actor{User: "bob"}
	p := obj(t, privilegedPod)
	fixed := with(t, p, "spec.containers", []any{map[string]any{"name": "c", "image": "nginx"}})
	fixed.ResourceVersion = "900"
	broken := p
	broken.ResourceVersion = "901"
	find := func(ds []Decision, state State) *Decision {
		for i := range ds {
			if ds[i].CheckID == check && ds[i].State == state {
				return &ds[i]
			}
		}
		t.Fatalf("no %s transition of %s in %v", state, check, ids(ds, ""))
		return nil
	}
	e := New(builtin(t))
	opened := find(apply(t, e, p), StateOpen)
	if opened.Actor != nil {
		t.Errorf("open transition carries actor %+v before SetActor", opened.Actor)
	}
	e.SetActor(opened, alice)
	resolved := find(apply(t, e, fixed), StateResolved)
	e.SetActor(opened, bob) // stale: the finding has resolved since
	reopened := find(apply(t, e, broken), StateReopened)
	restarted := New(builtin(t))
	restarted.Restore(cl, []Decision{{ID: opened.ID, Cluster: cl, State: StateOpen, CheckID: check, Object: opened.Object,
		ResourceVersion: opened.ResourceVersion, Actor: alice}})
	for _, tc := range []struct {
		name string
		got  *Actor
		want *Actor
	}{
		{"resolve keeps the opener", resolved.Actor, alice},
		{"reopen clears it", reopened.Actor, nil},
		{"restored", restarted.Findings(cl)[0].Actor, alice},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: actor %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
	e.SetActor(reopened, bob)
	if got := find(e.Findings(cl), StateReopened).Actor; got != bob {
		t.Errorf("after SetActor on the reopen: %+v", got)
	}
}
