package arch

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLeavesOutTypedAPI fails when the kubesift binary depends on
// go-elasticsearch's root package or its typed API: the root package
// imports the typed API, thousands of generated packages kubesift never
// calls, which made up a large part of every first build. The binary talks
// to Elasticsearch through esapi over elastic-transport
// (sink/elasticsearch.Client); tests may still use the root package.
func TestBinaryLeavesOutTypedAPI(t *testing.T) {
	const root = "github.com/elastic/go-elasticsearch/v8"
	cmd := exec.Command("go", "list", "-deps", module+"/cmd/kubesift")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list found %d dependencies; the test is not looking at the binary", len(deps))
	}
	for _, p := range deps {
		if p == root || strings.HasPrefix(p, root+"/typedapi") {
			t.Errorf("cmd/kubesift depends on %s", p)
		}
	}
}
