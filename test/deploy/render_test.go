package deploy

import (
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
}

func (r rendering) String() string { return r.name }

const chartDir = "deployments/helm/kubesift"

// objectsComponent is the RBAC of the optional objects source.
const objectsComponent = "deployments/kubernetes/components/objects"

// renderings are every way of installing kubesift the repository documents.
func renderings() []rendering {
	return []rendering{
		{name: "kustomize base", mode: "central", kustomize: "deployments/kubernetes/base"},
		{name: "kustomize overlays/central", mode: "central", kustomize: "deployments/kubernetes/overlays/central"},
		{name: "kustomize overlays/member", mode: "member", kustomize: "deployments/kubernetes/overlays/member"},
		{name: "kustomize overlays/central + components/webhook-hostport", mode: "central",
			overlay: "deployments/kubernetes/overlays/central", component: "deployments/kubernetes/components/webhook-hostport"},
		{name: "kustomize overlays/central + components/objects", mode: "central",
			overlay: "deployments/kubernetes/overlays/central", component: objectsComponent},
		{name: "helm default values", mode: "central", values: ""},
		{name: "helm ci/sample-values.yaml", mode: "central", values: "ci/sample-values.yaml"},
		{name: "helm ci/member-values.yaml", mode: "member", values: "ci/member-values.yaml"},
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
		var vals map[string]any
		if r.values != "" {
			vals, err = chartutil.ReadValuesFile(repo(chartDir, r.values))
			if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
		}
		var s string
		s, err = helmTemplate(vals)
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
// kubesift -f values`: the chart loader, the values merged over the chart's
// and checked against values.schema.json, client-only rendering. Hooks are
// included, as helm template prints them.
func helmTemplate(vals map[string]any) (string, error) {
	chrt, err := loader.Load(repo(chartDir))
	if err != nil {
		return "", err
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "kubesift", "kubesift"
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
	for _, f := range []string{"values.yaml", "ci/sample-values.yaml", "ci/member-values.yaml"} {
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
// and each ci/ values file: no error and no warning (Chart.yaml, templates,
// YAML of the output, values schema).
func TestHelmLint(t *testing.T) {
	for _, f := range []string{"", "ci/sample-values.yaml", "ci/member-values.yaml"} {
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
