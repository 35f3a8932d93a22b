package collector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// testLog is a logger whose output the test reads.
func testLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestNamespaceUID(t *testing.T) {
	kubeSystem := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: types.UID("uid-from-api")}}
	forbidden := func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`namespaces "kube-system" is forbidden`)
	}
	tests := []struct {
		name       string
		objects    []runtime.Object
		reactor    k8stesting.ReactionFunc
		configured string
		want       string
		wantLog    string // "" when nothing at warning level must be logged
	}{
		{name: "the API's UID", objects: []runtime.Object{kubeSystem}, want: "uid-from-api"},
		{name: "configured and equal", objects: []runtime.Object{kubeSystem}, configured: "uid-from-api", want: "uid-from-api"},
		{name: "configured and different: the API wins", objects: []runtime.Object{kubeSystem}, configured: "uid-from-config",
			want: "uid-from-api", wantLog: "collector.cluster_uid differs"},
		{name: "namespace missing: configured", configured: "uid-from-config", want: "uid-from-config",
			wantLog: "cannot read the kube-system namespace UID"},
		{name: "read refused: configured", objects: []runtime.Object{kubeSystem}, reactor: forbidden,
			configured: "uid-from-config", want: "uid-from-config", wantLog: "is forbidden"},
		{name: "read refused, nothing configured: empty", objects: []runtime.Object{kubeSystem}, reactor: forbidden,
			want: "", wantLog: "cannot read the kube-system namespace UID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objects...)
			if tc.reactor != nil {
				cs.PrependReactor("get", "namespaces", tc.reactor)
			}
			log, buf := testLog()
			if got := namespaceUID(context.Background(), cs, tc.configured, log); got != tc.want {
				t.Errorf("uid = %q, want %q", got, tc.want)
			}
			warned := strings.Contains(buf.String(), "level=WARN")
			switch {
			case tc.wantLog == "" && warned:
				t.Errorf("unexpected warning: %s", buf)
			case tc.wantLog != "" && !strings.Contains(buf.String(), tc.wantLog):
				t.Errorf("log lacks %q: %s", tc.wantLog, buf)
			}
		})
	}
}

// TestClusterUIDWithoutReachableAPI covers the cases that never reach an
// API server: no access configured, and access configured but unusable.
func TestClusterUIDWithoutReachableAPI(t *testing.T) {
	tests := []struct {
		name       string
		kubeconfig string
		inCluster  bool
		configured string
		wantLog    string
	}{
		{name: "no API access", configured: "uid-from-config"},
		{name: "no API access, nothing configured", wantLog: "records carry no cluster UID"},
		{name: "kubeconfig missing", kubeconfig: filepath.Join(t.TempDir(), "missing"), configured: "uid-from-config",
			wantLog: "cannot read the kube-system namespace UID"},
		{name: "in a pod without a service account token", inCluster: true, configured: "uid-from-config",
			wantLog: "cannot read the kube-system namespace UID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// KubeConfig reads the variable a pod has; the test's
			// environment must not decide for the test.
			host := ""
			if tc.inCluster {
				host = "10.0.0.1"
			}
			t.Setenv("KUBERNETES_SERVICE_HOST", host)
			t.Setenv("KUBERNETES_SERVICE_PORT", "443")
			cc := config.Default().Collector
			cc.Kubeconfig, cc.ClusterUID = tc.kubeconfig, tc.configured
			log, buf := testLog()
			if got := ClusterUID(context.Background(), &cc, log); got != tc.configured {
				t.Errorf("uid = %q, want %q", got, tc.configured)
			}
			if !strings.Contains(buf.String(), tc.wantLog) {
				t.Errorf("log lacks %q: %s", tc.wantLog, buf)
			}
		})
	}
}

// TestClusterIdentityFromTheAPIServer reads the kube-system namespace UID
// from the test ground's kube-apiserver through a kubeconfig, as a collector
// with collector.kubeconfig does.
func TestClusterIdentityFromTheAPIServer(t *testing.T) {
	testenv.Short(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cs := testenv.NewKubeClient(t, "kubesift-test").CS
	ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Cluster.Name = "ground"
	cfg.Collector.Kubeconfig = kubeconfig
	cfg.Collector.ClusterUID = "configured-but-overridden"
	log, buf := testLog()
	got := ClusterIdentity(context.Background(), &cfg, log)
	if got.Name != "ground" || got.UID == "" || got.UID != string(ns.UID) {
		t.Errorf("identity = %+v, want {ground %s}", got, ns.UID)
	}
	if !strings.Contains(buf.String(), "collector.cluster_uid differs") {
		t.Errorf("the overridden cluster_uid was not logged: %s", buf)
	}
}
