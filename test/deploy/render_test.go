package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// A rendering is the object list one way of installing kubesift produces:
// a Kustomize overlay (what `kubectl apply -k` / `kustomize build` sends) or
// the chart with one values file (what `helm template` prints).
type rendering struct {
	name string
	// mode is central or member: which Kustomize overlay and which chart
	// mode must agree.
	mode string
	// kustomize: directory of the kustomization; chart: values file
	// relative to the chart ("" = default values).
	kustomize, values string
	// overlay + component: a kustomization written to a temp dir that
	// combines an overlay with a component (as a user's own overlay would).
	overlay, component string
	// chart only: the release name and namespace (default kubesift,
	// kubesift: `helm template kubesift -n kubesift`), and values set over
	// the file's (as --set does).
	release, namespace string
	set                map[string]any
	// Where the objects go and what they are called (default
	// kubesift-collector, kubesift, kubesift: the Kustomize layout): the
	// collectors' namespace, the processor's and notifier's, and the
	// prefix of every object name.
	collectorNS, centralNS, prefix string
	// nsObjects are the Namespace objects the rendering has.
	nsObjects []string
}

// layout returns where r puts the collectors and the central components,
// and the prefix of its object names.
func (r rendering) layout() (collectorNS, centralNS, prefix string) {
	collectorNS, centralNS, prefix = r.collectorNS, r.centralNS, r.prefix
	if collectorNS == "" {
		collectorNS = "kubesift-collector"
	}
	if centralNS == "" {
		centralNS = "kubesift"
	}
	if prefix == "" {
		prefix = "kubesift"
	}
	return collectorNS, centralNS, prefix
}

// kustomizeLayout are the values with which the chart installed as release
// kubesift in namespace kubesift renders the objects of the Kustomize
// overlays.
func kustomizeLayout(more map[string]any) map[string]any {
	v := map[string]any{"createNamespace": true, "collectorNamespace": "kubesift-collector"}
	for k, x := range more {
		v[k] = x
	}
	return v
}

// enabled is the value of an optional part of the chart that is on.
func enabled() map[string]any { return map[string]any{"enabled": true} }

func (r rendering) String() string { return r.name }

const chartDir = "deployments/helm/kubesift"

// objectsComponent is the RBAC of the optional objects source.
const objectsComponent = "deployments/kubernetes/components/objects"

// renderings are every way of installing kubesift the repository documents.
func renderings() []rendering {
	both := []string{"kubesift-collector", "kubesift"}
	collectorOnly := []string{"kubesift-collector"}
	return []rendering{
		{name: "kustomize base", mode: "central", kustomize: "deployments/kubernetes/base", nsObjects: both},
		{name: "kustomize overlays/central", mode: "central", kustomize: "deployments/kubernetes/overlays/central", nsObjects: both},
		{name: "kustomize overlays/member", mode: "member", kustomize: "deployments/kubernetes/overlays/member", nsObjects: collectorOnly},
		{name: "kustomize overlays/central + components/webhook-hostport", mode: "central", nsObjects: both,
			overlay: "deployments/kubernetes/overlays/central", component: "deployments/kubernetes/components/webhook-hostport"},
		{name: "kustomize overlays/central + components/objects", mode: "central", nsObjects: both,
			overlay: "deployments/kubernetes/overlays/central", component: objectsComponent},
		{name: "kustomize overlays/central + components/monitoring", mode: "central", nsObjects: both,
			overlay: "deployments/kubernetes/overlays/central", component: "deployments/kubernetes/components/monitoring"},
		// Default values put everything in the release namespace (one
		// of its own here: it must admit the audit tail's hostPath volumes).
		{name: "helm default values", mode: "central", namespace: "kubesift-helm",
			collectorNS: "kubesift-helm", centralNS: "kubesift-helm"},
		{name: "helm -n monitoring, release sift", mode: "central", release: "sift", namespace: "monitoring",
			collectorNS: "monitoring", centralNS: "monitoring", prefix: "sift-kubesift"},
		{name: "helm in the Kustomize layout", mode: "central", set: kustomizeLayout(nil), nsObjects: collectorOnly},
		{name: "helm in the Kustomize layout + monitoring", mode: "central", nsObjects: collectorOnly,
			set: kustomizeLayout(map[string]any{"serviceMonitor": enabled(), "prometheusRule": enabled(), "grafanaDashboard": enabled()})},
		{name: "helm ci/sample-values.yaml", mode: "central", values: "ci/sample-values.yaml", nsObjects: collectorOnly},
		{name: "helm ci/member-values.yaml", mode: "member", values: "ci/member-values.yaml", nsObjects: collectorOnly},
		{name: "helm ci/all-options-values.yaml", mode: "central", values: "ci/all-options-values.yaml",
			release: "sift", namespace: "sift", collectorNS: "sift", centralNS: "sift", prefix: "sift"},
	}
}

func (r rendering) isHelm() bool { return r.kustomize == "" && r.overlay == "" }

// rendered caches each rendering's objects for the test binary's life: the
// apply, RBAC and agreement tests all use them.
var (
	renderMu  sync.Mutex
	renderOut = map[string][]*unstructured.Unstructured{}
)

// render returns the objects of r, failing the test on any error.
func render(t testing.TB, r rendering) []*unstructured.Unstructured {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if objs, ok := renderOut[r.name]; ok {
		return objs
	}
	var (
		out []byte
		err error
	)
	switch {
	case r.isHelm():
		vals := map[string]any{}
		if r.values != "" {
			vals, err = chartutil.ReadValuesFile(repo(chartDir, r.values))
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
		}
		if r.set != nil {
			vals = chartutil.CoalesceTables(deepCopyValues(r.set), vals)
		}
		release, namespace := r.release, r.namespace
		if release == "" {
			release = "kubesift"
		}
		if namespace == "" {
			namespace = "kubesift"
		}
		var s string
		s, err = helmTemplateAs(release, namespace, vals)
		out = []byte(s)
	case r.overlay != "":
		// Kustomize takes bases and components by relative path only.
		dir := t.TempDir()
		ov, err1 := filepath.Rel(dir, repo(r.overlay))
		co, err2 := filepath.Rel(dir, repo(r.component))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%q]\ncomponents: [%q]\n", ov, co)
		if err = os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err == nil {
			out, err = kustomizeBuild(dir)
		}
	default:
		out, err = kustomizeBuild(repo(r.kustomize))
	}
	if err != nil {
		t.Fatalf("render %s: %v", r, err)
	}
	objs, err := decodeObjects(out, r.name)
	if err != nil {
		t.Fatalf("render %s: %v", r, err)
	}
	if len(objs) == 0 {
		t.Fatalf("render %s: no objects", r)
	}
	renderOut[r.name] = objs
	return objs
}

// kustomizeBuild is `kustomize build dir` with the default options (no
// plugins, load restrictions on), on the real file system.
func kustomizeBuild(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// helmTemplate is `helm template kubesift deployments/helm/kubesift -n
// kubesift -f values`.
func helmTemplate(vals map[string]any) (string, error) {
	return helmTemplateAs("kubesift", "kubesift", vals)
}

// helmTemplateAs is `helm template RELEASE deployments/helm/kubesift -n
// NAMESPACE -f values`: the chart loader, the values merged over the
// chart's and checked against values.schema.json, client-only rendering.
// Hooks are included, as helm template prints them.
func helmTemplateAs(release, namespace string, vals map[string]any) (string, error) {
	chrt, err := loader.Load(repo(chartDir))
	if err != nil {
		return "", err
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = release, namespace
	inst.IncludeCRDs = true
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		b.WriteString("\n---\n" + h.Manifest + "\n")
	}
	return b.String(), nil
}

// objKey names an object: group/kind namespace/name.
func objKey(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	ns := o.GetNamespace()
	if ns != "" {
		ns += "/"
	}
	return gvk.Group + "/" + gvk.Kind + " " + ns + o.GetName()
}

// TestRender renders every overlay and values file: no error, every object
// has apiVersion, kind and name, no key twice.
func TestRender(t *testing.T) {
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			seen := map[string]bool{}
			for _, o := range objs {
				if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
					t.Errorf("object without apiVersion, kind or name: %v", o.Object)
				}
				k := objKey(o)
				if seen[k] {
					t.Errorf("%s rendered twice", k)
				}
				seen[k] = true
			}
			keys := make([]string, 0, len(seen))
			for k := range seen {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			t.Logf("%d objects: %s", len(keys), strings.Join(keys, ", "))
		})
	}
}

// TestChartSchemaRejects: values the schema forbids fail rendering with an
// error that names the field.
func TestChartSchemaRejects(t *testing.T) {
	cases := []struct {
		name  string
		vals  map[string]any
		field string // must appear in the error (Helm names fields by JSON pointer)
	}{
		{"mode not an enum value", map[string]any{"mode": "edge"}, "'/mode'"},
		{"cluster name with a space", map[string]any{"cluster": map[string]any{"name": "my cluster"}}, "'/cluster/name'"},
		{"brokers not a list", map[string]any{"kafka": map[string]any{"brokers": "kafka:9092"}}, "'/kafka/brokers'"},
		{"unknown top-level key", map[string]any{"colector": map[string]any{}}, "colector"},
		{"unknown nested key", map[string]any{"image": map[string]any{"tagg": "x"}}, "tagg"},
		{"log level", map[string]any{"log": map[string]any{"level": "verbose"}}, "'/log/level'"},
		{"pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "'/image/pullPolicy'"},
		{"mode member with a processor setting of the wrong type", map[string]any{"mode": "member", "processor": map[string]any{"replicas": "two"}}, "'/processor/replicas'"},
		{"collector namespace not a DNS label", map[string]any{"collectorNamespace": "Kube_Sift"}, "'/collectorNamespace'"},
		{"fullnameOverride too long for the derived names", map[string]any{"fullnameOverride": strings.Repeat("k", 40)}, "'/fullnameOverride'"},
		{"createNamespace not a boolean", map[string]any{"createNamespace": "yes"}, "'/createNamespace'"},
		{"the removed namespaces.create", map[string]any{"namespaces": map[string]any{"create": false}}, "namespaces"},
		{"podLabels value not a string", map[string]any{"processor": map[string]any{"podLabels": map[string]any{"tier": 1}}}, "'/processor/podLabels/tier'"},
		{"extraEnv item without a name", map[string]any{"notifier": map[string]any{"extraEnv": []any{map[string]any{"value": "x"}}}}, "'/notifier/extraEnv/0'"},
		{"extraVolumeMounts item without a mountPath", map[string]any{"collector": map[string]any{"extraVolumeMounts": []any{map[string]any{"name": "x"}}}}, "'/collector/extraVolumeMounts/0'"},
		{"serviceMonitor scheme", map[string]any{"serviceMonitor": map[string]any{"scheme": "ftp"}}, "'/serviceMonitor/scheme'"},
		{"podMonitor interval not a duration", map[string]any{"podMonitor": map[string]any{"interval": "often"}}, "'/podMonitor/interval'"},
		{"prometheusRule unknown key", map[string]any{"prometheusRule": map[string]any{"rules": []any{}}}, "rules"},
		{"grafanaDashboard label value not a string", map[string]any{"grafanaDashboard": map[string]any{"labels": map[string]any{"grafana_dashboard": 1}}}, "'/grafanaDashboard/labels/grafana_dashboard'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := helmTemplate(c.vals)
			if err == nil {
				t.Fatalf("values %v rendered without error", c.vals)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.field) {
				t.Errorf("error does not name %q as a schema violation: %v", c.field, err)
			}
		})
	}
	// And the files the chart ships pass it (TestRender renders them too).
	for _, f := range []string{"values.yaml", "ci/sample-values.yaml", "ci/member-values.yaml", "ci/all-options-values.yaml"} {
		vals, err := chartutil.ReadValuesFile(repo(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := helmTemplate(vals); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestHelmLint is `helm lint --strict` of the chart with the default values
// and each ci/ values file (ci/all-options-values.yaml sets every option):
// no error and no warning (Chart.yaml, templates, YAML of the output,
// values schema).
func TestHelmLint(t *testing.T) {
	ciFiles, err := filepath.Glob(repo(chartDir, "ci", "*.yaml"))
	if err != nil || len(ciFiles) < 3 {
		t.Fatalf("ci/*.yaml: %v %v", ciFiles, err)
	}
	files := []string{""}
	for _, f := range ciFiles {
		files = append(files, filepath.Join("ci", filepath.Base(f)))
	}
	for _, f := range files {
		t.Run("values "+f, func(t *testing.T) {
			vals := map[string]any{}
			if f != "" {
				var err error
				if vals, err = chartutil.ReadValuesFile(repo(chartDir, f)); err != nil {
					t.Fatal(err)
				}
			}
			l := action.NewLint()
			l.Strict, l.Namespace = true, "kubesift"
			res := l.Run([]string{repo(chartDir)}, vals)
			for _, m := range res.Messages {
				t.Logf("%s", m)
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint --strict: %v", err)
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("%d charts linted", res.TotalChartsLinted)
			}
		})
	}
}

// deepCopyValues copies a values tree, so that CoalesceTables (which
// writes into its first argument) never changes a rendering's set.
func deepCopyValues(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
