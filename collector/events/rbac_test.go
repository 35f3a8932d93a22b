package events

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// loadRBAC decodes testdata/rbac.yaml.
func loadRBAC(t testing.TB) []runtime.Object { return testenv.DecodeObjects(t, "testdata/rbac.yaml") }

// TestRBACFixtureIsLeastPrivilege checks the fixture itself: exactly the
// permissions the package doc lists, nothing more.
func TestRBACFixtureIsLeastPrivilege(t *testing.T) {
	type grant struct{ group, resource, verb, name string }
	var cluster, ns []grant
	kinds := map[string]int{}
	for _, o := range loadRBAC(t) {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			kinds["ClusterRole"]++
			for _, r := range o.Rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							if len(r.ResourceNames) == 0 {
								cluster = append(cluster, grant{g, res, v, ""})
							}
							for _, n := range r.ResourceNames {
								cluster = append(cluster, grant{g, res, v, n})
							}
						}
					}
				}
			}
		case *rbacv1.Role:
			kinds["Role"]++
			for _, r := range o.Rules {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if len(r.ResourceNames) == 0 {
							ns = append(ns, grant{r.APIGroups[0], res, v, ""})
						}
						for _, n := range r.ResourceNames {
							ns = append(ns, grant{r.APIGroups[0], res, v, n})
						}
					}
				}
			}
		case *corev1.ServiceAccount:
			kinds["ServiceAccount"]++
		case *rbacv1.ClusterRoleBinding:
			kinds["ClusterRoleBinding"]++
		case *rbacv1.RoleBinding:
			kinds["RoleBinding"]++
		default:
			t.Errorf("unexpected object %T", o)
		}
	}
	for _, k := range []string{"ClusterRole", "Role", "ServiceAccount", "ClusterRoleBinding", "RoleBinding"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s objects, want 1", kinds[k], k)
		}
	}
	wantCluster := map[grant]bool{}
	for _, g := range []string{"", "events.k8s.io"} {
		for _, v := range []string{"get", "list", "watch"} {
			wantCluster[grant{g, "events", v, ""}] = true
		}
	}
	for _, v := range []string{"get", "list", "watch"} {
		wantCluster[grant{"", "pods", v, ""}] = true
	}
	wantCluster[grant{"", "namespaces", "get", "kube-system"}] = true
	d := config.DefaultEventsConfig()
	wantNS := map[grant]bool{{"coordination.k8s.io", "leases", "create", ""}: true}
	for _, n := range []string{d.LeaderElection.LeaseName, d.Watermark.LeaseName} {
		wantNS[grant{"coordination.k8s.io", "leases", "get", n}] = true
		wantNS[grant{"coordination.k8s.io", "leases", "update", n}] = true
	}
	check := func(scope string, got []grant, want map[grant]bool) {
		seen := map[grant]bool{}
		for _, g := range got {
			if !want[g] {
				t.Errorf("%s grants %+v, which the collector does not need", scope, g)
			}
			seen[g] = true
		}
		for g := range want {
			if !seen[g] {
				t.Errorf("%s lacks %+v", scope, g)
			}
		}
	}
	check("ClusterRole", cluster, wantCluster)
	check("Role", ns, wantNS)
}

// applyRBAC creates the fixture's objects in ns (cluster-scoped names get a
// suffix so parallel runs do not collide) and returns the ServiceAccount's
// user name.
func applyRBAC(t testing.TB, cs kubernetes.Interface, ns string) string {
	t.Helper()
	ctx := context.Background()
	var saName string
	suffix := "-" + ns
	for _, o := range loadRBAC(t) {
		var err error
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			o.Namespace, saName = ns, o.Name
			_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			o.Name += suffix
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		case *rbacv1.ClusterRoleBinding:
			o.Name += suffix
			o.RoleRef.Name += suffix
			for i := range o.Subjects {
				o.Subjects[i].Namespace = ns
			}
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() {
				_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
			})
		case *rbacv1.Role:
			o.Namespace = ns
			_, err = cs.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = ns
			for i := range o.Subjects {
				o.Subjects[i].Namespace = ns
			}
			_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("apply %T: %v", o, err)
		}
	}
	return "system:serviceaccount:" + ns + ":" + saName
}

// TestIntegrationLeastPrivilege runs the collector as the fixture's
// ServiceAccount (impersonated) against the real API server: it elects,
// ships and enriches Events and writes its watermark. SubjectAccessReviews
// then show what that identity can and cannot do — no Secrets.
func TestIntegrationLeastPrivilege(t *testing.T) {
	restCfg, admin := realKube(t)
	ns := testNamespace(t, admin)
	user := applyRBAC(t, admin, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A Pod to enrich from (never runs: no kubelet on the test ground).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns, Labels: map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "4f9a0c56-0000-4000-8000-000000000001", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "registry.example/web:1"}}},
	}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	asSA := rest.CopyConfig(restCfg)
	asSA.Impersonate = rest.ImpersonationConfig{UserName: user}
	pub := newFakePublisher()
	cfg := realConfig(ns)
	rc := startReal(t, asSA, cfg, pub)
	testenv.WaitFor(t, "the collector to lead and sync as "+user, 30*time.Second, rc.c.Synced)

	g := newLoadGen(admin, ns)
	if err := g.run(ctx, 40, 4, func(i int) int { return i % 2 }); err != nil {
		t.Fatal(err)
	}
	want := g.wanted()
	testenv.WaitFor(t, "every occurrence", time.Minute, func() bool { n, _ := missing(want, pub.ids()); return n == 0 })
	testenv.WaitFor(t, "a watermark written", 10*time.Second, func() bool {
		return testenv.Metric(t, rc.reg, "kubesift_collector_events_watermark_writes_total", "result", "ok") > 0
	})
	enriched := 0
	for _, r := range pub.records() {
		var ann map[string]string
		if r.Event != nil {
			ann = r.Event.Annotations
		} else if r.CoreEvent != nil {
			ann = r.CoreEvent.Annotations
		}
		if ann[rules.AnnotationNode] == "node-a" && ann[rules.AnnotationOwnerKind] == "StatefulSet" && ann[AnnotationPodLabels] == `{"app":"web"}` {
			enriched++
		}
	}
	if enriched == 0 {
		t.Error("no record about web-0 was enriched from the Pod cache")
	}
	if rc.c.Cluster().UID == "" {
		t.Error("cluster uid not read")
	}
	lease, err := admin.CoordinationV1().Leases(ns).Get(ctx, cfg.LeaderElection.LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != rc.c.Identity() {
		t.Errorf("leader lease %v, err %v", lease, err)
	}
	if errs := testenv.Metric(t, rc.reg, "kubesift_collector_events_watermark_writes_total", "result", "error"); errs > 0 {
		t.Errorf("%v watermark writes failed", errs)
	}
	t.Logf("as %s: %d occurrences shipped, %d records enriched, watermark written, lease held by %s",
		user, len(want), enriched, *lease.Spec.HolderIdentity)

	// The same identity cannot read Secrets, for real ...
	sa, err := kubernetes.NewForConfig(asSA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Secrets(ns).Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get secret as %s: err %v, want Forbidden", user, err)
	}
	if _, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as %s: err %v, want Forbidden", user, err)
	}
	_ = admin.CoreV1().Secrets(ns).Delete(ctx, "s", metav1.DeleteOptions{})

	// ... and SubjectAccessReviews show the whole picture.
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	tests := []struct {
		verb, group, resource, namespace, name string
		allowed                                bool
	}{
		{"watch", "", "events", "", "", true},
		{"list", "events.k8s.io", "events", "", "", true},
		{"watch", "events.k8s.io", "events", "other", "", true},
		{"list", "", "pods", "", "", true},
		{"get", "", "namespaces", "", "kube-system", true},
		{"create", "coordination.k8s.io", "leases", ns, "", true},
		{"update", "coordination.k8s.io", "leases", ns, cfg.LeaderElection.LeaseName, true},
		{"update", "coordination.k8s.io", "leases", ns, cfg.Watermark.LeaseName, true},
		{"get", "", "secrets", ns, "s", false},
		{"list", "", "secrets", "", "", false},
		{"watch", "", "secrets", "kube-system", "", false},
		{"get", "", "configmaps", ns, "", false},
		{"create", "", "events", ns, "", false},
		{"delete", "events.k8s.io", "events", ns, "", false},
		{"update", "", "pods", ns, "web-0", false},
		{"get", "", "namespaces", "", "default", false},
		{"list", "", "namespaces", "", "", false},
		{"update", "coordination.k8s.io", "leases", ns, "someone-elses-lease", false},
		{"update", "coordination.k8s.io", "leases", "kube-system", cfg.LeaderElection.LeaseName, false},
		{"create", "coordination.k8s.io", "leases", "kube-node-lease", "", false},
		{"delete", "coordination.k8s.io", "leases", ns, cfg.LeaderElection.LeaseName, false},
		{"impersonate", "", "users", "", "", false},
	}
	for _, tc := range tests {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: tc.resource, Namespace: tc.namespace, Name: tc.name},
		}}
		res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed != tc.allowed {
			t.Errorf("%s %s/%s ns=%q name=%q: allowed=%v, want %v (%s)", tc.verb, tc.group, tc.resource, tc.namespace, tc.name,
				res.Status.Allowed, tc.allowed, res.Status.Reason)
		}
	}
}

// TestIntegrationNoGrantsNoClusterID: without the fixture's grant the
// cluster id cannot be read and Run says so (the collector does not start
// half-configured).
func TestIntegrationNoGrantsNoClusterID(t *testing.T) {
	restCfg, admin := realKube(t)
	ns := testNamespace(t, admin)
	k := testenv.KubeAPIServer(t)
	noGrants := rest.CopyConfig(restCfg)
	noGrants.BearerToken = k.UserToken
	cs, err := kubernetes.NewForConfig(noGrants)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(realConfig(ns), record.Cluster{Name: "it"}, cs, newFakePublisher(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Run(ctx); err == nil || !apierrors.IsForbidden(err) || !containsAll(err.Error(), "kube-system") {
		t.Fatalf("Run = %v, want a forbidden error naming the namespaces grant", err)
	}
}
