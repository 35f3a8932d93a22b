package posture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// runToken stands for the per-run prefix in the fixture files.
const runToken = "__RUN__"

// plantedSet is one file of testdata/planted: objects that are applied and
// deleted together, in file order (namespaces first).
type plantedSet struct {
	file string // relative to testdata, as expected.yaml names it
	objs []*unstructured.Unstructured
}

// expectations is testdata/expected.yaml.
type expectations struct {
	CISVersion         string           `yaml:"cis_version"`
	ApprovedRegistries []string         `yaml:"approved_registries"`
	Exemptions         []exemption      `yaml:"exemptions"`
	Themes             map[string]theme `yaml:"themes"`
	// Scopes are the kinds a theme of each scope reports on.
	Scopes map[string][]string `yaml:"scopes"`
	// KubesiftChecks match kubesift's checks to themes by id, where the
	// CIS id and scope do not.
	KubesiftChecks map[string]string `yaml:"kubesift_checks"`
	Preexisting    []expectation     `yaml:"preexisting"`
	Objects        []expectation     `yaml:"objects"`
}

// exemption is one entry of the default exemptions the fixture assumes.
type exemption struct {
	Namespace       string `yaml:"namespace"`
	Workload        string `yaml:"workload"`
	ImageRepository string `yaml:"image_repository"`
}

type theme struct {
	CIS   string `yaml:"cis"`
	Scope string `yaml:"scope"`
	Title string `yaml:"title"`
}

type expectation struct {
	File      string   `yaml:"file"`
	Kind      string   `yaml:"kind"`
	Namespace string   `yaml:"namespace"`
	Name      string   `yaml:"name"`
	Fire      []string `yaml:"fire"`
	MayFire   []string `yaml:"may_fire"`
	Note      string   `yaml:"note"`
}

func (e expectation) key() string { return objectKey(e.Kind, e.Namespace, e.Name) }

func objectKey(kind, ns, name string) string {
	if ns == "" {
		return kind + " " + name
	}
	return kind + " " + ns + "/" + name
}

func keyOf(o *unstructured.Unstructured) string {
	return objectKey(o.GetKind(), o.GetNamespace(), o.GetName())
}

func testdata(parts ...string) string {
	return filepath.Join(append([]string{"testdata"}, parts...)...)
}

// loadExpectations reads testdata/expected.yaml strictly: an unknown field is
// a typo that would silently drop an expectation.
func loadExpectations(t testing.TB) expectations {
	t.Helper()
	b, err := os.ReadFile(testdata("expected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var e expectations
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("expected.yaml: %v", err)
	}
	return e
}

// loadSets reads every planted file with the run token replaced by run (the
// token itself when run is empty, for checks on the files as written).
func loadSets(t testing.TB, run string) []plantedSet {
	t.Helper()
	files, err := filepath.Glob(testdata("planted", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no planted files (%v)", err)
	}
	sort.Strings(files)
	sets := make([]plantedSet, 0, len(files))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if run != "" {
			raw = bytes.ReplaceAll(raw, []byte(runToken), []byte(run))
		}
		rel := filepath.ToSlash(strings.TrimPrefix(f, testdata()+string(filepath.Separator)))
		objs, err := decodeObjects(raw)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		sets = append(sets, plantedSet{file: rel, objs: objs})
	}
	return sets
}

// decodeObjects splits multi-document YAML into objects, skipping documents
// that hold only comments.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// TestExpectationsMatchFixture keeps expected.yaml and the planted files in
// step, so neither can drift while nothing yet scans them: each rule below
// is one way the two could disagree.
func TestExpectationsMatchFixture(t *testing.T) {
	exp := loadExpectations(t)
	sets := loadSets(t, "")
	byKey := map[string]expectation{}
	for _, e := range exp.Objects {
		if _, dup := byKey[e.key()]; dup {
			t.Errorf("expected.yaml lists %s twice", e.key())
		}
		byKey[e.key()] = e
	}
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"header names a CIS version and approved registries", func(t *testing.T) {
			if exp.CISVersion == "" || len(exp.ApprovedRegistries) == 0 {
				t.Errorf("cis_version %q, approved_registries %v: both are needed to compare scans", exp.CISVersion, exp.ApprovedRegistries)
			}
		}},
		{"every theme has a known scope", func(t *testing.T) {
			for name, th := range exp.Themes {
				if _, ok := exp.Scopes[th.Scope]; !ok || th.Title == "" {
					t.Errorf("theme %s: scope %q, title %q", name, th.Scope, th.Title)
				}
			}
		}},
		{"kubesift_checks name themes", func(t *testing.T) {
			for check, name := range exp.KubesiftChecks {
				if _, ok := exp.Themes[name]; !ok {
					t.Errorf("kubesift_checks: %s maps to %q, which is not a theme", check, name)
				}
			}
		}},
		{"every planted object is expected in its own file", func(t *testing.T) {
			for _, s := range sets {
				for _, o := range s.objs {
					e, ok := byKey[keyOf(o)]
					switch {
					case !ok:
						t.Errorf("%s: %s is not in expected.yaml", s.file, keyOf(o))
					case e.File != s.file:
						t.Errorf("%s: expected.yaml places %s in %s", s.file, keyOf(o), e.File)
					}
				}
			}
		}},
		{"every expected object is planted", func(t *testing.T) {
			planted := map[string]bool{}
			for _, s := range sets {
				for _, o := range s.objs {
					planted[keyOf(o)] = true
				}
			}
			for _, e := range exp.Objects {
				if !planted[e.key()] {
					t.Errorf("expected.yaml lists %s, which no planted file holds", e.key())
				}
			}
		}},
		{"themes exist and fit the object's kind", func(t *testing.T) {
			for _, e := range append(slices.Clone(exp.Objects), exp.Preexisting...) {
				for _, name := range append(slices.Clone(e.Fire), e.MayFire...) {
					th, ok := exp.Themes[name]
					if !ok {
						t.Errorf("%s: unknown theme %q", e.key(), name)
						continue
					}
					if !slices.Contains(exp.Scopes[th.Scope], e.Kind) {
						t.Errorf("%s: theme %s reports on %s objects, not %s", e.key(), name, th.Scope, e.Kind)
					}
				}
				for _, name := range e.Fire {
					if slices.Contains(e.MayFire, name) {
						t.Errorf("%s: %s is both fire and may_fire", e.key(), name)
					}
				}
			}
		}},
		{"every theme is planted at least once", func(t *testing.T) {
			fired := map[string]bool{}
			for _, e := range exp.Objects {
				for _, name := range e.Fire {
					fired[name] = true
				}
			}
			for name := range exp.Themes {
				if !fired[name] {
					t.Errorf("theme %s: no planted object violates it", name)
				}
			}
		}},
		{"every set is independent of the others and of other runs", func(t *testing.T) {
			owner := map[string]string{}
			for _, s := range sets {
				for _, o := range s.objs {
					if err := isolated(o); err != nil {
						t.Errorf("%s: %s: %v", s.file, keyOf(o), err)
					}
					if o.GetKind() == "Namespace" {
						owner[o.GetName()] = s.file
					}
				}
			}
			for _, s := range sets {
				for _, o := range s.objs {
					ns := o.GetNamespace()
					if strings.HasPrefix(ns, runToken) && owner[ns] != s.file {
						t.Errorf("%s: %s is in namespace %s, which %q creates", s.file, keyOf(o), ns, owner[ns])
					}
				}
			}
		}},
		{"preexisting objects are built-in", func(t *testing.T) {
			for _, e := range exp.Preexisting {
				if strings.Contains(e.Name, runToken) || e.File != "" || len(e.Fire) > 0 {
					t.Errorf("%s: a preexisting object is a built-in with nothing to report", e.key())
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

// sharedNamespaces are the namespaces the fixture uses without owning them,
// each for a reason given in its planted file.
var sharedNamespaces = []string{"default", "kube-system"}

// isolated says why o would collide with another set or run, if it would.
func isolated(o *unstructured.Unstructured) error {
	ns, name := o.GetNamespace(), o.GetName()
	switch {
	case o.GetKind() == "Namespace":
		if !strings.HasPrefix(name, runToken+"-") {
			return fmt.Errorf("namespace name must start with %s-", runToken)
		}
	case ns == "":
		if !strings.HasPrefix(name, runToken+"-") {
			return fmt.Errorf("cluster-scoped name must start with %s-", runToken)
		}
	case !strings.HasPrefix(ns, runToken+"-") && !slices.Contains(sharedNamespaces, ns):
		return fmt.Errorf("namespace %s is neither the set's own nor one of %v", ns, sharedNamespaces)
	}
	return nil
}

// polarisTheme matches one entry of summarize.py's POLARIS_THEMES.
var polarisTheme = regexp.MustCompile(`^"(\w+)": "([a-z-]+)",$`)

// TestPolarisMappingNamesFixtureThemes keeps the comparison script's map of
// Polaris checks to themes in step with expected.yaml: a theme renamed in
// one and not the other would silently count as missed.
func TestPolarisMappingNamesFixtureThemes(t *testing.T) {
	exp := loadExpectations(t)
	src, err := os.ReadFile("summarize.py")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(src), "POLARIS_THEMES = {")
	if !ok {
		t.Fatal("summarize.py has no POLARIS_THEMES")
	}
	block, _, _ = strings.Cut(block, "\n}")
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		m := polarisTheme.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			t.Errorf("POLARIS_THEMES: unexpected line %q", line)
			continue
		}
		n++
		if _, ok := exp.Themes[m[2]]; !ok {
			t.Errorf("POLARIS_THEMES maps %s to %q, which expected.yaml does not name", m[1], m[2])
		}
	}
	if n == 0 {
		t.Error("POLARIS_THEMES is empty")
	}
}
