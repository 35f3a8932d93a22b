package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// The Kustomize layout's central namespace (TestRestrictedNamespaceEnforces).
const centralNS = "kubesift"

func saUser(ns, name string) (string, []string) {
	return "system:serviceaccount:" + ns + ":" + name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// access is one SubjectAccessReview question.
type access struct {
	verb, group, resource, sub, ns, name string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.sub != "" {
		r += "/" + a.sub
	}
	s := a.verb + " " + r
	if a.name != "" {
		s += " " + a.name
	}
	if a.ns != "" {
		s += " in " + a.ns
	} else {
		s += " (cluster-wide)"
	}
	return s
}

// allowed asks the real API server whether user may do a.
func (c *cluster) allowed(t testing.TB, userName string, groups []string, a access) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: userName, Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
			Subresource: a.sub, Namespace: a.ns, Name: a.name},
	}}
	res, err := c.CS.AuthorizationV1().SubjectAccessReviews().Create(ctx(t, 30*time.Second), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview %s: %v", a, err)
	}
	return res.Status.Allowed
}

// leaseNames returns the Lease names the collector's rendered config uses
// (leader election and watermark), parsed with the real config loader.
func leaseNames(t testing.TB, r rendering, objs []*unstructured.Unstructured) []string {
	t.Helper()
	collectorNS, _, prefix := r.layout()
	for _, pc := range podConfigs(t, objs) {
		if pc.workload != "DaemonSet "+collectorNS+"/"+prefix+"-collector" {
			continue
		}
		cfg, err := config.Parse([]byte(pc.data), pc.name, pc.getenv)
		if err != nil {
			t.Fatalf("%s: %v", pc.name, err)
		}
		ev := cfg.Collector.Events
		if !ev.Enabled {
			return nil
		}
		for _, ns := range []string{ev.LeaderElection.Namespace, ev.Watermark.Namespace} {
			if ns != "" && ns != collectorNS {
				t.Fatalf("%s: Events Lease in namespace %s, not the collector's own", pc.name, ns)
			}
		}
		return []string{ev.LeaderElection.LeaseName, ev.Watermark.LeaseName}
	}
	t.Fatalf("no config of DaemonSet %s/%s-collector found", collectorNS, prefix)
	return nil
}

// TestCollectorRBAC applies each rendering's RBAC objects for real (names
// suffixed per run, so parallel runs and the other renderings never see each
// other's grants; deleted at the end) and asks the real API server, with
// SubjectAccessReviews, what the service accounts may do.
func TestCollectorRBAC(t *testing.T) {
	testenv.Short(t)
	c := newCluster(t)
	suffix := fmt.Sprintf("-t%d", time.Now().UnixNano())
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			ensureNamespaces(t, c, objs)
			leases := leaseNames(t, r, objs)
			applyRBAC(t, c, objs, suffix)
			collectorNS, centralNS, prefix := r.layout()
			collectorSA, auditSA := prefix+"-collector", prefix+"-collector-audit"

			colUser, colGroups := saUser(collectorNS, collectorSA)
			allow := []access{
				{verb: "list", resource: "events"},
				{verb: "watch", resource: "events"},
				{verb: "get", resource: "events", ns: "default", name: "x"},
				{verb: "list", group: "events.k8s.io", resource: "events"},
				{verb: "watch", group: "events.k8s.io", resource: "events", ns: "team-a"},
				{verb: "get", resource: "pods", ns: "default", name: "p"},
				{verb: "list", resource: "pods"},
				{verb: "watch", resource: "pods"},
				{verb: "get", resource: "namespaces", name: "kube-system"},
				{verb: "create", group: "coordination.k8s.io", resource: "leases", ns: collectorNS},
			}
			for _, l := range leases {
				allow = append(allow,
					access{verb: "get", group: "coordination.k8s.io", resource: "leases", ns: collectorNS, name: l},
					access{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: collectorNS, name: l})
			}
			deny := []access{
				{verb: "get", resource: "secrets", ns: collectorNS, name: "kubesift-kafka"},
				{verb: "get", resource: "secrets", ns: "kube-system", name: "x"},
				{verb: "list", resource: "secrets"},
				{verb: "list", resource: "secrets", ns: collectorNS},
				{verb: "watch", resource: "secrets"},
				{verb: "get", resource: "configmaps", ns: "kube-system", name: "x"},
				{verb: "create", resource: "pods", ns: "default"},
				{verb: "create", resource: "pods", sub: "exec", ns: "default", name: "p"},
				{verb: "delete", resource: "pods", ns: "default", name: "p"},
				{verb: "delete", resource: "events", ns: "default", name: "x"},
				{verb: "deletecollection", group: "events.k8s.io", resource: "events", ns: "default"},
				{verb: "create", resource: "events", ns: "default"},
				{verb: "patch", resource: "events", ns: "default", name: "x"},
				{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: collectorNS, name: "someone-else"},
				{verb: "delete", group: "coordination.k8s.io", resource: "leases", ns: collectorNS, name: leaseOr(leases, "kubesift-events-leader")},
				{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: "kube-system", name: "kube-scheduler"},
				{verb: "create", group: "coordination.k8s.io", resource: "leases", ns: "kube-system"},
				{verb: "list", group: "coordination.k8s.io", resource: "leases", ns: collectorNS},
				{verb: "get", resource: "namespaces", name: "default"},
				{verb: "list", resource: "namespaces"},
				{verb: "update", resource: "namespaces", name: "kube-system"},
				{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
				{verb: "create", group: "rbac.authorization.k8s.io", resource: "rolebindings", ns: collectorNS},
				{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
				{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
				{verb: "impersonate", resource: "users"},
				{verb: "impersonate", resource: "serviceaccounts", ns: "kube-system"},
				{verb: "create", resource: "serviceaccounts", sub: "token", ns: collectorNS, name: collectorSA},
				{verb: "get", resource: "nodes", sub: "proxy", name: "n1"},
				{verb: "update", group: "apps", resource: "daemonsets", ns: collectorNS, name: collectorSA},
				{verb: "create", group: "certificates.k8s.io", resource: "certificatesigningrequests"},
			}
			if hasObjectsRBAC(objs) {
				// The objects source lists and watches (never gets) its kinds,
				// namespaces included, and has a Lease of its own.
				deny = slices.DeleteFunc(deny, func(a access) bool { return a.verb == "list" && a.resource == "namespaces" })
				allow = append(allow,
					access{verb: "list", resource: "namespaces"},
					access{verb: "watch", resource: "nodes"},
					access{verb: "list", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
					access{verb: "watch", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies"},
					access{verb: "update", group: "coordination.k8s.io", resource: "leases", ns: collectorNS, name: prefix + "-objects-leader"})
				deny = append(deny,
					access{verb: "get", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "admin"},
					access{verb: "list", resource: "configmaps"})
			}
			// Grants take effect once the RBAC authorizer's informers saw
			// them: wait for the first allowed answer.
			testenv.WaitFor(t, "RBAC of "+r.name+" in effect", 30*time.Second, func() bool {
				return c.allowed(t, colUser, colGroups, allow[0])
			})
			for _, a := range allow {
				if !c.allowed(t, colUser, colGroups, a) {
					t.Errorf("%s may not %s; it needs to", colUser, a)
				}
			}
			for _, a := range deny {
				if c.allowed(t, colUser, colGroups, a) {
					t.Errorf("%s may %s; it must not", colUser, a)
				}
			}

			// The audit tail's account reads the kube-system namespace (the
			// cluster UID) and nothing else.
			audUser, audGroups := saUser(collectorNS, auditSA)
			if !c.allowed(t, audUser, audGroups, access{verb: "get", resource: "namespaces", name: "kube-system"}) {
				t.Errorf("%s may not get namespace kube-system; it needs to", audUser)
			}
			// The processor and notifier (central mode) have no rights at
			// all: everything the collector may do, and more, is denied.
			denyAll := append(append([]access{}, allow...), deny...)
			denyAll = append(denyAll, access{verb: "get", resource: "configmaps", ns: centralNS, name: prefix + "-rules"},
				access{verb: "get", resource: "secrets", ns: centralNS, name: prefix + "-elasticsearch"})
			who := [][2]string{{collectorNS, auditSA}}
			if r.mode == "central" {
				who = append(who, [2]string{centralNS, prefix + "-processor"}, [2]string{centralNS, prefix + "-notifier"})
			}
			for _, w := range who {
				u, g := saUser(w[0], w[1])
				for _, a := range denyAll {
					if w[1] == auditSA && a.verb == "get" && a.resource == "namespaces" && a.name == "kube-system" {
						continue
					}
					if c.allowed(t, u, g, a) {
						t.Errorf("%s may %s; it must not", u, a)
					}
				}
			}
		})
	}
}

func leaseOr(leases []string, def string) string {
	if len(leases) > 0 {
		return leases[0]
	}
	return def
}

// applyRBAC creates the rendering's RBAC objects for real, every name (and
// roleRef) suffixed, and deletes them when the test ends.
func applyRBAC(t testing.TB, c *cluster, objs []*unstructured.Unstructured, suffix string) {
	t.Helper()
	cx := ctx(t, time.Minute)
	for _, o := range objs {
		if o.GroupVersionKind().Group != rbacv1.GroupName {
			continue
		}
		o = o.DeepCopy()
		o.SetName(o.GetName() + suffix)
		if k := o.GetKind(); k == "RoleBinding" || k == "ClusterRoleBinding" {
			ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
			if err := unstructured.SetNestedField(o.Object, ref+suffix, "roleRef", "name"); err != nil {
				t.Fatal(err)
			}
		}
		ri, _, err := c.Resource(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Apply(cx, o, false); err != nil {
			t.Fatalf("apply %s: %v", objKey(o), err)
		}
		name := o.GetName()
		t.Cleanup(func() {
			if err := ri.Delete(ctx(t, 30*time.Second), name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete %s: %v", name, err)
			}
		})
	}
}

// hasObjectsRBAC reports whether a rendering includes the objects source's
// RBAC (components/objects, or the chart's collector.objects.enabled).
func hasObjectsRBAC(objs []*unstructured.Unstructured) bool {
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), "-collector-objects") {
			return true
		}
	}
	return false
}

// TestRBACStatic checks the RBAC objects of every rendering without a
// server: no wildcard, nothing on Secrets, no escalate/bind/impersonate, and
// bindings only to the collectors' own service accounts.
func TestRBACStatic(t *testing.T) {
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			collectorNS, _, prefix := r.layout()
			collectorSA, auditSA := prefix+"-collector", prefix+"-collector-audit"
			for _, o := range render(t, r) {
				switch o.GetKind() {
				case "ClusterRole", "Role":
					var role rbacv1.ClusterRole // same rules shape
					toTyped(t, o, &role)
					if role.AggregationRule != nil {
						t.Errorf("%s: aggregationRule", objKey(o))
					}
					for i, rule := range role.Rules {
						all := strings.Join(append(append(append([]string{}, rule.APIGroups...), rule.Resources...), rule.Verbs...), ",")
						if strings.Contains(all, "*") {
							t.Errorf("%s rules[%d]: wildcard: %+v", objKey(o), i, rule)
						}
						for _, res := range rule.Resources {
							if res == "secrets" || strings.HasPrefix(res, "secrets/") || res == "serviceaccounts/token" {
								t.Errorf("%s rules[%d]: grants %v on %s", objKey(o), i, rule.Verbs, res)
							}
						}
						for _, v := range rule.Verbs {
							if v == "escalate" || v == "bind" || v == "impersonate" || v == "delete" || v == "deletecollection" || v == "patch" {
								t.Errorf("%s rules[%d]: verb %s", objKey(o), i, v)
							}
						}
						if len(rule.NonResourceURLs) > 0 {
							t.Errorf("%s rules[%d]: nonResourceURLs %v", objKey(o), i, rule.NonResourceURLs)
						}
					}
				case "ClusterRoleBinding", "RoleBinding":
					var b rbacv1.ClusterRoleBinding
					toTyped(t, o, &b)
					for _, s := range b.Subjects {
						if s.Kind != rbacv1.ServiceAccountKind || s.Namespace != collectorNS || (s.Name != collectorSA && s.Name != auditSA) {
							t.Errorf("%s: binds %s %s/%s; only the collectors' service accounts have rights", objKey(o), s.Kind, s.Namespace, s.Name)
						}
					}
					if b.RoleRef.Name == "cluster-admin" || b.RoleRef.Name == "admin" || b.RoleRef.Name == "edit" || b.RoleRef.Name == "view" {
						t.Errorf("%s: binds the built-in role %s", objKey(o), b.RoleRef.Name)
					}
				}
			}
		})
	}
}

// podConfig is one kubesift config file a workload mounts, with the
// environment its container gets (Secret-backed variables as placeholders).
type podConfig struct {
	workload string // "DaemonSet ns/name"
	name     string // where the config came from, for errors
	data     string
	getenv   func(string) string
	spec     corev1.PodSpec
	labels   map[string]string // the pod template's
}

// podConfigs finds, for every DaemonSet and Deployment, the ConfigMaps it
// mounts that hold a kubesift config (key config.yaml).
func podConfigs(t testing.TB, objs []*unstructured.Unstructured) []podConfig {
	t.Helper()
	cms := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			var cm corev1.ConfigMap
			toTyped(t, o, &cm)
			cms[cm.Namespace+"/"+cm.Name] = &cm
		}
	}
	var out []podConfig
	for _, o := range objs {
		var (
			spec   corev1.PodSpec
			labels map[string]string
		)
		switch o.GetKind() {
		case "DaemonSet":
			var ds appsv1.DaemonSet
			toTyped(t, o, &ds)
			spec, labels = ds.Spec.Template.Spec, ds.Spec.Template.Labels
		case "Deployment":
			var d appsv1.Deployment
			toTyped(t, o, &d)
			spec, labels = d.Spec.Template.Spec, d.Spec.Template.Labels
		default:
			continue
		}
		workload := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		for _, v := range spec.Volumes {
			if v.ConfigMap == nil {
				continue
			}
			cm := cms[o.GetNamespace()+"/"+v.ConfigMap.Name]
			if cm == nil {
				continue // reported by TestWorkloadReferences
			}
			data, ok := cm.Data["config.yaml"]
			if !ok {
				continue
			}
			env := map[string]string{}
			for _, ctr := range spec.Containers {
				for _, e := range ctr.Env {
					switch {
					case e.ValueFrom != nil && strings.Contains(e.Name, "URL"):
						// Receiver URLs come from Secrets and must parse as URLs.
						env[e.Name] = "https://placeholder.invalid/" + e.Name
					case e.ValueFrom != nil:
						env[e.Name] = "placeholder-from-" + e.Name
					default:
						env[e.Name] = e.Value
					}
				}
			}
			out = append(out, podConfig{workload: workload, name: workload + " ConfigMap " + cm.Name,
				data: data, getenv: func(k string) string { return env[k] }, spec: spec, labels: labels})
		}
	}
	return out
}
