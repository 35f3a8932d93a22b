package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubesift/kubesift/internal/config"
)

// agreePairs are the renderings that must produce the same objects: the
// chart installed as release kubesift in namespace kubesift with the
// collectors in kubesift-collector and overlays/central (with the
// monitoring component: with the monitoring values), the chart's member
// values and overlays/member. The Kustomize overlays' Namespace kubesift
// is the chart's release namespace, which the chart never renders (Helm
// stores the release in it first), so it is left out of the comparison.
var agreePairs = [][2]string{
	{"kustomize overlays/central", "helm in the Kustomize layout"},
	{"kustomize overlays/central + components/monitoring", "helm in the Kustomize layout + monitoring"},
	{"kustomize overlays/member", "helm ci/member-values.yaml"},
}

// releaseNamespace is the key of the Namespace object the chart leaves to
// Helm in the agreeing renderings.
const releaseNamespace = "/Namespace kubesift"

func renderingNamed(t testing.TB, name string) rendering {
	t.Helper()
	for _, r := range renderings() {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no rendering %q", name)
	return rendering{}
}

// facets are the parts of an object the chart and Kustomize must agree on,
// each as a canonical string: the object's key always; RBAC rules, role
// refs and subjects; a namespace's Pod Security labels; a workload's
// service account, volumes (type and host path), container images, args,
// resources, ports and security contexts, tolerations and node affinity.
func facets(t testing.TB, o *unstructured.Unstructured) map[string]string {
	t.Helper()
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	f := map[string]string{"exists": "yes"}
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	switch o.GetKind() {
	case "ServiceMonitor", "PodMonitor":
		// The selectors differ (the chart's name the release), what is
		// scraped and where must not.
		f["namespaceSelector"] = js(spec["namespaceSelector"])
		f["endpoints"] = js(spec["endpoints"]) + js(spec["podMetricsEndpoints"])
	case "PrometheusRule":
		f["spec"] = js(spec)
	case "Service":
		if strings.HasSuffix(o.GetName(), "-metrics") {
			f["ports"] = js(spec["ports"])
			f["clusterIP"] = js(spec["clusterIP"])
		}
	case "ConfigMap":
		if v, ok := o.GetLabels()["grafana_dashboard"]; ok {
			f["grafana_dashboard label"] = v
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			for k, d := range data {
				var dash any
				if err := json.Unmarshal([]byte(d), &dash); err != nil {
					t.Fatalf("%s: %s: %v", objKey(o), k, err)
				}
				f["data "+k] = js(dash)
			}
		}
	case "ClusterRole", "Role":
		var r rbacv1.ClusterRole
		toTyped(t, o, &r)
		f["rules"] = canonicalRules(r.Rules)
	case "ClusterRoleBinding", "RoleBinding":
		var b rbacv1.ClusterRoleBinding
		toTyped(t, o, &b)
		f["roleRef"] = js(b.RoleRef)
		subs := make([]string, 0, len(b.Subjects))
		for _, s := range b.Subjects {
			subs = append(subs, s.Kind+" "+s.Namespace+"/"+s.Name)
		}
		slices.Sort(subs)
		f["subjects"] = strings.Join(subs, ", ")
	case "Namespace":
		var psa []string
		for k, v := range o.GetLabels() {
			if strings.HasPrefix(k, "pod-security.kubernetes.io/") {
				psa = append(psa, k+"="+v)
			}
		}
		slices.Sort(psa)
		f["pod-security"] = strings.Join(psa, ", ")
	case "DaemonSet", "Deployment":
		var spec corev1.PodSpec
		if o.GetKind() == "DaemonSet" {
			var ds appsv1.DaemonSet
			toTyped(t, o, &ds)
			spec = ds.Spec.Template.Spec
		} else {
			var d appsv1.Deployment
			toTyped(t, o, &d)
			spec = d.Spec.Template.Spec
		}
		f["serviceAccountName"] = spec.ServiceAccountName
		f["automountServiceAccountToken"] = js(spec.AutomountServiceAccountToken)
		f["hostNetwork/PID/IPC"] = fmt.Sprint(spec.HostNetwork, spec.HostPID, spec.HostIPC)
		f["podSecurityContext"] = js(spec.SecurityContext)
		var vols []string
		for _, v := range spec.Volumes {
			switch {
			case v.HostPath != nil:
				vols = append(vols, v.Name+"=hostPath:"+v.HostPath.Path)
			case v.ConfigMap != nil:
				vols = append(vols, v.Name+"=configMap:"+v.ConfigMap.Name)
			case v.Secret != nil:
				vols = append(vols, v.Name+"=secret:"+v.Secret.SecretName)
			case v.EmptyDir != nil:
				vols = append(vols, v.Name+"=emptyDir")
			case v.Projected != nil:
				vols = append(vols, v.Name+"=projected")
			default:
				vols = append(vols, v.Name+"=other")
			}
		}
		slices.Sort(vols)
		f["volumes"] = strings.Join(vols, ", ")
		for _, c := range spec.Containers {
			f["container "+c.Name+" image"] = c.Image
			f["container "+c.Name+" args"] = js(append(append([]string{}, c.Command...), c.Args...))
			f["container "+c.Name+" resources"] = js(c.Resources)
			f["container "+c.Name+" securityContext"] = js(c.SecurityContext)
			f["container "+c.Name+" ports"] = js(c.Ports)
			var mounts []string
			for _, m := range c.VolumeMounts {
				mounts = append(mounts, fmt.Sprintf("%s:%s:ro=%v", m.Name, m.MountPath, m.ReadOnly))
			}
			slices.Sort(mounts)
			f["container "+c.Name+" volumeMounts"] = strings.Join(mounts, ", ")
		}
		f["tolerations"] = js(spec.Tolerations)
		f["affinity"] = js(spec.Affinity)
		f["nodeSelector"] = js(spec.NodeSelector)
	}
	return f
}

// canonicalRules prints RBAC rules as sorted "group/resource[name] verb"
// grants, so rule order and grouping do not matter, only what is granted.
func canonicalRules(rules []rbacv1.PolicyRule) string {
	var grants []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						grants = append(grants, fmt.Sprintf("%s/%s[%s] %s", g, res, n, v))
					}
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				grants = append(grants, u+" "+v)
			}
		}
	}
	slices.Sort(grants)
	return strings.Join(slices.Compact(grants), "; ")
}

// TestChartAgreesWithKustomize: the chart (default values; member values)
// renders the same objects as overlays/central (overlays/member): the same
// kinds, names and namespaces, the same RBAC rules and bindings, and the same
// security-relevant pod settings.
func TestChartAgreesWithKustomize(t *testing.T) {
	for _, p := range agreePairs {
		t.Run(p[0]+" vs "+p[1], func(t *testing.T) {
			a := byKey(render(t, renderingNamed(t, p[0])))
			b := byKey(render(t, renderingNamed(t, p[1])))
			delete(a, releaseNamespace)
			for _, k := range keysOf(union(a, b)) {
				oa, ob := a[k], b[k]
				switch {
				case ob == nil:
					t.Errorf("%s: only in %s", k, p[0])
					continue
				case oa == nil:
					t.Errorf("%s: only in %s", k, p[1])
					continue
				}
				fa, fb := facets(t, oa), facets(t, ob)
				for _, name := range keysOf(union(fa, fb)) {
					if fa[name] != fb[name] {
						t.Errorf("%s %s differs:\n  %s: %s\n  %s: %s", k, name, p[0], fa[name], p[1], fb[name])
					}
				}
			}
		})
	}
}

func byKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		m[objKey(o)] = o
	}
	return m
}

func union[V any](a, b map[string]V) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

// TestRenderedConfigs: every kubesift config a workload mounts passes the
// strict config loader (internal/config.Parse: unknown keys, bad values and
// missing required fields are errors), with the environment the container
// gets (variables from Secrets stand in as placeholders), and every
// ConfigMap, Secret and ServiceAccount a workload names is rendered or
// documented as user-created.
func TestRenderedConfigs(t *testing.T) {
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			pcs := podConfigs(t, objs)
			if len(pcs) == 0 {
				t.Fatal("no workload mounts a kubesift config")
			}
			for _, pc := range pcs {
				if _, err := config.Parse([]byte(pc.data), pc.name, pc.getenv); err != nil {
					t.Errorf("%v", err)
				}
			}
			have := map[string]bool{}
			for _, o := range objs {
				have[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = true
			}
			for _, o := range objs {
				if o.GetKind() != "DaemonSet" && o.GetKind() != "Deployment" {
					continue
				}
				tmpl, _ := podTemplate(o)
				var spec corev1.PodSpec
				sp, _ := tmpl["spec"].(map[string]any)
				toTyped(t, &unstructured.Unstructured{Object: sp}, &spec)
				ns := o.GetNamespace()
				if sa := spec.ServiceAccountName; sa == "" || !have["ServiceAccount "+ns+"/"+sa] {
					t.Errorf("%s: serviceAccountName %q is not rendered", objKey(o), sa)
				}
				for _, v := range spec.Volumes {
					if v.ConfigMap != nil && !have["ConfigMap "+ns+"/"+v.ConfigMap.Name] && !ptrTrue(v.ConfigMap.Optional) {
						t.Errorf("%s: volume %s: ConfigMap %s is not rendered", objKey(o), v.Name, v.ConfigMap.Name)
					}
				}
			}
		})
	}
}

func ptrTrue(b *bool) bool { return b != nil && *b }
