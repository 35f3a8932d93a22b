package record

import (
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// knownKind is a built-in kind whose Go type gives the strategic merge
// patch its list semantics (containers merge by name, not replace).
type knownKind struct {
	kind, apiVersion string
	schema           strategicpatch.LookupPatchMeta
}

// knownKinds are the kinds the built-in rules judge, by "group/resource".
// Other kinds (custom resources among them) take merge-patch semantics, as
// the API server gives them.
var knownKinds = map[string]knownKind{}

// byResource indexes knownKinds by resource alone (see lookupKind).
var byResource = map[string]knownKind{}

func init() {
	for gr, v := range map[string]struct {
		kind, apiVersion string
		obj              any
	}{
		"/pods":                                  {"Pod", "v1", &corev1.Pod{}},
		"/podtemplates":                          {"PodTemplate", "v1", &corev1.PodTemplate{}},
		"/replicationcontrollers":                {"ReplicationController", "v1", &corev1.ReplicationController{}},
		"/services":                              {"Service", "v1", &corev1.Service{}},
		"/configmaps":                            {"ConfigMap", "v1", &corev1.ConfigMap{}},
		"/secrets":                               {"Secret", "v1", &corev1.Secret{}},
		"/serviceaccounts":                       {"ServiceAccount", "v1", &corev1.ServiceAccount{}},
		"/namespaces":                            {"Namespace", "v1", &corev1.Namespace{}},
		"/nodes":                                 {"Node", "v1", &corev1.Node{}},
		"apps/deployments":                       {"Deployment", "apps/v1", &appsv1.Deployment{}},
		"apps/daemonsets":                        {"DaemonSet", "apps/v1", &appsv1.DaemonSet{}},
		"apps/statefulsets":                      {"StatefulSet", "apps/v1", &appsv1.StatefulSet{}},
		"apps/replicasets":                       {"ReplicaSet", "apps/v1", &appsv1.ReplicaSet{}},
		"batch/jobs":                             {"Job", "batch/v1", &batchv1.Job{}},
		"batch/cronjobs":                         {"CronJob", "batch/v1", &batchv1.CronJob{}},
		"networking.k8s.io/networkpolicies":      {"NetworkPolicy", "networking.k8s.io/v1", &networkingv1.NetworkPolicy{}},
		"rbac.authorization.k8s.io/roles":        {"Role", "rbac.authorization.k8s.io/v1", &rbacv1.Role{}},
		"rbac.authorization.k8s.io/clusterroles": {"ClusterRole", "rbac.authorization.k8s.io/v1", &rbacv1.ClusterRole{}},
		"rbac.authorization.k8s.io/rolebindings": {"RoleBinding", "rbac.authorization.k8s.io/v1", &rbacv1.RoleBinding{}},
		"rbac.authorization.k8s.io/clusterrolebindings": {"ClusterRoleBinding", "rbac.authorization.k8s.io/v1", &rbacv1.ClusterRoleBinding{}},
		"admissionregistration.k8s.io/mutatingwebhookconfigurations": {"MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1",
			&admissionregistrationv1.MutatingWebhookConfiguration{}},
		"admissionregistration.k8s.io/validatingwebhookconfigurations": {"ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1",
			&admissionregistrationv1.ValidatingWebhookConfiguration{}},
	} {
		schema, err := strategicpatch.NewPatchMetaFromStruct(v.obj)
		if err != nil {
			panic(fmt.Sprintf("record: strategic patch schema of %s: %v", v.kind, err))
		}
		kk := knownKind{kind: v.kind, apiVersion: v.apiVersion, schema: schema}
		knownKinds[gr] = kk
		byResource[gr[strings.IndexByte(gr, '/')+1:]] = kk
	}
}

// lookupKind finds the kind an audit event writes. Only the object itself
// and the subresources whose body is that object (status, and a pod's
// ephemeralcontainers) qualify: a scale or binding body is another kind.
func lookupKind(ref *auditv1.ObjectReference) (knownKind, bool) {
	if ref == nil {
		return knownKind{}, false
	}
	switch ref.Subresource {
	case "", "status":
	case "ephemeralcontainers":
		if ref.Resource != "pods" || ref.APIGroup != "" {
			return knownKind{}, false
		}
	default:
		return knownKind{}, false
	}
	if kk, ok := knownKinds[ref.APIGroup+"/"+ref.Resource]; ok {
		return kk, true
	}
	if ref.APIGroup == "" {
		// Hand-written records (rule fixtures, converted logs) often leave
		// out the group; the resource names of knownKinds are unambiguous.
		kk, ok := byResource[ref.Resource]
		return kk, ok
	}
	return knownKind{}, false
}

// fill names the kind of an object built from a patch, which rarely carries
// it: the helpers that find a pod spec need it (a CronJob's lies deeper).
func (kk knownKind) fill(obj map[string]any) {
	if _, ok := obj["kind"]; !ok {
		obj["kind"] = kk.kind
	}
	if _, ok := obj["apiVersion"]; !ok {
		obj["apiVersion"] = kk.apiVersion
	}
}

// strategic applies a strategic merge patch. The applier is the API
// server's own; it is run under recover because its input here is a body
// someone sent, not one the API server has validated, and a panic on one
// record must not take the processor down.
func (kk knownKind) strategic(base, patch map[string]any) (out map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("strategic merge patch: %v", p)
		}
	}()
	return strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(base, patch, kk.schema)
}
