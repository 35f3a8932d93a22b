package objects

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
)

// kindInfo is one collected kind and its API.
type kindInfo struct {
	kind       string
	group      string // "" for core
	version    string
	resource   string
	namespaced bool
	// optional kinds are collected only when the API server serves them;
	// otherwise skipped with a logged, counted notice.
	optional bool
}

func (k kindInfo) apiVersion() string {
	if k.group == "" {
		return k.version
	}
	return k.group + "/" + k.version
}

// informer is the factory's typed informer of the kind (ForResource maps
// every built-in resource to its typed informer: objects stay typed, which
// is smaller on the wire and in the cache than unstructured).
func (k kindInfo) informer(f informers.SharedInformerFactory) (cache.SharedIndexInformer, error) {
	gi, err := f.ForResource(schema.GroupVersionResource{Group: k.group, Version: k.version, Resource: k.resource})
	if err != nil {
		return nil, fmt.Errorf("objects: %s: %w", k.kind, err)
	}
	return gi.Informer(), nil
}

// kinds are the collected kinds, by kind name; config.ObjectKinds lists the
// same names (a test keeps the two equal). Secrets are not among them, and
// nothing here may add them: the collector has no read on Secrets.
var kinds = map[string]kindInfo{
	"Namespace":                      {group: "", version: "v1", resource: "namespaces"},
	"Pod":                            {group: "", version: "v1", resource: "pods", namespaced: true},
	"Service":                        {group: "", version: "v1", resource: "services", namespaced: true},
	"ServiceAccount":                 {group: "", version: "v1", resource: "serviceaccounts", namespaced: true},
	"Node":                           {group: "", version: "v1", resource: "nodes"},
	"Deployment":                     {group: "apps", version: "v1", resource: "deployments", namespaced: true},
	"StatefulSet":                    {group: "apps", version: "v1", resource: "statefulsets", namespaced: true},
	"DaemonSet":                      {group: "apps", version: "v1", resource: "daemonsets", namespaced: true},
	"Job":                            {group: "batch", version: "v1", resource: "jobs", namespaced: true},
	"CronJob":                        {group: "batch", version: "v1", resource: "cronjobs", namespaced: true},
	"Ingress":                        {group: "networking.k8s.io", version: "v1", resource: "ingresses", namespaced: true},
	"NetworkPolicy":                  {group: "networking.k8s.io", version: "v1", resource: "networkpolicies", namespaced: true},
	"Role":                           {group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", namespaced: true},
	"ClusterRole":                    {group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles"},
	"RoleBinding":                    {group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", namespaced: true},
	"ClusterRoleBinding":             {group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings"},
	"MutatingWebhookConfiguration":   {group: "admissionregistration.k8s.io", version: "v1", resource: "mutatingwebhookconfigurations"},
	"ValidatingWebhookConfiguration": {group: "admissionregistration.k8s.io", version: "v1", resource: "validatingwebhookconfigurations"},
	// GA since Kubernetes 1.30; older API servers do not serve it.
	"ValidatingAdmissionPolicy": {group: "admissionregistration.k8s.io", version: "v1", resource: "validatingadmissionpolicies", optional: true},
}

func init() {
	for name, k := range kinds {
		k.kind = name
		kinds[name] = k
	}
}

// transform prepares an object before the informer caches it, so that the
// cache holds exactly what is published and the worker never copies or
// edits a cached object: apiVersion and kind set (typed informers strip
// them), managedFields dropped (bulky, and a change of field manager alone
// is no change of the object), and a Node's heartbeat times cleared
// (stripNodeNoise). It is idempotent, as client-go requires.
func transform(obj any) (any, error) {
	ro, ok := obj.(runtime.Object)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown: its object was transformed when cached
	}
	m, err := meta.Accessor(ro)
	if err != nil {
		return obj, nil
	}
	if ro.GetObjectKind().GroupVersionKind().Kind == "" {
		gvks, _, err := scheme.Scheme.ObjectKinds(ro)
		if err != nil || len(gvks) == 0 {
			return nil, fmt.Errorf("objects: no API kind for %T: %w", obj, err)
		}
		ro.GetObjectKind().SetGroupVersionKind(gvks[0])
	}
	m.SetManagedFields(nil)
	if n, ok := obj.(*corev1.Node); ok {
		stripNodeNoise(n)
	}
	return obj, nil
}

// stripNodeNoise clears what the kubelet rewrites on every status report
// without a change of the Node: the lastHeartbeatTime of each condition.
// lastTransitionTime stays (it moves only when a condition changes), and so
// do images, volumes and addresses (they change when the Node does). With
// the heartbeat cleared, a report that changed nothing yields an object
// equal to the previous one but for resourceVersion, which the worker does
// not publish (skipped_total{reason="unchanged"}).
func stripNodeNoise(n *corev1.Node) {
	for i := range n.Status.Conditions {
		n.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
	}
}

// Resource returns the API group ("" for core) and resource (the plural)
// of a collected kind, as audit records name them in objectRef; ok is
// false for a kind this source does not collect.
func Resource(kind string) (group, resource string, ok bool) {
	k, ok := kinds[kind]
	return k.group, k.resource, ok
}
