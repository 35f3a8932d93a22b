package posture

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestRealAPIServerObjects plants violations and compliant look-alikes on
// the test ground's kube-apiserver, lists every judged kind back (objects as
// the server stores them: defaults filled, built-in RBAC included, and
// whatever other tests left), judges the whole cluster with Replace, then
// fixes and deletes objects through the API and applies what the server
// returns. The built-in bindings (system:masters among them) and the
// bootstrap ClusterRoles must yield no finding.
func TestRealAPIServerObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testenv.NewKubeClient(t, "kubesift-posture-test").CS
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	ns, reader, agg, admin := "ks-posture-"+sfx, "ks-posture-reader-"+sfx, "ks-posture-agg-"+sfx, "ks-posture-admin-"+sfx
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Namespaces never finish deleting on the test ground (no namespace
	// controller); the cluster-scoped objects are removed.
	t.Cleanup(func() {
		c2, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.RbacV1().ClusterRoleBindings().Delete(c2, admin, metav1.DeleteOptions{})
		_ = c.RbacV1().ClusterRoles().Delete(c2, reader, metav1.DeleteOptions{})
		_ = c.RbacV1().ClusterRoles().Delete(c2, agg, metav1.DeleteOptions{})
		_ = c.CoreV1().Namespaces().Delete(c2, ns, metav1.DeleteOptions{})
	})

	no := false
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}, metav1.CreateOptions{})
	must("namespace", err)
	_, err = c.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-all"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}}}, metav1.CreateOptions{})
	must("network policy", err)
	_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		AutomountServiceAccountToken: &no}, metav1.CreateOptions{})
	must("service account", err)
	good := deployment(t, obj(t, goodDeployment), ns, "web")
	_, err = c.AppsV1().Deployments(ns).Create(ctx, good, metav1.CreateOptions{})
	must("compliant deployment", err)
	bad := good.DeepCopy()
	bad.Name = "bad"
	yes := true
	bad.Spec.Template.Spec.Containers[0].SecurityContext.Privileged = &yes
	bad.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
	_, err = c.AppsV1().Deployments(ns).Create(ctx, bad, metav1.CreateOptions{})
	must("privileged deployment", err)
	_, err = c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: agg},
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
			{MatchLabels: map[string]string{"ks-posture/aggregate-to": sfx}}}},
	}, metav1.CreateOptions{})
	must("aggregated role", err)
	_, err = c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: reader, Labels: map[string]string{"ks-posture/aggregate-to": sfx}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{})
	must("secrets reader", err)
	_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: admin},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "alice-" + sfx}},
	}, metav1.CreateOptions{})
	must("cluster-admin binding", err)

	objs := listAll(ctx, t, c)
	e := New(builtin(t))
	if _, err := e.Replace("ground", objs); err != nil {
		t.Fatal(err)
	}
	uids := map[string]Object{}
	for _, o := range objs {
		uids[o.UID] = o
	}
	findings := e.Findings("ground")
	for _, f := range findings {
		o := uids[f.Object.UID]
		if str(labels(o.Body)["kubernetes.io/bootstrapping"]) == "rbac-defaults" {
			t.Errorf("finding %s on the built-in %s %s", f.CheckID, f.Object.Kind, f.Object.Name)
		}
	}
	uidOf := func(kind, namespace, name string) string {
		for _, o := range objs {
			if o.Kind == kind && o.Namespace == namespace && o.Name == name {
				return o.UID
			}
		}
		t.Fatalf("%s %s/%s not listed", kind, namespace, name)
		return ""
	}
	mastersBinding := uidOf("ClusterRoleBinding", "", "cluster-admin")
	badUID, goodUID := uidOf("Deployment", ns, "bad"), uidOf("Deployment", ns, "web")
	for _, want := range []struct {
		check, uid string
		fail       bool
	}{
		{"posture-system-masters-binding", mastersBinding, false},
		{"posture-cluster-admin-binding", mastersBinding, false},
		{"posture-cluster-admin-binding", uidOf("ClusterRoleBinding", "", admin), true},
		{"posture-secrets-access", uidOf("ClusterRole", "", agg), true},
		{"posture-privileged-container", badUID, true},
		{"posture-privilege-escalation", badUID, true},
	} {
		if has(findings, want.check, want.uid) != want.fail {
			t.Errorf("%s on %s: failed=%v, want %v", want.check, uids[want.uid].Name, !want.fail, want.fail)
		}
	}
	for _, uid := range []string{goodUID, uidOf("Namespace", "", ns)} {
		if got := ids(findings, uid); len(got) > 0 {
			t.Errorf("compliant %s %s: findings %v", uids[uid].Kind, uids[uid].Name, got)
		}
	}

	// Fix through the API and apply what the server returns.
	cur, err := c.AppsV1().Deployments(ns).Get(ctx, "bad", metav1.GetOptions{})
	must("get", err)
	cur.Spec.Template.Spec.Containers[0].SecurityContext.Privileged = &no
	cur.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &no
	fixed, err := c.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
	must("update", err)
	ds, err := e.Apply("ground", toObject(t, fixed, "Deployment", "apps/v1"))
	must("apply", err)
	wantDecisions(t, "fixed through the API", ds, badUID, "posture-privilege-escalation:resolved", "posture-privileged-container:resolved")
	for _, d := range ds {
		if d.ResourceVersion != fixed.ResourceVersion {
			t.Errorf("%s at resourceVersion %s, want the update's %s", d.ID, d.ResourceVersion, fixed.ResourceVersion)
		}
	}
	must("delete binding", c.RbacV1().ClusterRoleBindings().Delete(ctx, admin, metav1.DeleteOptions{}))
	wantDecisions(t, "binding deleted", e.Delete("ground", "ClusterRoleBinding", "", admin), "", "posture-cluster-admin-binding:resolved")
}

// deployment converts a fixture into a typed Deployment in namespace ns.
func deployment(t *testing.T, o Object, ns, name string) *appsv1.Deployment {
	t.Helper()
	raw, _ := json.Marshal(o.Body)
	var d appsv1.Deployment
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	d.Namespace, d.Name = ns, name
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Labels = map[string]string{"app": name}
	return &d
}

// toObject is what the objects source will deliver for a typed object.
func toObject(t *testing.T, v metav1.Object, kind, apiVersion string) Object {
	t.Helper()
	return Object{APIVersion: apiVersion, Kind: kind, Namespace: v.GetNamespace(), Name: v.GetName(),
		UID: string(v.GetUID()), ResourceVersion: v.GetResourceVersion(), Body: jsonMap(t, v)}
}

// listAll lists every kind the checks read, in all namespaces.
func listAll(ctx context.Context, t *testing.T, c kubernetes.Interface) []Object {
	t.Helper()
	var out []Object
	add := func(kind, apiVersion string, n int, item func(i int) metav1.Object, err error) {
		if err != nil {
			t.Fatalf("list %s: %v", kind, err)
		}
		for i := 0; i < n; i++ {
			out = append(out, toObject(t, item(i), kind, apiVersion))
		}
	}
	all, opts := metav1.NamespaceAll, metav1.ListOptions{}
	nsl, err := c.CoreV1().Namespaces().List(ctx, opts)
	add("Namespace", "v1", len(nsl.Items), func(i int) metav1.Object { return &nsl.Items[i] }, err)
	pods, err := c.CoreV1().Pods(all).List(ctx, opts)
	add("Pod", "v1", len(pods.Items), func(i int) metav1.Object { return &pods.Items[i] }, err)
	sas, err := c.CoreV1().ServiceAccounts(all).List(ctx, opts)
	add("ServiceAccount", "v1", len(sas.Items), func(i int) metav1.Object { return &sas.Items[i] }, err)
	deps, err := c.AppsV1().Deployments(all).List(ctx, opts)
	add("Deployment", "apps/v1", len(deps.Items), func(i int) metav1.Object { return &deps.Items[i] }, err)
	dss, err := c.AppsV1().DaemonSets(all).List(ctx, opts)
	add("DaemonSet", "apps/v1", len(dss.Items), func(i int) metav1.Object { return &dss.Items[i] }, err)
	sts, err := c.AppsV1().StatefulSets(all).List(ctx, opts)
	add("StatefulSet", "apps/v1", len(sts.Items), func(i int) metav1.Object { return &sts.Items[i] }, err)
	jobs, err := c.BatchV1().Jobs(all).List(ctx, opts)
	add("Job", "batch/v1", len(jobs.Items), func(i int) metav1.Object { return &jobs.Items[i] }, err)
	cjs, err := c.BatchV1().CronJobs(all).List(ctx, opts)
	add("CronJob", "batch/v1", len(cjs.Items), func(i int) metav1.Object { return &cjs.Items[i] }, err)
	nps, err := c.NetworkingV1().NetworkPolicies(all).List(ctx, opts)
	add("NetworkPolicy", "networking.k8s.io/v1", len(nps.Items), func(i int) metav1.Object { return &nps.Items[i] }, err)
	const rbac = "rbac.authorization.k8s.io/v1"
	roles, err := c.RbacV1().Roles(all).List(ctx, opts)
	add("Role", rbac, len(roles.Items), func(i int) metav1.Object { return &roles.Items[i] }, err)
	rbs, err := c.RbacV1().RoleBindings(all).List(ctx, opts)
	add("RoleBinding", rbac, len(rbs.Items), func(i int) metav1.Object { return &rbs.Items[i] }, err)
	crs, err := c.RbacV1().ClusterRoles().List(ctx, opts)
	add("ClusterRole", rbac, len(crs.Items), func(i int) metav1.Object { return &crs.Items[i] }, err)
	crbs, err := c.RbacV1().ClusterRoleBindings().List(ctx, opts)
	add("ClusterRoleBinding", rbac, len(crbs.Items), func(i int) metav1.Object { return &crbs.Items[i] }, err)
	t.Logf("listed %d objects (%s)", len(out), strings.Join([]string{
		strconv.Itoa(len(crs.Items)) + " ClusterRoles", strconv.Itoa(len(crbs.Items)) + " ClusterRoleBindings"}, ", "))
	return out
}
