// Package deploy tests everything under deployments/ against the real
// servers of the test ground: the Kustomize overlays and the Helm chart are
// rendered with the libraries `kustomize build` and `helm template` use, and
// every object is applied (server-side dry-run; RBAC for real) to the
// ground's kube-apiserver, and the chart is installed and uninstalled there
// with Helm's own actions; the prometheus-operator objects are decoded into
// the operator's types and their PromQL checked against the metric families
// kubesift's sources register; the recommended audit Policy runs in a second,
// real kube-apiserver whose log and webhook feed the real `kubesift collect`
// into the real Kafka; the compose stack's configs pass the strict config
// loader; the Dockerfile's build flags give a static binary.
//
// It is a module of its own (test/deploy) so that Helm's and Kustomize's
// dependencies never reach the kubesift binary's module graph.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kubesift/kubesift/internal/testenv"
)

// repo returns a path inside the repository.
func repo(parts ...string) string {
	return filepath.Join(append([]string{testenv.Root()}, parts...)...)
}

// decodeObjects splits multi-document YAML (or JSON) into objects, skipping
// empty documents.
func decodeObjects(data []byte, name string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, errors.Join(errors.New(name), err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// ctx returns a context that ends with the test (or after d).
func ctx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// mustRead reads a file of the repository.
func mustRead(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repo(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
