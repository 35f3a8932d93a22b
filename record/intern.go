package record

// common holds strings nearly every audit event repeats: API versions,
// levels, stages, verbs, the resources and groups kube-apiserver names most,
// the authorization annotations and their values. The decoder hands out
// these shared copies instead of allocating one per event (see intern);
// the table never changes, so readers need no lock.
var common = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"Event", "audit.k8s.io/v1", "audit.k8s.io/v1beta1", "v1",
		"None", "Metadata", "Request", "RequestResponse",
		"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic",
		"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy",
		"pods", "configmaps", "secrets", "namespaces", "services", "endpoints", "events", "nodes",
		"serviceaccounts", "deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs",
		"leases", "endpointslices", "roles", "rolebindings", "clusterroles", "clusterrolebindings",
		"customresourcedefinitions", "persistentvolumeclaims", "persistentvolumes", "limitranges",
		"resourcequotas", "networkpolicies", "ingresses", "tokenreviews", "subjectaccessreviews",
		"selfsubjectaccessreviews", "selfsubjectrulesreviews", "status", "log", "exec", "attach",
		"portforward", "token", "binding", "eviction", "scale",
		"apps", "batch", "rbac.authorization.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
		"networking.k8s.io", "policy", "authentication.k8s.io", "authorization.k8s.io",
		"apiextensions.k8s.io", "admissionregistration.k8s.io", "storage.k8s.io", "events.k8s.io",
		"default", "kube-system", "kube-public", "kube-node-lease",
		"system:authenticated", "system:unauthenticated", "system:masters", "system:nodes",
		"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:anonymous",
		"system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
		"authorization.k8s.io/decision", "authorization.k8s.io/reason", "allow", "forbid",
		"pod-security.kubernetes.io/enforce-policy", "pod-security.kubernetes.io/audit-violations",
		"Success", "Failure", "NotFound", "AlreadyExists", "Conflict", "Forbidden", "Unauthorized", "Invalid",
	} {
		m[s] = s
	}
	return m
}()

// intern returns b as a string, the shared copy when it is a common one.
// The lookup does not allocate; a miss costs a hash of b.
func intern(b []byte) string {
	if s, ok := common[string(b)]; ok {
		return s
	}
	return string(b)
}
