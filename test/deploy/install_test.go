package deploy

import (
	"fmt"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/kubesift/kubesift/internal/testenv"
)

// helmConfig is Helm's action configuration for the ground's
// kube-apiserver (what `helm --kube-apiserver --kube-token --kube-ca-file
// -n ns` builds), releases stored as Secrets in ns.
func helmConfig(t testing.TB, ns string) *action.Configuration {
	t.Helper()
	k := testenv.KubeAPIServer(t)
	flags := genericclioptions.NewConfigFlags(false)
	flags.APIServer, flags.BearerToken, flags.CAFile, flags.Namespace = &k.URL, &k.AdminToken, &k.CAFile, &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestHelmInstallUninstall runs Helm's own install and uninstall (the
// library behind `helm install` / `helm uninstall`) against the ground's
// kube-apiserver, into a namespace the user created beforehand and keeps a
// Secret in: after the uninstall the namespace and the Secret are still
// there and the release's objects (the cluster-scoped RBAC included) are
// gone. With createNamespace, the collectors' namespace the chart created
// is kept too, with the Secret the user put in it. (Pods never start: the
// ground has no kubelet; the objects are what is checked.)
func TestHelmInstallUninstall(t *testing.T) {
	testenv.Short(t)
	c := newCluster(t)
	ensureMonitoringCRDs(t, c)
	chrt, err := loader.Load(repo(chartDir))
	if err != nil {
		t.Fatal(err)
	}
	run := randHex(t)[:8]
	cases := []struct {
		name        string
		vals        map[string]any
		collectorNS string // "": the release namespace
	}{
		{"default values", map[string]any{}, ""},
		{"collectors in a namespace of their own, monitoring on", map[string]any{
			"createNamespace": true, "collectorNamespace": "ks-col-" + run,
			"serviceMonitor": enabled(), "prometheusRule": enabled(), "grafanaDashboard": enabled(),
		}, "ks-col-" + run},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("ks-install-%s-%d", run, i)
			rel := fmt.Sprintf("ks-%s-%d", run, i)
			prefix := rel + "-kubesift"
			collectorNS := tc.collectorNS
			if collectorNS == "" {
				collectorNS = ns
			}
			cx := ctx(t, 3*time.Minute)

			// The user's namespace and Secret, removed (and the namespace
			// finalized, the ground having no namespace controller) at the end.
			userObjs := []*unstructured.Unstructured{namespaceObj(t, ns), secretObj(t, ns, "user-credentials")}
			t.Cleanup(func() {
				objs := userObjs
				if tc.collectorNS != "" {
					objs = append(objs, namespaceObj(t, tc.collectorNS), secretObj(t, tc.collectorNS, "user-credentials"))
				}
				c.RemoveAll(t, objs)
			})
			for _, o := range userObjs {
				if _, _, err := c.Apply(cx, o, false); err != nil {
					t.Fatalf("create %s: %v", objKey(o), err)
				}
			}

			cfg := helmConfig(t, ns)
			inst := action.NewInstall(cfg)
			inst.ReleaseName, inst.Namespace, inst.Timeout = rel, ns, 2*time.Minute
			installed := false
			t.Cleanup(func() {
				if installed { // the uninstall below did not run or failed
					_, _ = action.NewUninstall(helmConfig(t, ns)).Run(rel)
				}
			})
			if _, err := inst.Run(chrt, deepCopyValues(tc.vals)); err != nil {
				installed = true
				t.Fatalf("helm install %s -n %s: %v", rel, ns, err)
			}
			installed = true

			// The release's objects are where and what they should be.
			if _, err := c.CS.AppsV1().DaemonSets(collectorNS).Get(cx, prefix+"-collector", metav1.GetOptions{}); err != nil {
				t.Errorf("DaemonSet %s/%s-collector after install: %v", collectorNS, prefix, err)
			}
			if _, err := c.CS.AppsV1().Deployments(ns).Get(cx, prefix+"-processor", metav1.GetOptions{}); err != nil {
				t.Errorf("Deployment %s/%s-processor after install: %v", ns, prefix, err)
			}
			if _, err := c.CS.RbacV1().ClusterRoles().Get(cx, prefix+"-collector", metav1.GetOptions{}); err != nil {
				t.Errorf("ClusterRole %s-collector after install: %v", prefix, err)
			}
			if tc.collectorNS != "" {
				// The user puts the collectors' Secrets in their namespace.
				if _, _, err := c.Apply(cx, secretObj(t, tc.collectorNS, "user-credentials"), false); err != nil {
					t.Fatal(err)
				}
			}

			un := action.NewUninstall(cfg)
			un.Timeout = 2 * time.Minute
			if _, err := un.Run(rel); err != nil {
				t.Fatalf("helm uninstall %s -n %s: %v", rel, ns, err)
			}
			installed = false

			for _, n := range []string{ns, tc.collectorNS} {
				if n == "" {
					continue
				}
				got, err := c.CS.CoreV1().Namespaces().Get(cx, n, metav1.GetOptions{})
				switch {
				case err != nil:
					t.Errorf("namespace %s after uninstall: %v", n, err)
				case got.DeletionTimestamp != nil:
					t.Errorf("namespace %s is being deleted after uninstall", n)
				}
				if _, err := c.CS.CoreV1().Secrets(n).Get(cx, "user-credentials", metav1.GetOptions{}); err != nil {
					t.Errorf("the user's Secret %s/user-credentials after uninstall: %v", n, err)
				}
			}
			testenv.WaitFor(t, "the release's objects gone", time.Minute, func() bool {
				_, err1 := c.CS.AppsV1().DaemonSets(collectorNS).Get(cx, prefix+"-collector", metav1.GetOptions{})
				_, err2 := c.CS.RbacV1().ClusterRoles().Get(cx, prefix+"-collector", metav1.GetOptions{})
				return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2)
			})
		})
	}
}

func namespaceObj(t testing.TB, name string) *unstructured.Unstructured {
	return typedToUnstructured(t, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name}})
}

func secretObj(t testing.TB, ns, name string) *unstructured.Unstructured {
	return typedToUnstructured(t, &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"token": "not-a-real-token"}})
}

func typedToUnstructured(t testing.TB, o runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}
