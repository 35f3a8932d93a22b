package deploy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubesift/kubesift/internal/testenv"
)

// The ground has no namespace controller: a deleted namespace stays
// Terminating for ever. So the namespaces the manifests name (kubesift,
// kubesift-collector) are created for real, idempotently, by applying the
// rendered Namespace objects (server-side apply, so their Pod Security
// labels are those of the rendering under test), and never deleted.
// Everything in them is applied with dryRun=All and leaves no trace, except
// the RBAC objects of TestCollectorRBAC, which are cluster-scoped or deleted
// again.

const fieldManager = "kubesift-test-deploy"

// cluster is an admin client of the ground's API server.
type cluster struct{ *testenv.KubeClient }

func newCluster(t testing.TB) *cluster { return &cluster{testenv.NewKubeClient(t, fieldManager)} }

// podTemplate returns the pod template of a workload object, if it has one.
func podTemplate(o *unstructured.Unstructured) (map[string]any, bool) {
	path := []string{"spec", "template"}
	if o.GetKind() == "CronJob" {
		path = []string{"spec", "jobTemplate", "spec", "template"}
	}
	tmpl, ok, _ := unstructured.NestedMap(o.Object, path...)
	return tmpl, ok && o.GetKind() != "PodTemplate"
}

// podTemplateSpec decodes the pod template of a workload object, if it
// has one.
func podTemplateSpec(t testing.TB, o *unstructured.Unstructured) (corev1.PodTemplateSpec, bool) {
	t.Helper()
	var p corev1.PodTemplateSpec
	tmpl, ok := podTemplate(o)
	if ok {
		toTyped(t, &unstructured.Unstructured{Object: tmpl}, &p)
	}
	return p, ok
}

// psaWarning tells Pod Security admission's warnings from others.
func psaWarning(w string) bool { return strings.Contains(w, "PodSecurity") }

// TestApplyDryRun applies every object of every rendering to the real
// kube-apiserver: the namespaces for real, the rest with dryRun=All
// (server-side apply: schema, defaulting, validation and admission run, and
// unknown fields come back as warnings). Every pod template is also sent as a
// Pod (dry-run create), so Pod Security admission enforces its namespace's
// level on it, not only warns. Any error fails; so does any warning other
// than Pod Security's in a namespace that does not enforce restricted, and
// any warning at all in a namespace that does. The prometheus-operator's
// CRDs are installed first, so its objects are validated by their schemas.
func TestApplyDryRun(t *testing.T) {
	testenv.Short(t)
	c := newCluster(t)
	ensureMonitoringCRDs(t, c)
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			cx := ctx(t, 2*time.Minute)

			// 1. Namespaces, for real.
			ensureNamespaces(t, c, objs)
			enforce := map[string]string{}
			nsList, err := c.CS.CoreV1().Namespaces().List(cx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range nsList.Items {
				enforce[ns.Name] = ns.Labels["pod-security.kubernetes.io/enforce"]
			}
			check := func(what, ns string, ws []string) {
				for _, w := range ws {
					switch {
					case enforce[ns] == "restricted":
						t.Errorf("%s: warning in namespace %s, which enforces restricted: %s", what, ns, w)
					case !psaWarning(w):
						t.Errorf("%s: warning: %s", what, w)
					default:
						t.Logf("%s: expected Pod Security warning (namespace %s enforces %q): %s", what, ns, enforce[ns], w)
					}
				}
			}

			// 2. Everything else, dry-run.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					continue
				}
				_, namespaced, err := c.Resource(o)
				if err != nil {
					t.Error(err)
					continue
				}
				if namespaced && o.GetNamespace() == "" {
					t.Errorf("%s: namespaced object without metadata.namespace (it would land in the current namespace)", objKey(o))
					continue
				}
				_, ws, err := c.Apply(cx, o, true)
				if err != nil {
					t.Errorf("%s: server-side apply (dry-run): %v", objKey(o), err)
				}
				check(objKey(o), o.GetNamespace(), ws)

				// 3. Pod templates as Pods.
				tmpl, ok := podTemplate(o)
				if !ok {
					continue
				}
				pod := &corev1.Pod{}
				b, _ := json.Marshal(tmpl)
				if err := json.Unmarshal(b, pod); err != nil {
					t.Errorf("%s: pod template: %v", objKey(o), err)
					continue
				}
				pod.Name = o.GetName() + "-dry-run"
				pod.Namespace = o.GetNamespace()
				c.TakeWarnings()
				_, err = c.CS.CoreV1().Pods(pod.Namespace).Create(cx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: fieldManager})
				if err != nil {
					t.Errorf("%s: its pod template as a Pod (dry-run create): %v", objKey(o), err)
				}
				check(objKey(o)+" pod template", pod.Namespace, c.TakeWarnings())
			}
		})
	}
}

// ensureNamespaces applies the rendering's Namespace objects for real, and
// creates (without labels) any other namespace its objects name; none is
// ever deleted (see the top of this file).
func ensureNamespaces(t testing.TB, c *cluster, objs []*unstructured.Unstructured) {
	t.Helper()
	cx := ctx(t, time.Minute)
	have := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			continue
		}
		if _, _, err := c.Apply(cx, o, false); err != nil {
			t.Fatalf("apply %s: %v", objKey(o), err)
		}
		have[o.GetName()] = true
	}
	for _, o := range objs {
		ns := o.GetNamespace()
		if ns == "" || have[ns] {
			continue
		}
		have[ns] = true
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("Namespace")
		u.SetName(ns)
		if _, _, err := c.Apply(cx, u, false); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
}

// TestNamespacesPodSecurity: the namespaces carry the Pod Security levels
// docs/deployment.md gives: kubesift (processor, notifier) enforces restricted;
// the collectors' namespace enforces no more than it must (privileged, for
// the audit tail's hostPath volumes) but audits and warns at restricted.
// The chart renders exactly the Namespaces it should: the collectors' own
// one when asked (createNamespace), kept on uninstall, and never the release
// namespace.
func TestNamespacesPodSecurity(t *testing.T) {
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			collectorNS, centralNS, _ := r.layout()
			want := map[string]map[string]string{
				collectorNS: {"warn": "restricted", "audit": "restricted"},
			}
			if collectorNS != centralNS {
				want[centralNS] = map[string]string{"enforce": "restricted", "warn": "restricted", "audit": "restricted"}
			}
			var found []string
			for _, o := range render(t, r) {
				if o.GetKind() != "Namespace" {
					continue
				}
				found = append(found, o.GetName())
				for mode, level := range want[o.GetName()] {
					if got := o.GetLabels()["pod-security.kubernetes.io/"+mode]; got != level {
						t.Errorf("namespace %s: pod-security.kubernetes.io/%s=%q, want %q", o.GetName(), mode, got, level)
					}
				}
				if r.isHelm() && o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
					t.Errorf("namespace %s: not annotated helm.sh/resource-policy: keep, so helm uninstall deletes it and the Secrets in it", o.GetName())
				}
			}
			slices.Sort(found)
			wantNS := slices.Sorted(slices.Values(r.nsObjects))
			if !slices.Equal(found, wantNS) {
				t.Errorf("Namespace objects %v, want %v", found, wantNS)
			}
		})
	}
}

// toTyped converts an unstructured object into a typed one.
func toTyped(t testing.TB, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatalf("%s: %v", objKey(o), err)
	}
}

// keysOf returns the sorted keys of a set.
func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRestrictedNamespaceEnforces is the control of TestApplyDryRun's Pod
// Security checks: in the kubesift namespace as the central overlay creates
// it, a privileged pod template is refused as a Pod and draws a Pod Security
// warning as a Deployment, and the warning handler sees it. Without this, a
// namespace that lost its labels would let TestApplyDryRun pass vacuously.
func TestRestrictedNamespaceEnforces(t *testing.T) {
	testenv.Short(t)
	c := newCluster(t)
	ensureNamespaces(t, c, render(t, renderingNamed(t, "kustomize overlays/central")))
	cx := ctx(t, time.Minute)
	spec := map[string]any{"containers": []any{map[string]any{"name": "c", "image": "busybox:1.37",
		"securityContext": map[string]any{"privileged": true}}}}
	dep := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "psa-control", "namespace": centralNS},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "psa-control"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "psa-control"}}, "spec": spec},
		},
	}}
	_, ws, err := c.Apply(cx, dep, true)
	if err != nil {
		t.Fatalf("dry-run Deployment: %v", err)
	}
	if !slices.ContainsFunc(ws, psaWarning) {
		t.Errorf("a privileged Deployment in %s drew no Pod Security warning (warnings: %q)", centralNS, ws)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "psa-control", Namespace: centralNS}}
	b, _ := json.Marshal(spec)
	if err := json.Unmarshal(b, &pod.Spec); err != nil {
		t.Fatal(err)
	}
	_, err = c.CS.CoreV1().Pods(centralNS).Create(cx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a privileged Pod in %s was not refused by Pod Security admission: %v", centralNS, err)
	}
}
