package events

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kubesift/kubesift/internal/config"
)

// Informers: the list/watch of each Event API and namespace (resumed from the
// watermark through resumeLW, listwatch.go) and of Pods for enrichment, and
// the informers built on them.

// informerSet is a session's informers, built and not yet started.
type informerSet struct {
	pods, events             []cache.SharedIndexInformer
	podsSynced, eventsSynced []cache.InformerSynced
}

// buildInformers builds the Pod informers (with enrichment on) and an Event
// informer per API, each for every configured namespace.
func (s *session) buildInformers() (*informerSet, error) {
	cfg := s.c.cfg
	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	infs := &informerSet{}
	if cfg.Enrich.Pods {
		s.pods = &podIndex{byNamespace: map[string]cache.Indexer{}, m: s.c.m}
		for _, ns := range namespaces {
			// Pods keep the streaming watch-list when the client supports it
			// (the fake clientset does not; this wrapper tells the reflector).
			lw := cache.ToListWatcherWithWatchListSemantics(s.podLW(ns), s.c.client)
			inf := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{ObjectDescription: "pods"})
			if err := inf.SetTransform(podTransform(cfg.Enrich.Labels)); err != nil {
				return nil, fmt.Errorf("pod informer: %w", err)
			}
			s.pods.byNamespace[ns] = inf.GetIndexer()
			infs.pods = append(infs.pods, inf)
			infs.podsSynced = append(infs.podsSynced, inf.HasSynced)
		}
	}
	for _, api := range cfg.APIs {
		for _, ns := range namespaces {
			inf, reg, err := s.eventInformer(api, ns)
			if err != nil {
				return nil, err
			}
			infs.events = append(infs.events, inf)
			infs.eventsSynced = append(infs.eventsSynced, reg.HasSynced)
		}
	}
	return infs, nil
}

// eventListWatch is the plain list/watch of one Event API in one namespace
// with the configured selectors.
func (s *session) eventListWatch(api, ns string) *cache.ListWatch {
	cfg := s.c.cfg
	sel := func(o metav1.ListOptions) metav1.ListOptions {
		o.FieldSelector, o.LabelSelector = cfg.FieldSelector, cfg.LabelSelector
		return o
	}
	if api == config.EventsAPICoreV1 {
		c := s.c.client.CoreV1().Events(ns)
		return &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.List(ctx, sel(o))
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.Watch(ctx, sel(o))
			},
		}
	}
	c := s.c.client.EventsV1().Events(ns)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, sel(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, sel(o))
		},
	}
}

func (s *session) podLW(ns string) *cache.ListWatch {
	c := s.c.client.CoreV1().Pods(ns)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, o)
		},
	}
}

// eventInformer builds one Event informer with its handler and registers it
// with the tracker.
func (s *session) eventInformer(api, ns string) (cache.SharedIndexInformer, cache.ResourceEventHandlerRegistration, error) {
	lw := &resumeLW{api: api, inner: s.eventListWatch(api, ns), resumeRV: s.resumeRV, tr: s.tr, m: s.c.m, log: s.log}
	var example runtime.Object = &eventsv1.Event{}
	if api == config.EventsAPICoreV1 {
		example = &corev1.Event{}
	}
	inf := cache.NewSharedIndexInformerWithOptions(listerWatcher{lw}, example,
		cache.SharedIndexInformerOptions{ObjectDescription: "events " + api + " " + nsName(ns)})
	// managedFields say which client wrote which field: no use to a
	// reader of Events, and a large share of each object's size.
	if err := inf.SetTransform(stripManagedFields); err != nil {
		return nil, nil, fmt.Errorf("event informer %s: %w", api, err)
	}
	h := &handler{s: s, api: api, lw: lw}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return nil, nil, fmt.Errorf("event informer %s: %w", api, err)
	}
	lw.stream = s.tr.addStream(api+"/"+nsName(ns), reg.HasSynced, inf.GetStore().List)
	h.stream = lw.stream
	return inf, reg, nil
}

// stripManagedFields is the Event informers' transform. It runs on objects
// freshly decoded for the cache (not yet shared), so it may edit them.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

func nsName(ns string) string {
	if ns == "" {
		return "*"
	}
	return ns
}

// listerWatcher gives resumeLW the deprecated context-less methods that
// NewSharedIndexInformerWithOptions's parameter type still requires; the
// reflector calls the WithContext ones.
type listerWatcher struct{ *resumeLW }

func (l listerWatcher) List(o metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), o)
}

func (l listerWatcher) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}
