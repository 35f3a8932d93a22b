package rules

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// groundImage is the image of the test's Deployments (no kubelet runs on
// the ground, so it is never pulled).
const groundImage = "docker.io/library/busybox:1.36"

// groundPatch is one patch the real-ground test sends: of which object, in
// which form, and which rules must (and must not) alert on its audit record.
type groundPatch struct {
	kind  string // deployment | clusterrole | clusterrolebinding
	name  string
	typ   types.PatchType
	body  []byte
	want  []string // rules that alert on this patch, at both audit levels
	quiet []string // rules that must not
}

// formOf is the form EffectiveOf must read off the audit record of a patch
// sent as typ. The audit event does not keep the Content-Type, so a merge
// patch of a kind with a strategic schema is read as a strategic one (on
// the empty base of a Request-level record both give the same object).
func formOf(typ types.PatchType) record.PatchForm {
	switch typ {
	case types.JSONPatchType:
		return record.PatchJSON
	case types.ApplyPatchType:
		return record.PatchApply
	}
	return record.PatchStrategic
}

// TestRealAPIServerPatchForms sends the test ground's real kube-apiserver
// each of the four patch forms (JSON, merge, strategic merge, server-side
// apply) that make a Deployment privileged and that widen a ClusterRole
// (wildcard verb, secrets, escalate/bind, impersonate), patches of a
// system: ClusterRole and ClusterRoleBinding, and a benign patch of each
// form and kind. It reads what the API server audited and checks the
// built-in rules twice: on the records as logged (the ground's policy logs
// RequestResponse, so the effective object is the stored one) and with the
// response bodies removed, as a Request-level policy logs them, where only
// the patch body is left to judge. Patch forms must not change what alerts.
func TestRealAPIServerPatchForms(t *testing.T) {
	testenv.Short(t)
	kc := testenv.NewKubeClient(t, "kubesift-patchforms-test")
	k := testenv.KubeAPIServer(t)
	cs := kc.CS
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	ns, marker, sysRole := "ks-patch-"+sfx, "ks-patch-end-"+sfx, "system:ks-patch-"+sfx
	patches := groundPatches(t, ns, sfx, sysRole)

	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, p := range patches {
			switch p.kind {
			case "clusterrole":
				_ = cs.RbacV1().ClusterRoles().Delete(c, p.name, metav1.DeleteOptions{})
			case "clusterrolebinding":
				_ = cs.RbacV1().ClusterRoleBindings().Delete(c, p.name, metav1.DeleteOptions{})
			}
		}
		// The ground runs no namespace controller: delete what the
		// namespace holds, then finalize it.
		_ = cs.AppsV1().Deployments(ns).DeleteCollection(c, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.CoreV1().Namespaces().Delete(c, ns, metav1.DeleteOptions{})
		if err := kc.FinalizeNamespace(c, ns); err != nil {
			t.Log(err)
		}
	})

	st, err := os.Stat(k.AuditLog)
	must("audit log", err)
	offset := st.Size()
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	for _, p := range patches {
		createBase(ctx, t, cs, ns, sysRole, p)
		opts := metav1.PatchOptions{}
		if p.typ == types.ApplyPatchType {
			opts = metav1.PatchOptions{FieldManager: "kubesift-patchforms-test", Force: ptr(true)}
		}
		switch p.kind {
		case "deployment":
			_, err = cs.AppsV1().Deployments(ns).Patch(ctx, p.name, p.typ, p.body, opts)
		case "clusterrole":
			_, err = cs.RbacV1().ClusterRoles().Patch(ctx, p.name, p.typ, p.body, opts)
		case "clusterrolebinding":
			_, err = cs.RbacV1().ClusterRoleBindings().Patch(ctx, p.name, p.typ, p.body, opts)
		}
		must("patch "+p.kind+" "+p.name, err)
	}
	_, _ = cs.CoreV1().Namespaces().Get(ctx, marker, metav1.GetOptions{})
	data := readAuditSince(t, k.AuditLog, offset, marker)

	for _, level := range []string{"RequestResponse", "Request"} {
		t.Run(level, func(t *testing.T) {
			checkGroundPatches(t, data, k.AuditLog, level, ns, sfx, patches)
		})
	}
}

// groundPatches are the patches TestRealAPIServerPatchForms sends, of
// objects in namespace ns or named with the suffix sfx; sysRole is the
// system: ClusterRole among them, which the system: binding refers to.
func groundPatches(t testing.TB, ns, sfx, sysRole string) []groundPatch {
	marshal := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	sysBinding := "system:ks-patch-binding-" + sfx
	role := func(form string) string { return "ks-patch-" + form + "-" + sfx }

	// Deployments: every form makes the container privileged, and every
	// benign patch of the same form leaves it alone.
	deployApply := func(name string, priv bool) []byte {
		c := map[string]any{"name": "c", "image": groundImage}
		if priv {
			c["securityContext"] = map[string]any{"privileged": true}
		}
		labels := map[string]any{"app": name}
		return marshal(map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{"containers": []any{c}}}},
		})
	}
	roleApply := func(name string, rules ...rbacv1.PolicyRule) []byte {
		return marshal(map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": name}, "rules": rules})
	}
	priv := []string{"privileged-container"}
	roleRules := []string{"role-patch-adds-grant", "role-wildcard-verbs", "role-wildcard-resources",
		"role-secrets-access", "role-escalate-bind-impersonate"}
	wide := func(content string) (want, quiet []string) {
		want = []string{"role-patch-adds-grant", content}
		for _, r := range roleRules {
			if !slices.Contains(want, r) {
				quiet = append(quiet, r)
			}
		}
		return want, append(quiet, "builtin-cluster-role-changed")
	}
	jsonWant, jsonQuiet := wide("role-wildcard-verbs")
	mergeWant, mergeQuiet := wide("role-secrets-access")
	smpWant, smpQuiet := wide("role-escalate-bind-impersonate")
	applyWant, applyQuiet := wide("role-escalate-bind-impersonate")
	benignRole := append(slices.Clone(roleRules), "builtin-cluster-role-changed")
	return []groundPatch{
		{"deployment", "json", types.JSONPatchType,
			[]byte(`[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]`), priv, nil},
		{"deployment", "merge", types.MergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"` + groundImage + `","securityContext":{"privileged":true}}]}}}}`), priv, nil},
		{"deployment", "strategic", types.StrategicMergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}`), priv, nil},
		{"deployment", "apply", types.ApplyPatchType, deployApply("apply", true), priv, nil},
		{"deployment", "json-benign", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":2}]`), nil, priv},
		{"deployment", "merge-benign", types.MergePatchType, []byte(`{"metadata":{"annotations":{"team":"a"}}}`), nil, priv},
		{"deployment", "strategic-benign", types.StrategicMergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"docker.io/library/busybox:1.37"}]}}}}`), nil, priv},
		{"deployment", "apply-benign", types.ApplyPatchType, deployApply("apply-benign", false), nil, priv},

		// ClusterRoles, each created granting get on pods.
		{"clusterrole", role("json"), types.JSONPatchType, []byte(`[{"op":"add","path":"/rules/0/verbs/-","value":"*"}]`), jsonWant, jsonQuiet},
		{"clusterrole", role("merge"), types.MergePatchType,
			[]byte(`{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]}]}`),
			mergeWant, mergeQuiet},
		{"clusterrole", role("strategic"), types.StrategicMergePatchType,
			[]byte(`{"rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["escalate","bind"]}]}`),
			smpWant, smpQuiet},
		{"clusterrole", role("apply"), types.ApplyPatchType,
			roleApply(role("apply"), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}}),
			applyWant, applyQuiet},
		{"clusterrole", role("json-benign"), types.JSONPatchType, []byte(`[{"op":"add","path":"/rules/0/verbs/-","value":"list"}]`), nil, benignRole},
		{"clusterrole", role("merge-benign"), types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"a"}}}`), nil, benignRole},
		{"clusterrole", role("strategic-benign"), types.StrategicMergePatchType,
			[]byte(`{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","watch"]}]}`), nil, benignRole},
		{"clusterrole", role("apply-benign"), types.ApplyPatchType,
			roleApply(role("apply-benign"), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}),
			nil, benignRole},

		// A built-in-looking ClusterRole rewritten to grant everything, and
		// a built-in-looking binding given a new subject.
		{"clusterrole", sysRole, types.JSONPatchType,
			[]byte(`[{"op":"replace","path":"/rules","value":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}]`),
			[]string{"builtin-cluster-role-changed", "role-patch-adds-grant", "role-wildcard-verbs", "role-wildcard-resources"},
			[]string{"system-role-modified"}},
		{"clusterrolebinding", sysBinding, types.MergePatchType,
			[]byte(`{"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"ks-patch-mallory"}]}`),
			[]string{"builtin-cluster-role-changed"}, []string{"system-role-modified"}},
	}
}

// createBase creates the object a patch changes; an apply patch of a
// Deployment creates its own.
func createBase(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, sysRole string, p groundPatch) {
	t.Helper()
	var err error
	switch p.kind {
	case "deployment":
		if p.typ == types.ApplyPatchType {
			return
		}
		labels := map[string]string{"app": p.name}
		_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: groundImage}}},
			}},
		}, metav1.CreateOptions{})
	case "clusterrole":
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: p.name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	case "clusterrolebinding":
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: p.name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: sysRole},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "ks-patch-nobody"}}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("create %s %s: %v", p.kind, p.name, err)
	}
}

// checkGroundPatches evaluates the audited records of the test's objects
// at one audit level and checks, for every patch, the patch form read off
// its record, where its effective object came from, and the rules that
// alerted on it.
func checkGroundPatches(t *testing.T, data []byte, file, level, ns, sfx string, patches []groundPatch) {
	recs, errs := record.DecodeAll(data, file, record.DecodeOptions{Cluster: record.Cluster{Name: "ground"}})
	if len(errs) > 0 {
		t.Fatalf("decode: %v", errs[0])
	}
	eng, err := New(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		eff   *record.Effective
		rules map[string]bool
	}
	got := map[string]*seen{} // object name -> its patch
	for _, r := range recs {
		a := r.Audit
		if a == nil || a.ObjectRef == nil || (a.ObjectRef.Namespace != ns && !strings.HasSuffix(a.ObjectRef.Name, sfx)) {
			continue
		}
		if level == "Request" {
			a.ResponseObject = nil
		}
		alerts := eng.Eval(r)
		if a.Verb != "patch" {
			continue
		}
		eff, err := record.EffectiveOf(a, nil)
		if err != nil {
			t.Errorf("effective object of the patch of %s: %v", a.ObjectRef.Name, err)
		}
		s := &seen{eff: eff, rules: map[string]bool{}}
		for _, al := range alerts {
			s.rules[al.RuleID] = true
		}
		got[a.ObjectRef.Name] = s
	}
	for _, p := range patches {
		s := got[p.name]
		if s == nil || s.eff == nil {
			t.Errorf("no audited patch of %s %s with an effective object", p.kind, p.name)
			continue
		}
		wantFrom := record.EffectiveResponse
		if level == "Request" {
			wantFrom = record.EffectivePartial
			if p.typ == types.ApplyPatchType {
				wantFrom = record.EffectiveRequest
			}
		}
		if s.eff.Form != formOf(p.typ) || s.eff.From != wantFrom {
			t.Errorf("%s %s (%s patch): read as a %s patch judged on the %s object, want %s on %s",
				p.kind, p.name, p.typ, s.eff.Form, s.eff.From, formOf(p.typ), wantFrom)
		}
		for _, id := range p.want {
			if !s.rules[id] {
				t.Errorf("%s did not alert on the %s patch of %s %s (alerts: %v)", id, p.typ, p.kind, p.name, s.rules)
			}
		}
		for _, id := range p.quiet {
			if s.rules[id] {
				t.Errorf("%s alerted on the %s patch of %s %s", id, p.typ, p.kind, p.name)
			}
		}
	}
}
