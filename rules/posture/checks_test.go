package posture

import (
	"strings"
	"testing"
)

// change is a mutation of one fixture object.
type change struct {
	path string
	v    any
}

// checkCase is one row of TestChecks.
type checkCase struct {
	name    string
	check   string
	base    string   // fixture to change (default: goodDeployment)
	changes []change // applied to base
	extra   []string // objects added to the inventory
	uid     string   // object judged (default: the Deployment)
	fail    bool
	// prep readies the engine before the inventory is judged (the clock,
	// RBAC usage).
	prep func(e *Engine)
	// message, when set, is a part the failing finding's message must hold.
	message string
}

// TestChecks plants one violation per case into the compliant shop (or adds
// objects beside it) and checks that exactly the judged object fails the
// check, while its look-alike does not. Every built-in check has
// at least one failing and one passing case (TestChecksAllCovered).
func TestChecks(t *testing.T) {
	const c = "k"
	const dep = "uid-deployment-shop-web"
	cases := []checkCase{
		{name: "privileged", check: "posture-privileged-container", changes: []change{{"spec.template.spec.containers.0.securityContext.privileged", true}}, fail: true},
		{name: "privileged false", check: "posture-privileged-container", changes: []change{{"spec.template.spec.containers.0.securityContext.privileged", false}}},
		{name: "privileged init container", check: "posture-privileged-container", changes: []change{{"spec.template.spec.initContainers", []any{map[string]any{"name": "init", "image": "registry.k8s.io/i:1", "securityContext": map[string]any{"privileged": true}}}}}, fail: true},
		{name: "hostPID", check: "posture-host-pid", changes: []change{{"spec.template.spec.hostPID", true}}, fail: true},
		{name: "hostPID false", check: "posture-host-pid", changes: []change{{"spec.template.spec.hostPID", false}}},
		{name: "hostIPC", check: "posture-host-ipc", changes: []change{{"spec.template.spec.hostIPC", true}}, fail: true},
		{name: "hostIPC false", check: "posture-host-ipc", changes: []change{{"spec.template.spec.hostIPC", false}}},
		{name: "hostNetwork", check: "posture-host-network", changes: []change{{"spec.template.spec.hostNetwork", true}}, fail: true},
		{name: "hostNetwork false", check: "posture-host-network", changes: []change{{"spec.template.spec.hostNetwork", false}}},
		{name: "allowPrivilegeEscalation true", check: "posture-privilege-escalation", changes: []change{{"spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation", true}}, fail: true},
		{name: "allowPrivilegeEscalation unset", check: "posture-privilege-escalation", changes: []change{{"spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation", nil}}, fail: true},
		{name: "allowPrivilegeEscalation false", check: "posture-privilege-escalation"},
		{name: "root", check: "posture-root-container", changes: []change{{"spec.template.spec.securityContext.runAsNonRoot", false}, {"spec.template.spec.securityContext.runAsUser", 0}}, fail: true},
		{name: "root unset", check: "posture-root-container", changes: []change{{"spec.template.spec.securityContext", map[string]any{}}}, fail: true},
		{name: "non-root by container runAsUser", check: "posture-root-container", changes: []change{{"spec.template.spec.securityContext", map[string]any{}}, {"spec.template.spec.containers.0.securityContext.runAsUser", 1000}}},
		{name: "NET_RAW kept", check: "posture-net-raw", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.drop", []any{}}}, fail: true},
		{name: "NET_RAW added", check: "posture-net-raw", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.add", []any{"NET_RAW"}}}, fail: true},
		{name: "NET_RAW dropped", check: "posture-net-raw", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.drop", []any{"NET_RAW"}}}},
		{name: "SYS_ADMIN added", check: "posture-added-capabilities", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.add", []any{"SYS_ADMIN"}}}, fail: true},
		{name: "NET_BIND_SERVICE added", check: "posture-added-capabilities", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.add", []any{"NET_BIND_SERVICE"}}}},
		{name: "capabilities not dropped", check: "posture-capabilities-not-dropped", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.drop", []any{"NET_RAW"}}}, fail: true},
		{name: "all dropped lower-case", check: "posture-capabilities-not-dropped", changes: []change{{"spec.template.spec.containers.0.securityContext.capabilities.drop", []any{"all"}}}},
		{name: "HostProcess", check: "posture-windows-host-process", changes: []change{{"spec.template.spec.securityContext.windowsOptions.hostProcess", true}}, fail: true},
		{name: "HostProcess false", check: "posture-windows-host-process", changes: []change{{"spec.template.spec.securityContext.windowsOptions.hostProcess", false}}},
		{name: "hostPath", check: "posture-host-path", changes: []change{{"spec.template.spec.volumes", []any{map[string]any{"name": "h", "hostPath": map[string]any{"path": "/"}}}}}, fail: true},
		{name: "emptyDir", check: "posture-host-path", changes: []change{{"spec.template.spec.volumes", []any{map[string]any{"name": "e", "emptyDir": map[string]any{}}}}}},
		{name: "hostPort", check: "posture-host-ports", changes: []change{{"spec.template.spec.containers.0.ports.0.hostPort", 8080}}, fail: true},
		{name: "containerPort only", check: "posture-host-ports"},
		{name: "secret env", check: "posture-secret-env", changes: []change{{"spec.template.spec.containers.0.env", []any{map[string]any{"name": "P", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "s", "key": "k"}}}}}}, fail: true},
		{name: "secret envFrom", check: "posture-secret-env", changes: []change{{"spec.template.spec.containers.0.envFrom", []any{map[string]any{"secretRef": map[string]any{"name": "s"}}}}}, fail: true},
		{name: "configmap env", check: "posture-secret-env", changes: []change{{"spec.template.spec.containers.0.env", []any{map[string]any{"name": "P", "valueFrom": map[string]any{"configMapKeyRef": map[string]any{"name": "c", "key": "k"}}}}}}},
		{name: "seccomp unconfined", check: "posture-seccomp-unconfined", changes: []change{{"spec.template.spec.securityContext.seccompProfile.type", "Unconfined"}}, fail: true},
		{name: "seccomp on the container", check: "posture-seccomp-unconfined", changes: []change{{"spec.template.spec.securityContext.seccompProfile", nil}, {"spec.template.spec.containers.0.securityContext.seccompProfile.type", "RuntimeDefault"}}},
		{name: "no securityContext", check: "posture-no-security-context", changes: []change{{"spec.template.spec.securityContext", nil}, {"spec.template.spec.containers.0.securityContext", nil}}, fail: true},
		{name: "container securityContext only", check: "posture-no-security-context", changes: []change{{"spec.template.spec.securityContext", nil}}},
		{name: "default namespace", check: "posture-default-namespace", changes: []change{{"metadata.namespace", "default"}}, uid: "uid-deployment-default-web", fail: true},
		{name: "namespace named like default", check: "posture-default-namespace", changes: []change{{"metadata.namespace", "default-apps"}}, uid: "uid-deployment-default-apps-web"},
		{name: "unapproved registry", check: "posture-unapproved-registry", changes: []change{{"spec.template.spec.containers.0.image", "evil.example.com/app:1"}}, fail: true},
		{name: "approved registry, no host means docker.io", check: "posture-unapproved-registry", changes: []change{{"spec.template.spec.containers.0.image", "nginx:1.27"}}},
		{name: "untagged image", check: "posture-mutable-image-tag", changes: []change{{"spec.template.spec.containers.0.image", "nginx"}}, fail: true},
		{name: "latest tag", check: "posture-mutable-image-tag", changes: []change{{"spec.template.spec.containers.0.image", "ghcr.io/acme/app:latest"}}, fail: true},
		{name: "latest pinned by digest", check: "posture-mutable-image-tag", changes: []change{{"spec.template.spec.containers.0.image", "nginx:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000"}}},
		{name: "no limits", check: "posture-no-resource-limits", changes: []change{{"spec.template.spec.containers.0.resources", nil}}, fail: true},
		{name: "memory limit only", check: "posture-no-resource-limits", changes: []change{{"spec.template.spec.containers.0.resources.limits.cpu", nil}}, fail: true},
		{name: "limits", check: "posture-no-resource-limits"},
		// 5.1.6 reads the ServiceAccount through the inventory: the pod
		// spec's setting wins, else the account's.
		{name: "token automounted", check: "posture-sa-token-automount", changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}},
			extra: []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}"}, fail: true},
		{name: "token off on the service account", check: "posture-sa-token-automount", changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}}},
		{name: "empty serviceAccountName means default", check: "posture-sa-token-automount",
			changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}, {"spec.template.spec.serviceAccountName", ""}},
			extra:   []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}"}, fail: true},
		{name: "unused token: the SA has no binding", check: "posture-sa-token-unused", changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}},
			extra: []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}", discoveryRole, discoveryBinding}, fail: true},
		{name: "token of an SA with a Role", check: "posture-sa-token-unused", changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}},
			extra: []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}", discoveryRole, discoveryBinding, `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: config-reader, namespace: shop}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]`, `
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-config, namespace: shop}
roleRef: {kind: Role, name: config-reader}
subjects: [{kind: ServiceAccount, name: web}]`}},
		{name: "token of an SA whose namespace group is bound", check: "posture-sa-token-unused", changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}},
			extra: []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop}", discoveryRole, discoveryBinding, `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: shop-sas-view}
roleRef: {kind: ClusterRole, name: system:discovery}
subjects: [{kind: Group, name: "system:serviceaccounts:shop"}]`}},
		{name: "unused token turned off", check: "posture-sa-token-unused"},
		// 5.1.5 on the workload: running as default is using it only when
		// the token is mounted.
		{name: "runs as default with its token", check: "posture-default-sa-used",
			changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}, {"spec.template.spec.serviceAccountName", nil}}, fail: true},
		{name: "runs as default with the token off in the pod spec", check: "posture-default-sa-used",
			changes: []change{{"spec.template.spec.serviceAccountName", nil}}},
		{name: "runs as default whose account turns the token off", check: "posture-default-sa-used",
			changes: []change{{"spec.template.spec.automountServiceAccountToken", nil}, {"spec.template.spec.serviceAccountName", "default"}},
			extra:   []string{"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}\nautomountServiceAccountToken: false"}},
		{name: "own service account with its token", check: "posture-default-sa-used", changes: []change{{"spec.template.spec.automountServiceAccountToken", true}}},
		// 5.2.1 is reported on kube-system; the shop namespace enforces
		// restricted unless a case takes its labels away.
		{name: "no policy control", check: "posture-no-policy-control", base: goodNamespace, changes: []change{{"metadata.labels", map[string]any{}}},
			extra: []string{kubeSystem}, uid: kubeSystemUID, fail: true},
		{name: "only a privileged Pod Security level", check: "posture-no-policy-control", base: goodNamespace,
			changes: []change{{"metadata.labels", map[string]any{"pod-security.kubernetes.io/enforce": "privileged"}}},
			extra:   []string{kubeSystem}, uid: kubeSystemUID, fail: true},
		{name: "a validating webhook without webhooks", check: "posture-no-policy-control", base: goodNamespace, changes: []change{{"metadata.labels", map[string]any{}}},
			extra: []string{kubeSystem, "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: empty}"}, uid: kubeSystemUID, fail: true},
		{name: "a namespace enforces restricted", check: "posture-no-policy-control", base: goodNamespace, extra: []string{kubeSystem}, uid: kubeSystemUID},
		{name: "a validating webhook", check: "posture-no-policy-control", base: goodNamespace, changes: []change{{"metadata.labels", map[string]any{}}},
			extra: []string{kubeSystem, validatingWebhook}, uid: kubeSystemUID},
		{name: "a validating admission policy", check: "posture-no-policy-control", base: goodNamespace, changes: []change{{"metadata.labels", map[string]any{}}},
			extra: []string{kubeSystem, "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: no-privileged}\nspec: {validations: [{expression: 'true'}]}"}, uid: kubeSystemUID},
		{name: "workload SA bound to cluster-admin", check: "posture-workload-cluster-admin-sa", extra: []string{`
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: web-admin}
roleRef: {kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]`}, fail: true},
		{name: "workload SA admin in its namespace only", check: "posture-workload-cluster-admin-sa", extra: []string{`
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-admin, namespace: shop}
roleRef: {kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: web}]`}},

		// Contract: exemptions, owned Pods, mirror Pods.
		{name: "CNI DaemonSet in kube-system exempt", check: "posture-privileged-container", base: calicoNode, uid: "uid-daemonset-kube-system-calico-node"},
		{name: "CNI look-alike in another namespace", check: "posture-privileged-container", base: calicoNode,
			changes: []change{{"metadata.namespace", "tools"}}, uid: "uid-daemonset-tools-calico-node", fail: true},
		{name: "CNI with a foreign sidecar", check: "posture-privileged-container", base: calicoNode,
			changes: []change{{"spec.template.spec.containers.1.image", "evil.example.com/tool:1"}}, uid: "uid-daemonset-kube-system-calico-node", fail: true},
		{name: "bare privileged Pod", check: "posture-privileged-container", base: privilegedPod, uid: "uid-pod-shop-debug", fail: true},
		{name: "privileged Pod owned by a ReplicaSet", check: "posture-privileged-container", base: privilegedPod,
			changes: []change{{"metadata.ownerReferences", []any{map[string]any{"kind": "ReplicaSet", "name": "web-1", "controller": true}}}}, uid: "uid-pod-shop-debug"},
		{name: "control-plane mirror Pod", check: "posture-host-network", base: mirrorPod, uid: "uid-pod-kube-system-kube-apiserver-cp"},

		// Namespace checks.
		{name: "namespace without NetworkPolicy", check: "posture-namespace-without-network-policy", base: goodNamespace, uid: "uid-namespace--shop-empty", changes: []change{{"metadata.name", "shop-empty"}}, fail: true},
		{name: "namespace with NetworkPolicy", check: "posture-namespace-without-network-policy", base: goodNamespace, uid: "uid-namespace--shop"},
		{name: "namespace with default-deny", check: "posture-namespace-without-default-deny-egress", base: goodNamespace, uid: "uid-namespace--shop"},
		{name: "egress [{}] allows everything", check: "posture-namespace-without-default-deny-egress", base: goodDenyAll,
			changes: []change{{"spec.egress", []any{map[string]any{}}}}, uid: "uid-namespace--shop", fail: true},
		{name: "ingress-only deny", check: "posture-namespace-without-default-deny-egress", base: goodDenyAll,
			changes: []change{{"spec.policyTypes", []any{"Ingress"}}}, uid: "uid-namespace--shop", fail: true},
		{name: "deny selecting some pods", check: "posture-namespace-without-default-deny-egress", base: goodDenyAll,
			changes: []change{{"spec.podSelector.matchLabels.app", "web"}}, uid: "uid-namespace--shop", fail: true},
		{name: "PSA enforce absent", check: "posture-namespace-without-psa-enforce", base: goodNamespace, changes: []change{{"metadata.labels", nil}}, uid: "uid-namespace--shop", fail: true},
		{name: "PSA enforce privileged", check: "posture-namespace-without-psa-enforce", base: goodNamespace, changes: []change{{"metadata.labels", map[string]any{"pod-security.kubernetes.io/enforce": "privileged"}}}, uid: "uid-namespace--shop", fail: true},
		{name: "PSA enforce restricted", check: "posture-namespace-without-psa-enforce", base: goodNamespace, uid: "uid-namespace--shop"},

		// RBAC.
		{name: "binding to cluster-admin", check: "posture-cluster-admin-binding", base: aliceAdmin, uid: "uid-clusterrolebinding--alice-admin", fail: true},
		{name: "built-in system:masters binding", check: "posture-cluster-admin-binding", base: builtinMastersBinding, uid: "uid-clusterrolebinding--cluster-admin"},
		{name: "binding to a look-alike role", check: "posture-cluster-admin-binding", base: aliceAdmin, changes: []change{{"roleRef.name", "cluster-admin-lite"}}, uid: "uid-clusterrolebinding--alice-admin"},
		{name: "system:masters bound", check: "posture-system-masters-binding", base: builtinMastersBinding, changes: []change{{"metadata.labels", nil}}, uid: "uid-clusterrolebinding--cluster-admin", fail: true},
		{name: "built-in system:masters not judged", check: "posture-system-masters-binding", base: builtinMastersBinding, uid: "uid-clusterrolebinding--cluster-admin"},
		{name: "secrets reader", check: "posture-secrets-access", base: secretsReader, uid: "uid-clusterrole--reader", fail: true},
		{name: "configmaps reader", check: "posture-secrets-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"configmaps"}}}, uid: "uid-clusterrole--reader"},
		{name: "secrets through an aggregated ClusterRole", check: "posture-secrets-access", base: aggregator, extra: []string{secretsReader}, uid: "uid-clusterrole--monitoring", fail: true},
		{name: "aggregated ClusterRole whose selector matches nothing", check: "posture-secrets-access", base: aggregator,
			changes: []change{{"aggregationRule.clusterRoleSelectors.0.matchLabels", map[string]any{"other": "true"}}}, extra: []string{secretsReader}, uid: "uid-clusterrole--monitoring"},
		{name: "wildcard verbs", check: "posture-rbac-wildcard", base: secretsReader, changes: []change{{"rules.0.verbs", []any{"*"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "explicit verbs", check: "posture-rbac-wildcard", base: secretsReader, uid: "uid-clusterrole--reader"},
		{name: "pod create", check: "posture-pod-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"pods"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "deployment create", check: "posture-pod-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"deployments"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader"},
		{name: "bind clusterroles", check: "posture-rbac-escalation-verbs", base: secretsReader, changes: []change{{"rules.0.resources", []any{"clusterroles"}}, {"rules.0.verbs", []any{"bind"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "impersonate users", check: "posture-rbac-escalation-verbs", base: secretsReader, changes: []change{{"rules.0.resources", []any{"users"}}, {"rules.0.verbs", []any{"impersonate"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "get clusterroles", check: "posture-rbac-escalation-verbs", base: secretsReader, changes: []change{{"rules.0.resources", []any{"clusterroles"}}}, uid: "uid-clusterrole--reader"},
		{name: "create persistentvolumes", check: "posture-pv-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"persistentvolumes"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "create persistentvolumeclaims", check: "posture-pv-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"persistentvolumeclaims"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader"},
		{name: "get nodes/proxy", check: "posture-node-proxy-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"nodes/proxy"}}, {"rules.0.verbs", []any{"get"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "get nodes", check: "posture-node-proxy-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"nodes"}}, {"rules.0.verbs", []any{"get"}}}, uid: "uid-clusterrole--reader"},
		{name: "update certificatesigningrequests/approval", check: "posture-csr-approval-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"certificatesigningrequests/approval"}}, {"rules.0.verbs", []any{"update"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "update certificatesigningrequests", check: "posture-csr-approval-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"certificatesigningrequests"}}, {"rules.0.verbs", []any{"update"}}}, uid: "uid-clusterrole--reader"},
		// A Role grants nothing on cluster-scoped resources, whatever its rules say.
		{name: "namespaced Role with * on *: nodes/proxy", check: "posture-node-proxy-access", base: namespacedWildcard, uid: "uid-role-shop-everything"},
		{name: "namespaced Role with * on *: persistentvolumes", check: "posture-pv-create-access", base: namespacedWildcard, uid: "uid-role-shop-everything"},
		{name: "namespaced Role with * on *: CSR approval", check: "posture-csr-approval-access", base: namespacedWildcard, uid: "uid-role-shop-everything"},
		{name: "namespaced Role with * on *: webhook configurations", check: "posture-webhook-config-access", base: namespacedWildcard, uid: "uid-role-shop-everything"},
		{name: "namespaced Role with * on *: wildcard", check: "posture-rbac-wildcard", base: namespacedWildcard, uid: "uid-role-shop-everything", fail: true},
		{name: "patch mutatingwebhookconfigurations", check: "posture-webhook-config-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"mutatingwebhookconfigurations"}}, {"rules.0.verbs", []any{"patch"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "get mutatingwebhookconfigurations", check: "posture-webhook-config-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"mutatingwebhookconfigurations"}}, {"rules.0.verbs", []any{"get"}}}, uid: "uid-clusterrole--reader"},
		{name: "create serviceaccounts/token", check: "posture-sa-token-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"serviceaccounts/token"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader", fail: true},
		{name: "create serviceaccounts", check: "posture-sa-token-create-access", base: secretsReader, changes: []change{{"rules.0.resources", []any{"serviceaccounts"}}, {"rules.0.verbs", []any{"create"}}}, uid: "uid-clusterrole--reader"},
		{name: "default SA mounts its token", check: "posture-default-sa-automount", base: goodServiceAccount, changes: []change{{"metadata.name", "default"}, {"automountServiceAccountToken", nil}}, uid: "uid-serviceaccount-shop-default", fail: true},
		{name: "default SA automount off", check: "posture-default-sa-automount", base: goodServiceAccount, changes: []change{{"metadata.name", "default"}}, uid: "uid-serviceaccount-shop-default"},
		{name: "other SA mounts its token", check: "posture-default-sa-automount", base: goodServiceAccount, changes: []change{{"automountServiceAccountToken", nil}}, uid: "uid-serviceaccount-shop-web"},
		{name: "binding to the default SA", check: "posture-default-sa-bound", base: aliceAdmin, changes: []change{{"subjects", []any{map[string]any{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}}}}, uid: "uid-clusterrolebinding--alice-admin", fail: true},
		{name: "binding to a named SA", check: "posture-default-sa-bound", base: aliceAdmin, changes: []change{{"subjects", []any{map[string]any{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}}}}, uid: "uid-clusterrolebinding--alice-admin"},
	}
	cases = append(cases, usageCases()...)
	cases = append(cases, controlPlaneCases()...)
	// The set (and its per-check counters) is shared by the package's
	// tests, some of which feed malformed bodies: count errors from here.
	errorsBefore := map[string]uint64{}
	for _, ch := range New(builtin(t)).cks.checks {
		errorsBefore[ch.rule.ID] = ch.c.Stats().Errors.Load()
	}
	covered := map[string][2]int{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			if base == "" {
				base = goodDeployment
			}
			o := obj(t, base)
			for _, ch := range tc.changes {
				o = with(t, o, ch.path, ch.v)
			}
			o.UID = "uid-" + strings.ToLower(o.Kind) + "-" + o.Namespace + "-" + o.Name
			judged := tc.uid
			if judged == "" {
				judged = dep
			}
			objs := goodShop(t)
			for i := range objs { // the planted object replaces its compliant twin
				if keyOf(&objs[i]) == keyOf(&o) {
					objs = append(objs[:i], objs[i+1:]...)
					break
				}
			}
			objs = append(objs, o)
			for _, x := range tc.extra {
				objs = append(objs, obj(t, x))
			}
			e := New(builtin(t))
			if tc.prep != nil {
				tc.prep(e)
			}
			if _, err := e.Replace(c, objs); err != nil {
				t.Fatal(err)
			}
			got := e.Findings(c)
			if has(got, tc.check, judged) != tc.fail {
				t.Errorf("%s on %s: failed=%v, want %v; findings: %v", tc.check, judged, !tc.fail, tc.fail, ids(got, ""))
			}
			for _, d := range got {
				if tc.message != "" && d.CheckID == tc.check && d.Object.UID == judged && !strings.Contains(d.Message, tc.message) {
					t.Errorf("%s on %s: message %q does not hold %q", tc.check, judged, d.Message, tc.message)
				}
			}
		})
		n := covered[tc.check]
		if tc.fail {
			n[0]++
		} else {
			n[1]++
		}
		covered[tc.check] = n
	}
	// A check that fails at run time counts as passing, so a passing case
	// could pass for the wrong reason: no check may error on any fixture.
	for _, ch := range New(builtin(t)).cks.checks {
		if n := covered[ch.rule.ID]; n[0] == 0 || n[1] == 0 {
			t.Errorf("check %s: %d failing and %d passing case(s); want at least one of each", ch.rule.ID, n[0], n[1])
		}
		if n := ch.c.Stats().Errors.Load() - errorsBefore[ch.rule.ID]; n > 0 {
			t.Errorf("check %s: %d evaluation error(s) on the fixtures", ch.rule.ID, n)
		}
	}
}

const (
	kubeSystem        = "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}"
	kubeSystemUID     = "uid-namespace--kube-system"
	validatingWebhook = `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: policy-engine}
webhooks:
- name: validate.policy.example.com
  clientConfig: {service: {namespace: policy, name: webhook}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [pods]}]
  sideEffects: None
  admissionReviewVersions: [v1]
`
	calicoNode = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      hostNetwork: true
      initContainers:
      - {name: install-cni, image: "docker.io/calico/cni:v3.28.0", securityContext: {privileged: true}}
      containers:
      - {name: calico-node, image: "docker.io/calico/node:v3.28.0", securityContext: {privileged: true}}
      - {name: sidecar, image: "docker.io/calico/node:v3.28.0"}
`
	privilegedPod = `
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: shop}
spec:
  containers:
  - {name: sh, image: "registry.k8s.io/busybox:1.36", securityContext: {privileged: true}}
`
	mirrorPod = `
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver-cp
  namespace: kube-system
  annotations: {kubernetes.io/config.mirror: "0a1b", kubernetes.io/config.source: file}
spec:
  hostNetwork: true
  containers:
  - {name: kube-apiserver, image: "registry.k8s.io/kube-apiserver:v1.31.0"}
`
	// The built-in grant of API discovery to every authenticated identity.
	discoveryRole = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:discovery, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
rules: [{nonResourceURLs: [/api, /apis, /version], verbs: [get]}]
`
	discoveryBinding = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:discovery, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
roleRef: {kind: ClusterRole, name: system:discovery}
subjects: [{kind: Group, name: system:authenticated}]
`
	aliceAdmin = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: alice}]
`
	namespacedWildcard = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: everything, namespace: shop}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
`
	secretsReader = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader, labels: {acme.io/aggregate-to-monitoring: "true"}}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list]}
`
	aggregator = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {acme.io/aggregate-to-monitoring: "true"}
rules: []
`
)
