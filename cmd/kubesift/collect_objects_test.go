package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestCollectObjectsSource runs `kubesift collect` with only the objects
// source on, against the real test kube-apiserver: it becomes ready and
// publishes the kube-system namespace's record.
func TestCollectObjectsSource(t *testing.T) {
	testenv.Short(t)
	testenv.KubeAPIServer(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	metricsAddr := testenv.FreeAddr(t)
	cfgFile := filepath.Join(dir, "collector.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`cluster: {name: test-cluster}
server: {listen: %q}
collector:
  kubeconfig: %q
  objects:
    enabled: true
    kinds: [Namespace, ClusterRole]
    leader_election: {enabled: false}
`, metricsAddr, kubeconfig)), 0o644)
	pub := &memPublisher{}
	publisherFactory = func(context.Context, *config.Config, prometheus.Registerer, *slog.Logger) (collectPublisher, error) {
		return pub, nil
	}
	t.Cleanup(func() { publisherFactory = newPublisher })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCommand()
	cmd.SetArgs([]string{"collect", "-c", cfgFile, "--log-format", "text"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	testenv.WaitFor(t, "/readyz", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	want := fmt.Sprintf("%s:%s@test-cluster/%s", ks.UID, ks.ResourceVersion, ks.UID)
	testenv.WaitFor(t, "the kube-system namespace's record", 20*time.Second, func() bool { return strings.Contains(pub.got(), want) })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collect: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("collect did not stop")
	}
}
