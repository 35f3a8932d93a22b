package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubesift/kubesift/internal/testenv"
)

// The ServiceMonitor, PodMonitor and PrometheusRule objects are checked by
// the real kube-apiserver too, which needs the prometheus-operator's CRDs.
// They come from the operator's own module (the release whose API types
// this module builds against, else crdFallbackVersion), read from the
// module cache, and are applied for real and never deleted, like the
// namespaces (the ground has no garbage collector to remove custom objects
// of a deleted CRD).

const promOperatorAPIs = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"

// crdFallbackVersion is the operator release whose CRDs are used when the
// Go proxy does not serve the root module of the API types' release (it
// serves pkg/apis/monitoring v0.95.2 but not the root module v0.95.x). The
// strict decoding into the v0.95.2 types checks the same objects.
const crdFallbackVersion = "v0.94.0"

// monitoringCRDs are the CRD files of the kinds the manifests use, in the
// operator module's example/prometheus-operator-crd.
var monitoringCRDs = []string{
	"monitoring.coreos.com_servicemonitors.yaml",
	"monitoring.coreos.com_podmonitors.yaml",
	"monitoring.coreos.com_prometheusrules.yaml",
}

// ensureMonitoringCRDs installs the CRDs on the ground's kube-apiserver,
// waits until they are established and makes c's RESTMapper see them.
func ensureMonitoringCRDs(t testing.TB, c *cluster) {
	t.Helper()
	dir := operatorModuleDir(t)
	cx := ctx(t, 2*time.Minute)
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, f := range monitoringCRDs {
		data, err := os.ReadFile(filepath.Join(dir, "example", "prometheus-operator-crd", f))
		if err != nil {
			t.Fatalf("prometheus-operator CRD: %v", err)
		}
		objs, err := decodeObjects(data, f)
		if err != nil || len(objs) != 1 {
			t.Fatalf("%s: %d objects, %v", f, len(objs), err)
		}
		crd := objs[0]
		if _, err := c.Dyn.Resource(crdRes).Apply(cx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			t.Fatalf("apply CRD %s: %v", crd.GetName(), err)
		}
		testenv.WaitFor(t, "CRD "+crd.GetName()+" established", time.Minute, func() bool {
			got, err := c.Dyn.Resource(crdRes).Get(cx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, x := range conds {
				m, _ := x.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
	}
	// The mapper caches discovery: forget it until the new kinds show.
	reset, ok := c.Mapper.(meta.ResettableRESTMapper)
	if !ok {
		t.Fatalf("the RESTMapper %T cannot forget its discovery", c.Mapper)
	}
	for _, k := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		gk := schema.GroupKind{Group: "monitoring.coreos.com", Kind: k}
		testenv.WaitFor(t, k+" in discovery", time.Minute, func() bool {
			reset.Reset()
			_, err := c.Mapper.RESTMapping(gk, "v1")
			return err == nil
		})
	}
}

// operatorModuleDir returns the module cache directory of the
// prometheus-operator release whose API types this module requires,
// downloading it if needed (go mod download; the module's files are read,
// never copied into the repository).
func operatorModuleDir(t testing.TB) string {
	t.Helper()
	// A test binary carries no dependency list: ask the module's build list.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", promOperatorAPIs).Output()
	version := strings.TrimSpace(string(out))
	if err != nil || version == "" {
		t.Fatalf("go list -m %s: %q %v", promOperatorAPIs, out, err)
	}
	var failures []string
	for _, v := range []string{version, crdFallbackVersion} {
		// Error goes to the JSON, with a non-zero exit status.
		out, _ := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+v).Output()
		var mod struct{ Dir, Error string }
		if err := json.Unmarshal(out, &mod); err != nil {
			failures = append(failures, v+": "+err.Error())
			continue
		}
		if mod.Dir != "" {
			t.Logf("prometheus-operator CRDs of %s (API types %s)", v, version)
			return mod.Dir
		}
		failures = append(failures, mod.Error)
	}
	testenv.Missing(t, "no prometheus-operator module for its CRDs: "+strings.Join(failures, "; "))
	return ""
}
