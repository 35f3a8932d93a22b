package posture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/internal/testenv"
)

// kubeadmDefaultFails are the control-plane checks a kubeadm v1.31
// kube-apiserver with no hardening flags fails, sorted.
var kubeadmDefaultFails = []string{
	"posture-apiserver-always-pull-images", "posture-apiserver-anonymous-auth", "posture-apiserver-audit-log-maxage",
	"posture-apiserver-audit-log-maxbackup", "posture-apiserver-audit-log-maxsize", "posture-apiserver-audit-log-path",
	"posture-apiserver-deny-external-ips", "posture-apiserver-encryption-config", "posture-apiserver-event-rate-limit",
	"posture-apiserver-kubelet-ca", "posture-apiserver-profiling", "posture-apiserver-weak-ciphers",
}

// failedChecks are the check ids of the open findings on uid, sorted.
func failedChecks(e *Engine, cluster, uid string) []string {
	var out []string
	for _, f := range e.Findings(cluster) {
		if f.Object.UID == uid {
			out = append(out, f.CheckID)
		}
	}
	slices.Sort(out)
	return out
}

// TestKubeadmDefaultsFindings: the full verdict on kubeadm's default static
// Pods, every check of the pack judging them, not one check at a time.
func TestKubeadmDefaultsFindings(t *testing.T) {
	cases := []struct {
		name, component, image string
		cmd                    []string
		want                   []string
	}{
		{"kube-apiserver", "kube-apiserver", "kube-apiserver:v1.31.0", kubeadmAPIServer, kubeadmDefaultFails},
		{"hardened kube-apiserver", "kube-apiserver", "kube-apiserver:v1.31.0", hardenedAPIServer, nil},
		{"kube-controller-manager", "kube-controller-manager", "kube-controller-manager:v1.31.0", kubeadmControllerManager,
			[]string{"posture-controller-manager-profiling", "posture-controller-manager-terminated-pod-gc"}},
		{"kube-scheduler", "kube-scheduler", "kube-scheduler:v1.31.0", kubeadmScheduler, []string{"posture-scheduler-profiling"}},
		{"etcd", "etcd", "etcd:3.5.15-0", kubeadmEtcd, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := obj(t, controlPlanePod(tc.component, tc.image, tc.cmd))
			o.UID = "uid-cp"
			e := New(builtin(t))
			if _, err := e.Replace("k", []Object{o}); err != nil {
				t.Fatal(err)
			}
			if got := failedChecks(e, "k", o.UID); !slices.Equal(got, tc.want) {
				t.Errorf("findings %v\nwant     %v", got, tc.want)
			}
		})
	}
}

// TestRealAPIServerControlPlanePod creates a mirror Pod of a kubeadm
// kube-apiserver in kube-system on the test ground (bound to a node that
// does not exist, so it never runs), lists kube-system back and judges it:
// the Pod as the server stores it (defaults filled in) gets exactly the
// kubeadm default findings and no workload finding.
func TestRealAPIServerControlPlanePod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testenv.NewKubeClient(t, "kubesift-posture-test").CS
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	name := "kube-apiserver-ks-cp-" + sfx
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system",
			Labels:      map[string]string{"component": "kube-apiserver", "tier": "control-plane"},
			Annotations: map[string]string{"kubernetes.io/config.mirror": "5d4c3b2a" + sfx, "kubernetes.io/config.source": "file"}},
		Spec: corev1.PodSpec{NodeName: "ks-no-such-node-" + sfx, HostNetwork: true,
			Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.31.0", Command: kubeadmAPIServer}}},
	}
	if _, err := c.CoreV1().Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create mirror Pod: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		zero := int64(0)
		_ = c.CoreV1().Pods("kube-system").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	list, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var objs []Object
	uid := ""
	for i := range list.Items {
		objs = append(objs, toObject(t, &list.Items[i], "Pod", "v1"))
		if list.Items[i].Name == name {
			uid = string(list.Items[i].UID)
		}
	}
	if uid == "" {
		t.Fatalf("Pod %s not listed back", name)
	}
	e := New(builtin(t))
	if _, err := e.Replace("ground", objs); err != nil {
		t.Fatal(err)
	}
	if got := failedChecks(e, "ground", uid); !slices.Equal(got, kubeadmDefaultFails) {
		t.Errorf("findings on the mirror Pod %v\nwant                     %v", got, kubeadmDefaultFails)
	}
}

// TestGroundControlPlaneProcesses judges the test ground's own
// kube-apiserver and etcd, which run as processes, not Pods: their real
// command lines (from /proc) become control-plane mirror Pods. The ground
// is a development setup (static tokens, anonymous auth, etcd over plain
// HTTP), so this pins which checks a real, unhardened flag set fails; a
// change to hack/testenv/kube.sh's flags shows up here.
func TestGroundControlPlaneProcesses(t *testing.T) {
	testenv.KubeAPIServer(t)
	cases := []struct {
		component, image string
		want             []string
	}{
		{"kube-apiserver", "kube-apiserver:v1.31.0", []string{
			"posture-apiserver-always-pull-images", "posture-apiserver-anonymous-auth", "posture-apiserver-audit-log-maxage",
			"posture-apiserver-audit-log-maxbackup", "posture-apiserver-deny-external-ips", "posture-apiserver-encryption-config",
			"posture-apiserver-etcd-ca", "posture-apiserver-etcd-client-cert", "posture-apiserver-event-rate-limit",
			"posture-apiserver-kubelet-ca", "posture-apiserver-kubelet-client-cert", "posture-apiserver-node-restriction",
			"posture-apiserver-sa-admission-disabled", "posture-apiserver-token-auth-file", "posture-apiserver-weak-ciphers"}},
		{"etcd", "etcd:3.5.15-0", []string{
			"posture-etcd-client-cert-auth", "posture-etcd-peer-client-cert-auth", "posture-etcd-peer-tls",
			"posture-etcd-tls", "posture-etcd-trusted-ca"}},
	}
	for _, tc := range cases {
		t.Run(tc.component, func(t *testing.T) {
			pid, err := os.ReadFile(filepath.Join(testenv.Dir(), "kube", tc.component+".pid"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "cmdline"))
			if err != nil {
				t.Fatalf("%s command line: %v", tc.component, err)
			}
			cmd := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
			if filepath.Base(cmd[0]) != tc.component {
				t.Fatalf("pid file names %q, not %s", cmd[0], tc.component)
			}
			o := obj(t, controlPlanePod(tc.component, tc.image, cmd))
			o.UID = "uid-ground-" + tc.component
			e := New(builtin(t))
			if _, err := e.Replace("ground", []Object{o}); err != nil {
				t.Fatal(err)
			}
			got := failedChecks(e, "ground", o.UID)
			t.Logf("the ground's %s (%d flags) fails %d checks: %v", tc.component, len(cmd)-1, len(got), got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("findings %v\nwant     %v", got, tc.want)
			}
		})
	}
}
