package rules

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestRealAPIServerPatchForms patches workloads of the test ground's real
// kube-apiserver to privileged with each of the four patch forms (JSON,
// merge, strategic merge, server-side apply), patches a role with a JSON
// patch that appends "*" and a system: ClusterRole, and checks the built-in
// rules fire on what the API server audited: once as logged (the ground's
// policy records RequestResponse, so rules see the stored object) and once
// with the response bodies removed, as a Request-level policy would log
// them, where only the patch body is left to judge. Benign patches of the
// same kinds (an annotation, the replica count) must stay quiet.
func TestRealAPIServerPatchForms(t *testing.T) {
	testenv.Short(t)
	kc := testenv.NewKubeClient(t, "kubesift-patchforms-test")
	k := testenv.KubeAPIServer(t)
	cs := kc.CS
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	ns, role, sysRole, marker := "ks-patch-"+sfx, "ks-patch-role-"+sfx, "system:ks-patch-"+sfx, "ks-patch-end-"+sfx
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cs.RbacV1().ClusterRoles().Delete(c, role, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(c, sysRole, metav1.DeleteOptions{})
		_ = cs.CoreV1().Namespaces().Delete(c, ns, metav1.DeleteOptions{})
		_ = kc.FinalizeNamespace(c, ns)
	})
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	st, err := os.Stat(k.AuditLog)
	must("audit log", err)
	offset := st.Size()

	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	deploy := func(name string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "docker.io/library/busybox:1.36"}}},
			}},
		}
	}
	applyBody := func(name string, priv bool) []byte {
		d := deploy(name)
		if priv {
			d.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
		}
		b, err := json.Marshal(d)
		must("apply body", err)
		return b
	}
	type patch struct {
		name  string // of the Deployment
		typ   types.PatchType
		body  []byte
		alert bool
	}
	patches := []patch{
		{"json", types.JSONPatchType, []byte(`[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]`), true},
		{"merge", types.MergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"docker.io/library/busybox:1.36","securityContext":{"privileged":true}}]}}}}`), true},
		{"strategic", types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}`), true},
		{"apply", types.ApplyPatchType, applyBody("apply", true), true},
		{"json-benign", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":2}]`), false},
		{"merge-benign", types.MergePatchType, []byte(`{"metadata":{"annotations":{"team":"a"}}}`), false},
		{"strategic-benign", types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"docker.io/library/busybox:1.37"}]}}}}`), false},
		{"apply-benign", types.ApplyPatchType, applyBody("apply-benign", false), false},
	}
	for _, p := range patches {
		if p.typ != types.ApplyPatchType {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, deploy(p.name), metav1.CreateOptions{})
			must("deployment "+p.name, err)
		}
		opts := metav1.PatchOptions{}
		if p.typ == types.ApplyPatchType {
			opts = metav1.PatchOptions{FieldManager: "kubesift-patchforms-test", Force: ptr(true)}
		}
		_, err := cs.AppsV1().Deployments(ns).Patch(ctx, p.name, p.typ, p.body, opts)
		must("patch "+p.name, err)
	}
	// A role widened by a JSON patch, and a built-in-looking ClusterRole
	// rewritten to grant everything.
	for _, name := range []string{role, sysRole} {
		_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
		must("clusterrole "+name, err)
	}
	_, err = cs.RbacV1().ClusterRoles().Patch(ctx, role, types.JSONPatchType, []byte(`[{"op":"add","path":"/rules/0/verbs/-","value":"*"}]`), metav1.PatchOptions{})
	must("patch role", err)
	_, err = cs.RbacV1().ClusterRoles().Patch(ctx, sysRole, types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/rules","value":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}]`), metav1.PatchOptions{})
	must("patch system role", err)
	_, _ = cs.CoreV1().Namespaces().Get(ctx, marker, metav1.GetOptions{})

	data := readAuditSince(t, k.AuditLog, offset, marker)
	for _, level := range []string{"RequestResponse", "Request"} {
		t.Run(level, func(t *testing.T) {
			recs, errs := record.DecodeAll(data, k.AuditLog, record.DecodeOptions{Cluster: record.Cluster{Name: "ground"}})
			if len(errs) > 0 {
				t.Fatalf("decode: %v", errs[0])
			}
			eng, err := New(LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			fired := map[string]map[string]string{} // rule -> object name -> effective_from
			for _, r := range recs {
				a := r.Audit
				if a == nil || a.ObjectRef == nil || (a.ObjectRef.Namespace != ns && !strings.HasSuffix(a.ObjectRef.Name, sfx)) {
					continue
				}
				if level == "Request" {
					a.ResponseObject = nil
				}
				for _, al := range eng.Eval(r) {
					if fired[al.RuleID] == nil {
						fired[al.RuleID] = map[string]string{}
					}
					eff, _ := record.EffectiveOf(a, nil)
					fired[al.RuleID][a.ObjectRef.Name] = eff.From
				}
			}
			for _, p := range patches {
				from, ok := fired["privileged-container"][p.name]
				if ok != p.alert {
					t.Errorf("privileged-container on the %s patch (%s): alerted %v, want %v", p.name, p.typ, ok, p.alert)
				}
				if ok {
					t.Logf("%s patch judged on the %s object", p.name, from)
				}
			}
			if _, ok := fired["role-patch-adds-grant"][role]; !ok {
				t.Errorf("role-patch-adds-grant did not fire on the JSON patch of %s: %v", role, fired)
			}
			if _, ok := fired["builtin-cluster-role-changed"][sysRole]; !ok {
				t.Errorf("builtin-cluster-role-changed did not fire on the rewrite of %s: %v", sysRole, fired)
			}
			if _, ok := fired["role-wildcard-verbs"][sysRole]; !ok {
				t.Errorf("role-wildcard-verbs did not judge the patched %s: %v", sysRole, fired)
			}
		})
	}
}
