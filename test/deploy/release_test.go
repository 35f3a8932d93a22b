package deploy

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubesift/kubesift/internal/config"
)

// TestChartFollowsRelease: the chart's objects take their names from the
// release (fullnameOverride and nameOverride replace them) and go in the
// release namespace (the collectors in collectorNamespace when it is set):
// every object, every name an object refers to (ServiceAccounts, ConfigMaps,
// Secrets of the chart, RBAC roles and subjects, Leases, the consumer
// group), and the selectors, which include the release.
func TestChartFollowsRelease(t *testing.T) {
	cases := []struct {
		name, release, namespace string
		vals                     map[string]any
		prefix, collectorNS      string
	}{
		{"release sift in monitoring", "sift", "monitoring", nil, "sift-kubesift", "monitoring"},
		{"release named after the chart", "kubesift-prod", "security", nil, "kubesift-prod", "security"},
		{"fullnameOverride", "sift", "monitoring", map[string]any{"fullnameOverride": "audit-pipe"}, "audit-pipe", "monitoring"},
		{"nameOverride", "sift", "monitoring", map[string]any{"nameOverride": "ks"}, "sift-ks", "monitoring"},
		{"collectorNamespace", "sift", "monitoring", map[string]any{"collectorNamespace": "sift-nodes"}, "sift-kubesift", "sift-nodes"},
		{"objects source on", "sift", "monitoring", map[string]any{"collector": map[string]any{"objects": enabled()}}, "sift-kubesift", "monitoring"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vals := map[string]any{}
			if c.vals != nil {
				vals = deepCopyValues(c.vals)
			}
			out, err := helmTemplateAs(c.release, c.namespace, vals)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeObjects([]byte(out), c.name)
			if err != nil {
				t.Fatal(err)
			}
			checkFollowsRelease(t, objs, c.release, c.namespace, c.collectorNS, c.prefix)
		})
	}
}

func checkFollowsRelease(t *testing.T, objs []*unstructured.Unstructured, release, namespace, collectorNS, prefix string) {
	t.Helper()
	derived := func(what, name string) {
		if name != prefix && !strings.HasPrefix(name, prefix+"-") {
			t.Errorf("%s: %q is not derived from the release (%s-...)", what, name, prefix)
		}
	}
	for _, o := range objs {
		k := objKey(o)
		derived(k, o.GetName())
		if o.GetKind() == "Namespace" {
			t.Errorf("%s: rendered without createNamespace", k)
			continue
		}
		_, cluster := map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true}[o.GetKind()]
		// Objects of the collectors go in their namespace, those of no
		// component (the default deny) in each namespace with pods.
		comp := o.GetLabels()["app.kubernetes.io/component"]
		ofCollectors := strings.HasPrefix(comp, "collector")
		ns := o.GetNamespace()
		placed := (ns == namespace && !ofCollectors) || (ns == collectorNS && (ofCollectors || comp == ""))
		switch {
		case cluster && ns != "":
			t.Errorf("%s: cluster-scoped with a namespace", k)
		case !cluster && !placed:
			t.Errorf("%s: in namespace %q, want the release's %q or the collectors' %q", k, o.GetNamespace(), namespace, collectorNS)
		}
		if got := o.GetLabels()["app.kubernetes.io/instance"]; got != release {
			t.Errorf("%s: app.kubernetes.io/instance=%q, want %q", k, got, release)
		}
		switch o.GetKind() {
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.ClusterRoleBinding
			toTyped(t, o, &b)
			derived(k+" roleRef", b.RoleRef.Name)
			for _, s := range b.Subjects {
				derived(k+" subject", s.Name)
				if s.Namespace != collectorNS {
					t.Errorf("%s: subject %s in namespace %s, want %s", k, s.Name, s.Namespace, collectorNS)
				}
			}
		case "Role":
			var r rbacv1.Role
			toTyped(t, o, &r)
			for _, rule := range r.Rules {
				for _, n := range rule.ResourceNames {
					derived(k+" Lease", n)
				}
			}
		case "DaemonSet", "Deployment":
			var spec corev1.PodTemplateSpec
			var sel map[string]string
			if o.GetKind() == "DaemonSet" {
				var ds appsv1.DaemonSet
				toTyped(t, o, &ds)
				spec, sel = ds.Spec.Template, ds.Spec.Selector.MatchLabels
			} else {
				var d appsv1.Deployment
				toTyped(t, o, &d)
				spec, sel = d.Spec.Template, d.Spec.Selector.MatchLabels
			}
			if sel["app.kubernetes.io/instance"] != release {
				t.Errorf("%s: selector %v does not name the release, so it selects another release's pods", k, sel)
			}
			derived(k+" serviceAccountName", spec.Spec.ServiceAccountName)
			for _, v := range spec.Spec.Volumes {
				switch {
				case v.ConfigMap != nil:
					derived(k+" volume "+v.Name, v.ConfigMap.Name)
				case v.Secret != nil:
					derived(k+" volume "+v.Name, v.Secret.SecretName)
				}
			}
			for _, ctr := range spec.Spec.Containers {
				for _, e := range ctr.Env {
					// The chart's own Secrets; notifier.secretEnv names the user's.
					chartSecret := strings.HasPrefix(e.Name, "KUBESIFT_KAFKA") || strings.HasPrefix(e.Name, "KUBESIFT_ES")
					if chartSecret && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						derived(k+" env "+e.Name, e.ValueFrom.SecretKeyRef.Name)
					}
				}
			}
		}
	}
	// The names inside the configs: Leases and the consumer group.
	for _, pc := range podConfigs(t, objs) {
		cfg, err := config.Parse([]byte(pc.data), pc.name, pc.getenv)
		if err != nil {
			t.Fatal(err)
		}
		if ev := cfg.Collector.Events; ev.Enabled {
			derived(pc.name+" events Lease", ev.LeaderElection.LeaseName)
			derived(pc.name+" watermark Lease", ev.Watermark.LeaseName)
		}
		if ob := cfg.Collector.Objects; ob.Enabled {
			derived(pc.name+" objects Lease", ob.LeaderElection.LeaseName)
		}
		if strings.Contains(pc.workload, "-processor") {
			derived(pc.name+" processor.group_id", cfg.Processor.GroupID)
		}
	}
}

// TestChartPodOptions: the per-component pod options of
// ci/all-options-values.yaml reach every workload's pod template.
func TestChartPodOptions(t *testing.T) {
	objs := render(t, renderingNamed(t, "helm ci/all-options-values.yaml"))
	workloads := map[string]string{ // workload -> the tier label all-options gives it
		"DaemonSet sift/sift-collector":       "collection",
		"DaemonSet sift/sift-collector-audit": "collection",
		"Deployment sift/sift-processor":      "processing",
		"Deployment sift/sift-notifier":       "notification",
	}
	found := 0
	for _, o := range objs {
		tier, ok := workloads[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()]
		if !ok {
			continue
		}
		found++
		p, _ := podTemplateSpec(t, o)
		k := objKey(o)
		checks := []struct {
			what string
			ok   bool
		}{
			{"podAnnotations", p.Annotations["example.com/team"] == "security" && p.Annotations["prometheus.io/scrape"] == "true" && p.Annotations["checksum/config"] != ""},
			{"podLabels", p.Labels["example.com/tier"] == tier && p.Labels["app.kubernetes.io/name"] == "sift"},
			{"affinity", p.Spec.Affinity != nil && (p.Spec.Affinity.NodeAffinity != nil || p.Spec.Affinity.PodAntiAffinity != nil)},
			{"nodeSelector", len(p.Spec.NodeSelector) > 0},
			{"priorityClassName", strings.HasPrefix(p.Spec.PriorityClassName, "system-")},
			{"extraEnv", hasEnv(p.Spec.Containers[0], "KUBESIFT_METRICS_BEARER_TOKEN")},
			{"extraVolumes", hasVolume(p.Spec, "scratch")},
			{"extraVolumeMounts", hasMount(p.Spec.Containers[0], "/var/run/scratch")},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("%s: %s not applied to the pod template", k, c.what)
			}
		}
	}
	if found != len(workloads) {
		t.Errorf("found %d of the workloads %v", found, workloads)
	}
}

func hasEnv(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func hasVolume(spec corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func hasMount(c corev1.Container, path string) bool {
	_, ok := mountOf(c, path)
	return ok
}
