package rules

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestRealAPIServerAttacksAndBenignWorkload drives the test ground's real
// kube-apiserver through scripted attack steps and a scripted benign
// workload, reads what it audited, evaluates it with the full built-in pack
// and checks that every attack step raised its rules while the benign
// workload raised nothing at medium or above.
//
// Only two static tokens exist (kubesift-admin in system:masters, and
// kubesift-user without grants); other identities (mallory, a workload's
// service account, dev-alice) are the admin with Impersonate-User, which the
// audit log records as user kubesift-admin + impersonatedUser. No kubelet
// runs: pods stay Pending and exec fails, but is audited.
func TestRealAPIServerAttacksAndBenignWorkload(t *testing.T) {
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var (
		attackNS    = "ks-attack-" + sfx
		benignNS    = "ks-benign-" + sfx
		mallory     = "mallory-" + sfx
		alice       = "dev-alice"
		workloadSA  = "system:serviceaccount:" + attackNS + ":web"
		crbName     = "ks-pwn-" + sfx
		backdoor    = "ks-backdoor-" + sfx
		execRole    = "ks-exec-" + sfx
		sysRole     = "system:ks-probe-" + sfx
		anonBinding = "ks-anon-" + sfx
		endMarker   = "ks-end-" + sfx
	)

	cfg := func(token, as string) *rest.Config {
		c := &rest.Config{Host: k.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
			QPS: 1000, Burst: 1000, UserAgent: "kubesift-realapi-test"}
		if as != "" {
			c.Impersonate = rest.ImpersonationConfig{UserName: as}
		}
		return c
	}
	client := func(token, as string) *kubernetes.Clientset {
		c, err := kubernetes.NewForConfig(cfg(token, as))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := client(k.AdminToken, "")
	user := client(k.UserToken, "")
	asMallory := client(k.AdminToken, mallory)
	asSA := client(k.AdminToken, workloadSA)
	asAlice := client(k.AdminToken, alice)
	bogus := client("bogus-token-"+sfx, "")

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Cluster-scoped objects are removed after the evaluation (their deletes
	// are audited after the part of the log under test). Namespaces never
	// finish deleting on the test ground (no namespace controller).
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = admin.RbacV1().ClusterRoleBindings().Delete(c, crbName, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(c, backdoor, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(c, execRole, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(c, sysRole, metav1.DeleteOptions{})
		_ = admin.CoreV1().Namespaces().Delete(c, attackNS, metav1.DeleteOptions{})
		_ = admin.CoreV1().Namespaces().Delete(c, benignNS, metav1.DeleteOptions{})
	})

	// Where the new part of the audit log starts.
	st, err := os.Stat(k.AuditLog)
	must("audit log", err)
	offset := st.Size()

	// ------------------------------------------------------------ attack
	must("namespace", create(ctx, admin.CoreV1().Namespaces(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: attackNS}}))

	// Privileged pod and a pod mounting the node's root file system.
	priv := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "priv"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Image: "docker.io/library/busybox:1.36", Command: []string{"sleep", "3600"},
		SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)},
	}}}}
	must("privileged pod", create(ctx, admin.CoreV1().Pods(attackNS), priv))
	hostPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hostroot"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "docker.io/library/busybox:1.36", Command: []string{"sleep", "3600"},
			VolumeMounts: []corev1.VolumeMount{{Name: "root", MountPath: "/host"}}}},
		Volumes: []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
	}}
	must("hostPath pod", create(ctx, admin.CoreV1().Pods(attackNS), hostPod))

	// exec as the admin: fails (no node) but is audited.
	execErr := execPod(ctx, admin, attackNS, "priv")
	t.Logf("exec as admin: %v", execErr)

	// Roles: full wildcard; exec + secrets + impersonate + nodes/proxy + delete.
	must("wildcard role", create(ctx, admin.RbacV1().ClusterRoles(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: backdoor},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}},
	}))
	must("exec role", create(ctx, admin.RbacV1().ClusterRoles(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: execRole},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"delete"}},
		},
	}))
	// A system:-named role, changed and deleted by a non-system user.
	must("system role", create(ctx, admin.RbacV1().ClusterRoles(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: sysRole},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/version"}, Verbs: []string{"get"}}},
	}))
	_, err = admin.RbacV1().ClusterRoles().Patch(ctx, sysRole, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"kubesift-test":"modified"}}}`), metav1.PatchOptions{})
	must("patch system role", err)
	must("delete system role", admin.RbacV1().ClusterRoles().Delete(ctx, sysRole, metav1.DeleteOptions{}))

	// A binding to the unauthenticated group, then its removal.
	must("anonymous binding", create(ctx, admin.RbacV1().RoleBindings(attackNS), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: anonBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
	}))
	must("delete anonymous binding", admin.RbacV1().RoleBindings(attackNS).Delete(ctx, anonBinding, metav1.DeleteOptions{}))

	// cluster-admin for mallory, then mallory (impersonated) execs.
	must("cluster-admin binding", create(ctx, admin.RbacV1().ClusterRoleBindings(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: crbName},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: mallory}},
	}))
	waitAllowed(ctx, t, admin, mallory, authzv1.ResourceAttributes{Namespace: attackNS, Verb: "create", Resource: "pods", Subresource: "exec"})
	t.Logf("exec as %s: %v", mallory, execPod(ctx, asMallory, attackNS, "priv"))

	// mallory harvests 6 secrets one by one, then deletes them.
	for i := range 6 {
		must("secret", create(ctx, admin.CoreV1().Secrets(attackNS), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("loot-%d", i)}, StringData: map[string]string{"token": "x"}}))
	}
	for i := range 6 {
		_, err := asMallory.CoreV1().Secrets(attackNS).Get(ctx, fmt.Sprintf("loot-%d", i), metav1.GetOptions{})
		must("get secret", err)
	}
	for i := range 6 {
		must("delete secret", asMallory.CoreV1().Secrets(attackNS).Delete(ctx, fmt.Sprintf("loot-%d", i), metav1.DeleteOptions{}))
	}
	// ... and wipes 26 configmaps.
	for i := range 26 {
		must("configmap", create(ctx, admin.CoreV1().ConfigMaps(attackNS), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"k": "v"}}))
	}
	for i := range 26 {
		must("delete configmap", asMallory.CoreV1().ConfigMaps(attackNS).Delete(ctx, fmt.Sprintf("cm-%d", i), metav1.DeleteOptions{}))
	}

	// kubesift-user probes: 15 forbidden requests, among them secrets of all
	// namespaces and of kube-system.
	probes := []func() error{
		func() error { _, err := user.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := user.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		func() error { _, err := user.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := user.CoreV1().Pods(attackNS).List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := user.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := user.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		func() error { _, err := user.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := user.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := user.AppsV1().Deployments("").List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := user.AppsV1().DaemonSets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		func() error { _, err := user.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := user.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
			return err
		},
		func() error {
			_, err := user.CoreV1().Secrets(attackNS).Get(ctx, "loot-0", metav1.GetOptions{})
			return err
		},
		func() error { _, err := user.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := user.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{}); return err },
	}
	for i, p := range probes {
		if err := p(); !apierrors.IsForbidden(err) {
			t.Fatalf("probe %d as kubesift-user: want Forbidden, got %v", i, err)
		}
	}
	// kubectl auth can-i --list, 12 times.
	for range 12 {
		_, err := user.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authzv1.SelfSubjectRulesReview{
			Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: attackNS}}, metav1.CreateOptions{})
		must("selfsubjectrulesreview", err)
	}
	// A workload's service account asks what it may do.
	_, err = asSA.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authzv1.SelfSubjectRulesReview{
		Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: attackNS}}, metav1.CreateOptions{})
	must("selfsubjectrulesreview as a service account", err)
	// The admin acts as the controller manager (impersonating a control-plane
	// identity).
	_, err = client(k.AdminToken, "system:kube-controller-manager").CoreV1().Namespaces().Get(ctx, attackNS, metav1.GetOptions{})
	must("get namespace as system:kube-controller-manager", err)
	// Token guessing: 12 requests with a bogus bearer token.
	for range 12 {
		if _, err := bogus.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
			t.Fatalf("bogus token: want Unauthorized, got %v", err)
		}
	}

	// ------------------------------------------------------------ benign
	// The admin sets up a namespace for dev-alice with the rules of the
	// built-in edit role. ("edit" itself is aggregated by a controller that
	// does not run here, so it has no rules; its parts do.)
	must("benign namespace", create(ctx, admin.CoreV1().Namespaces(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benignNS}}))
	for _, role := range []string{"edit", "system:aggregate-to-edit", "system:aggregate-to-view"} {
		must("dev-alice binding", create(ctx, admin.RbacV1().RoleBindings(benignNS), &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "dev-alice-" + strings.TrimPrefix(strings.ReplaceAll(role, ":", "-"), "system-")},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: alice}},
		}))
	}
	waitAllowed(ctx, t, admin, alice, authzv1.ResourceAttributes{Namespace: benignNS, Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale"})

	must("configmap", create(ctx, asAlice.CoreV1().ConfigMaps(benignNS), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "web-config"}, Data: map[string]string{"LOG_LEVEL": "info", "FEATURE_X": "on"}}))
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "web", Image: "registry.k8s.io/pause:3.10",
						EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			},
		},
	}
	must("deployment", create(ctx, asAlice.AppsV1().Deployments(benignNS), dep))
	sc, err := asAlice.AppsV1().Deployments(benignNS).GetScale(ctx, "web", metav1.GetOptions{})
	must("get scale", err)
	sc.Spec.Replicas = 3
	_, err = asAlice.AppsV1().Deployments(benignNS).UpdateScale(ctx, "web", sc, metav1.UpdateOptions{})
	must("scale", err)
	_, err = asAlice.CoreV1().ConfigMaps(benignNS).List(ctx, metav1.ListOptions{})
	must("list configmaps", err)
	cm, err := asAlice.CoreV1().ConfigMaps(benignNS).Get(ctx, "web-config", metav1.GetOptions{})
	must("get configmap", err)
	cm.Data["LOG_LEVEL"] = "debug"
	_, err = asAlice.CoreV1().ConfigMaps(benignNS).Update(ctx, cm, metav1.UpdateOptions{})
	must("update configmap", err)
	_, err = asAlice.CoreV1().Pods(benignNS).List(ctx, metav1.ListOptions{})
	must("list pods", err)
	_, err = asAlice.AppsV1().Deployments(benignNS).Get(ctx, "web", metav1.GetOptions{})
	must("get deployment", err)
	_, err = asAlice.AppsV1().Deployments(benignNS).List(ctx, metav1.ListOptions{})
	must("list deployments", err)
	_, err = asAlice.CoreV1().Services(benignNS).List(ctx, metav1.ListOptions{})
	must("list services", err)

	// A marker request that ends the part of the log under test.
	_, _ = admin.CoreV1().Namespaces().Get(ctx, endMarker, metav1.GetOptions{})
	data := readAuditSince(t, k.AuditLog, offset, endMarker)

	// ------------------------------------------------------------ evaluate
	eng, err := New(LoadOptions{})
	must("built-in pack", err)
	known := map[string]Rule{}
	for _, r := range eng.Set().Rules() {
		known[r.ID] = r
	}
	recs, errs := record.DecodeAll(data, k.AuditLog, record.DecodeOptions{Cluster: record.Cluster{Name: "testground"}})
	if len(errs) > 0 {
		t.Fatalf("decoding the audit log: %v", errs[0])
	}
	byID := map[string]*record.Record{}
	var alerts []Alert
	for _, r := range recs {
		byID[r.ID] = r
		alerts = append(alerts, eng.Eval(r)...)
	}
	t.Logf("audit records evaluated: %d, alerts: %d", len(recs), len(alerts))

	actor := func(a Alert) string {
		au := byID[a.RecordID].Audit
		if au.ImpersonatedUser != nil && au.ImpersonatedUser.Username != "" {
			return au.ImpersonatedUser.Username
		}
		return au.User.Username
	}
	isBenign := func(a Alert) bool {
		au := byID[a.RecordID].Audit
		ns, name, res := "", "", ""
		if o := au.ObjectRef; o != nil {
			ns, name, res = o.Namespace, o.Name, o.Resource
		}
		return ns == benignNS || (res == "namespaces" && name == benignNS) || actor(a) == alice
	}
	isOurs := func(a Alert) bool {
		au := byID[a.RecordID].Audit
		s := au.RequestURI + " " + a.GroupKey
		return strings.Contains(s, sfx) || actor(a) == "kubesift-user" || au.UserAgent == "kubesift-realapi-test"
	}

	// What fired, for the report.
	type tally struct{ attack, benign, other int }
	fired := map[string]*tally{}
	for _, a := range alerts {
		tl := fired[a.RuleID]
		if tl == nil {
			tl = &tally{}
			fired[a.RuleID] = tl
		}
		switch {
		case isBenign(a):
			tl.benign++
		case isOurs(a):
			tl.attack++
		default:
			tl.other++
		}
	}
	ids := make([]string, 0, len(fired))
	for id := range fired {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		tl := fired[id]
		t.Logf("fired %-34s %-8s attack=%d benign=%d other=%d", id, known[id].Severity, tl.attack, tl.benign, tl.other)
	}

	// ------------------------------------------------------------ attack expectations
	name := func(n string) func(Alert) bool { return func(a Alert) bool { return a.Name == n } }
	group := func(who string) func(Alert) bool {
		return func(a Alert) bool { return a.GroupKey == "testground|"+who }
	}
	in := func(ns string, n string) func(Alert) bool {
		return func(a Alert) bool { return a.Namespace == ns && (n == "" || a.Name == n) }
	}
	type expect struct {
		step  string
		ids   []string // this pack's rule; for the other half, candidate ids (the first that exists)
		mine  bool
		match func(Alert) bool
	}
	expects := []expect{
		{"privileged pod", []string{"privileged-container", "privileged-pod"}, false, in(attackNS, "priv")},
		{"hostPath / pod", []string{"sensitive-host-path-mount", "sensitive-host-path", "sensitive-hostpath-mount", "sensitive-mount", "host-path-mount", "hostpath-volume"}, false, in(attackNS, "hostroot")},
		{"exec as admin", []string{"pod-exec", "exec-attach", "pod-exec-attach", "exec-into-pod", "attach-exec-pod"}, false, in(attackNS, "priv")},
		{"exec as admin", []string{"first-exec-by-user"}, true, group("kubesift-admin")},
		{"impersonating the controller manager", []string{"privileged-impersonation", "impersonation-privileged"}, false, name(attackNS)},
		{"wildcard role", []string{"role-wildcard-verbs"}, true, name(backdoor)},
		{"wildcard role", []string{"role-wildcard-resources"}, true, name(backdoor)},
		{"wildcard role", []string{"role-created"}, true, name(backdoor)},
		{"exec role", []string{"role-pod-exec"}, true, name(execRole)},
		{"exec role", []string{"role-secrets-access"}, true, name(execRole)},
		{"exec role", []string{"role-escalate-bind-impersonate"}, true, name(execRole)},
		{"exec role", []string{"role-nodes-proxy"}, true, name(execRole)},
		{"exec role", []string{"role-write-privileges"}, true, name(execRole)},
		{"system role patched and deleted", []string{"builtin-cluster-role-changed"}, true, name(sysRole)},
		{"system role deleted", []string{"role-deleted"}, true, name(sysRole)},
		{"binding to system:unauthenticated", []string{"binding-to-anonymous"}, true, name(anonBinding)},
		{"binding deleted", []string{"binding-deleted"}, true, name(anonBinding)},
		{"cluster-admin binding", []string{"cluster-admin-binding"}, true, name(crbName)},
		{"cluster-admin binding", []string{"binding-created"}, true, name(crbName)},
		{"cluster-admin then exec", []string{"cluster-admin-then-exec"}, true, group(mallory)},
		{"exec as mallory", []string{"first-exec-by-user"}, true, group(mallory)},
		{"secret harvest", []string{"many-secrets-read"}, true, group(mallory)},
		{"secret deletion", []string{"secret-delete-burst"}, true, group(mallory)},
		{"configmap wipe", []string{"mass-deletion"}, true, group(mallory)},
		{"forbidden probing", []string{"forbidden-burst"}, true, group("kubesift-user")},
		{"secrets of all namespaces", []string{"secrets-listed-cluster-wide"}, true, func(a Alert) bool { return a.User == "kubesift-user" }},
		{"secrets of kube-system", []string{"kube-system-secrets-listed"}, true, func(a Alert) bool { return a.User == "kubesift-user" }},
		{"can-i --list burst", []string{"permission-enumeration"}, true, group("kubesift-user")},
		{"service account can-i --list", []string{"serviceaccount-rules-review"}, true, func(a Alert) bool { return actor(a) == workloadSA }},
		{"bogus tokens", []string{"failed-authentication-burst"}, true, func(a Alert) bool { return strings.HasPrefix(a.GroupKey, "testground|") }},
	}
	for _, e := range expects {
		id := ""
		for _, c := range e.ids {
			if _, ok := known[c]; ok {
				id = c
				break
			}
		}
		t.Run(e.step+"/"+strings.Join(e.ids, "|"), func(t *testing.T) {
			if id == "" {
				if e.mine {
					t.Fatalf("rule %s is not in the built-in pack", e.ids[0])
				}
				t.Skipf("none of the other half's candidate rules %v is in the pack yet", e.ids)
			}
			for _, a := range alerts {
				if a.RuleID == id && e.match(a) {
					return
				}
			}
			t.Errorf("%s: rule %s did not fire", e.step, id)
		})
	}

	// ------------------------------------------------------------ benign expectations
	t.Run("benign workload stays below medium", func(t *testing.T) {
		n := 0
		for _, a := range alerts {
			if !isBenign(a) {
				continue
			}
			n++
			if a.Severity >= SeverityMedium {
				t.Errorf("benign workload raised %s (%s): %s", a.RuleID, a.Severity, a.Message)
			} else {
				t.Logf("benign workload raised %s (%s): %s", a.RuleID, a.Severity, a.Message)
			}
		}
		var benignRecs int
		for _, r := range recs {
			if o := r.Audit.ObjectRef; o != nil && o.Namespace == benignNS {
				benignRecs++
			}
		}
		if benignRecs < 10 {
			t.Errorf("only %d audit records of the benign namespace were found", benignRecs)
		}
	})
}

// create posts obj through any typed client's Create.
func create[T any](ctx context.Context, c interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
}, obj T) error {
	_, err := c.Create(ctx, obj, metav1.CreateOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }

// execPod starts an exec session the way kubectl's SPDY path does (POST to
// the exec subresource). The test ground has no kubelet, so the API server
// answers with an error after authorizing and auditing the request.
func execPod(ctx context.Context, c *kubernetes.Clientset, ns, pod string) error {
	return c.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").
		Param("container", "c").Param("command", "sh").Param("command", "-c").Param("command", "id").
		Param("stdout", "true").Param("stderr", "true").Do(ctx).Error()
}

// waitAllowed polls a SubjectAccessReview (made by the admin, so it is not a
// self review) until RBAC's cache grants who the attributes.
func waitAllowed(ctx context.Context, t *testing.T, admin *kubernetes.Clientset, who string, attrs authzv1.ResourceAttributes) {
	t.Helper()
	testenv.WaitForNil(t, fmt.Sprintf("%s to be allowed %+v", who, attrs), 10*time.Second, func() error {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: who, ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("subjectaccessreview: %v", err)
		}
		if !sar.Status.Allowed {
			return fmt.Errorf("not allowed: %s", sar.Status.Reason)
		}
		return nil
	})
}

// readAuditSince returns the complete lines of the audit log written after
// offset, waiting until the marker request (a get of a namespace named
// marker) has been written.
func readAuditSince(t *testing.T, path string, offset int64, marker string) []byte {
	t.Helper()
	var data []byte
	testenv.WaitFor(t, "the marker request in the audit log "+path, 15*time.Second, func() bool {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		if st.Size() < offset { // rotated meanwhile: the new file holds only what came after
			offset = 0
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		data, err = io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			data = data[:i+1]
		} else {
			data = nil
		}
		return bytes.Contains(data, []byte(`"name":"`+marker+`"`))
	})
	return data
}
