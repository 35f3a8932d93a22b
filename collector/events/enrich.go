package events

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Enrichment annotations set on the shipped copy of an Event about a Pod.
// The first three are the ones the rules read (rules.AnnotationNode, …; a
// test keeps them equal without making the collector import the rules
// engine).
const (
	AnnotationNode      = "kubesift.io/node"
	AnnotationOwnerKind = "kubesift.io/owner-kind"
	AnnotationOwnerName = "kubesift.io/owner-name"
	// AnnotationPodLabels holds the selected Pod labels as a JSON object
	// (label keys may contain "/", so one annotation per label would not
	// always be a valid annotation key).
	AnnotationPodLabels = "kubesift.io/pod-labels"
)

// podIndex looks Pods up in the Pod informers' caches.
type podIndex struct {
	byNamespace map[string]cache.Indexer // "" = all namespaces
	m           *metrics
}

// podTransform keeps in the Pod cache only what enrichment uses: a cluster's
// Pods would otherwise cost far more memory than its Events. It must be
// idempotent (client-go may apply it to an already transformed object).
func podTransform(labels []string) cache.TransformFunc {
	return func(obj any) (any, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		var keep map[string]string
		for _, k := range labels {
			if v, ok := p.Labels[k]; ok {
				if keep == nil {
					keep = make(map[string]string, len(labels))
				}
				keep[k] = v
			}
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
				Labels: keep, OwnerReferences: p.OwnerReferences,
			},
			Spec: corev1.PodSpec{NodeName: p.Spec.NodeName},
		}, nil
	}
}

// annotations returns the enrichment for an Event about the Pod
// namespace/name (uid may be empty), or nil when the Pod is not cached or is
// another Pod of the same name.
func (x *podIndex) annotations(namespace, name string, uid types.UID) map[string]string {
	idx, ok := x.byNamespace[namespace]
	if !ok {
		idx, ok = x.byNamespace[""]
	}
	if !ok {
		return nil
	}
	obj, exists, err := idx.GetByKey(namespace + "/" + name)
	p, isPod := obj.(*corev1.Pod)
	if err != nil || !exists || !isPod || (uid != "" && p.UID != uid) {
		x.m.enrich.WithLabelValues(enrichMiss).Inc()
		return nil
	}
	x.m.enrich.WithLabelValues(enrichHit).Inc()
	a := map[string]string{}
	if p.Spec.NodeName != "" {
		a[AnnotationNode] = p.Spec.NodeName
	}
	if o := owner(p.OwnerReferences); o != nil {
		a[AnnotationOwnerKind], a[AnnotationOwnerName] = o.Kind, o.Name
	}
	if len(p.Labels) > 0 {
		b, _ := json.Marshal(p.Labels) // map[string]string: cannot fail
		a[AnnotationPodLabels] = string(b)
	}
	return a
}

// owner is the controller owner reference, else the first one.
func owner(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// addAnnotations merges a into an Event copy's annotations.
func addAnnotations(dst *map[string]string, a map[string]string) {
	if len(a) == 0 {
		return
	}
	if *dst == nil {
		*dst = make(map[string]string, len(a))
	}
	for k, v := range a {
		(*dst)[k] = v
	}
}
