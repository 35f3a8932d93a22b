package objects

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubesift/kubesift/record"
)

// session is one leadership term: informers, the keyed queue, one worker.
// A new leader (or a restart) starts a new session with nothing published
// yet, so its initial lists publish every object once (package doc).
type session struct {
	s     *Source
	log   *slog.Logger
	queue workqueue.TypedInterface[string]
	// kick wakes a worker waiting to fill a batch.
	kick chan struct{}
	// informers by kind name, for the worker's cache reads.
	informers map[string]cache.SharedIndexInformer

	mu sync.Mutex
	// pending holds, per queued key, when its latest change was seen and,
	// for a delete, the object's last version (the cache no longer has it).
	pending map[string]pendingChange
	// overflow is set when a change was dropped on a full queue; the worker
	// re-queues from the caches once the queue is empty.
	overflow atomic.Bool

	// published is the worker's own state: what it last published per key.
	published map[string]publishedState
}

type pendingChange struct {
	seen time.Time
	gone *record.ObjectRef
	// initial is set while the only change queued for the key is its
	// add from the informer's initial list (record.Record.InitialList).
	initial bool
}

// publishedState is what the worker last published (or found unchanged)
// for one key: enough to skip a resync and a change that changes nothing
// it publishes.
type publishedState struct {
	uid, rv string
	sum     uint64 // hash of the published form without resourceVersion
}

func newSession(s *Source) *session {
	return &session{
		s: s, log: s.log, queue: workqueue.NewTyped[string](), kick: make(chan struct{}, 1),
		informers: map[string]cache.SharedIndexInformer{}, pending: map[string]pendingChange{},
		published: map[string]publishedState{},
	}
}

// run works until ctx ends (nil) or the session cannot start (error).
func (ss *session) run(ctx context.Context) error {
	cfg := ss.s.cfg
	served, err := ss.servedKinds()
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(ss.s.client, 0, informers.WithTransform(transform))
	var synced []cache.InformerSynced
	for _, k := range served {
		inf, err := k.informer(factory)
		if err != nil {
			return err
		}
		reg, err := inf.AddEventHandler(ss.handler(k.kind))
		if err != nil {
			return fmt.Errorf("objects: %s informer: %w", k.kind, err)
		}
		ss.informers[k.kind] = inf
		synced = append(synced, reg.HasSynced)
	}
	infCtx, stopInformers := context.WithCancel(ctx)
	defer stopInformers()
	factory.Start(infCtx.Done())
	go func() {
		if cache.WaitForCacheSync(infCtx.Done(), synced...) {
			ss.s.synced.Store(true)
			ss.log.Info("object informers synced", "kinds", len(served))
		}
	}()
	defer ss.s.synced.Store(false)

	ss.log.Info("publishing objects", "kinds", len(served))
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		ss.work(workCtx)
	}()
	<-ctx.Done()
	// Stop taking changes, publish what is queued (up to shutdown_grace).
	stopInformers()
	factory.Shutdown()
	ss.queue.ShutDown()
	grace := time.AfterFunc(cfg.ShutdownGrace, stopWork)
	<-workerDone
	grace.Stop()
	if n := ss.queue.Len(); n > 0 {
		ss.log.Warn("objects not published at stop; the next leader publishes their current state", "queued", n)
	}
	ss.log.Info("stopped publishing objects")
	return nil
}

// servedKinds drops the optional kinds the API server does not serve, with
// a notice. Other discovery errors fail the session (it is retried).
func (ss *session) servedKinds() ([]kindInfo, error) {
	return servedKinds(ss.s.client, ss.s.kinds, func(k kindInfo) {
		ss.s.m.unavailable.WithLabelValues(k.kind).Inc()
		ss.log.Warn("the API server does not serve this kind; not collecting it", "kind", k.kind, "api_version", k.apiVersion())
	})
}

// servedKinds returns the kinds of ks the API server serves, calling
// unserved for each optional kind it does not; a discovery error is
// returned. The source and List decide the same way.
func servedKinds(client kubernetes.Interface, ks []kindInfo, unserved func(kindInfo)) ([]kindInfo, error) {
	var out []kindInfo
	for _, k := range ks {
		if !k.optional {
			out = append(out, k)
			continue
		}
		ok, err := serves(client, k)
		if err != nil {
			return nil, fmt.Errorf("objects: discovery of %s: %w", k.apiVersion(), err)
		}
		if !ok {
			unserved(k)
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

func serves(client kubernetes.Interface, k kindInfo) (bool, error) {
	list, err := client.Discovery().ServerResourcesForGroupVersion(k.apiVersion())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == k.resource {
			return true, nil
		}
	}
	return false, nil
}

// handler queues the key of every change. An update with an unchanged
// resourceVersion (a resync, a relist of an unchanged object) is skipped
// here; everything else is decided by the worker from the cache. An add
// from the informer's initial list is marked as such on its record.
func (ss *session) handler(kind string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) {
			ss.s.m.notifications.WithLabelValues(kind, "add").Inc()
			ss.enqueue(kind, obj, nil, isInInitialList)
		},
		UpdateFunc: func(oldObj, newObj any) {
			ss.s.m.notifications.WithLabelValues(kind, "update").Inc()
			o, err1 := meta.Accessor(oldObj)
			n, err2 := meta.Accessor(newObj)
			if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
				ss.s.m.skipped.WithLabelValues(skipResync).Inc()
				return
			}
			ss.enqueue(kind, newObj, nil, false)
		},
		DeleteFunc: func(obj any) {
			ss.s.m.notifications.WithLabelValues(kind, "delete").Inc()
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			ref := &record.ObjectRef{Kind: kind, APIVersion: kinds[kind].apiVersion()}
			if m, err := meta.Accessor(obj); err == nil {
				ref.Namespace, ref.Name, ref.UID, ref.ResourceVersion = m.GetNamespace(), m.GetName(), string(m.GetUID()), m.GetResourceVersion()
			}
			ss.enqueue(kind, obj, ref, false)
		},
	}
}

// queueKey is "<kind>/<namespace>/<name>": the record key without the
// cluster.
func queueKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// enqueue queues the key of obj's change. initial says the change is an
// add of the initial list; any other change queued for the key since
// clears it, since the worker publishes the latest state only.
func (ss *session) enqueue(kind string, obj any, gone *record.ObjectRef, initial bool) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return // not an object: nothing to key it by (client-go hands only objects)
	}
	key := queueKey(kind, m.GetNamespace(), m.GetName())
	ss.mu.Lock()
	if ss.queue.Len() >= ss.s.cfg.QueueSize {
		if _, queued := ss.pending[key]; !queued {
			ss.mu.Unlock()
			ss.dropped(key)
			return
		}
	}
	if prev, queued := ss.pending[key]; queued && !prev.initial {
		initial = false
	}
	ss.pending[key] = pendingChange{seen: time.Now(), gone: gone, initial: initial}
	ss.queue.Add(key)
	ss.s.m.queueDepth.Set(float64(ss.queue.Len()))
	ss.mu.Unlock()
	select {
	case ss.kick <- struct{}{}:
	default:
	}
}

// dropped counts a change refused by a full queue. It is not lost: the
// cache keeps the object's current state, and once the queue is empty the
// worker re-queues every cached object and every published key the caches
// no longer hold (requeue); those unchanged since they were published cost
// a hash, nothing more.
func (ss *session) dropped(key string) {
	ss.s.m.dropped.WithLabelValues("queue_full").Inc()
	if !ss.overflow.Swap(true) {
		ss.log.Warn("objects queue full: dropping changes until it drains; then re-queueing from the informer caches",
			"queue_size", ss.s.cfg.QueueSize, "first_dropped", key)
	}
}

// requeue queues every object of the caches and every published key they
// no longer hold (deleted while their change was dropped), up to the queue
// bound; overflow stays set while some are left.
func (ss *session) requeue() {
	ss.overflow.Store(false)
	cached := map[string]bool{}
	var keys []string
	for kind, inf := range ss.informers {
		for _, obj := range inf.GetStore().List() {
			if m, err := meta.Accessor(obj); err == nil {
				k := queueKey(kind, m.GetNamespace(), m.GetName())
				cached[k] = true
				keys = append(keys, k)
			}
		}
	}
	for k := range ss.published {
		if !cached[k] {
			keys = append(keys, k)
		}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, k := range keys {
		if ss.queue.Len() >= ss.s.cfg.QueueSize {
			ss.overflow.Store(true)
			break
		}
		if _, queued := ss.pending[k]; !queued {
			ss.pending[k] = pendingChange{seen: time.Now()}
		}
		ss.queue.Add(k)
		n++
	}
	ss.s.m.requeued.Add(float64(n))
}

// takePending returns and forgets the pending change of key.
func (ss *session) takePending(key string) pendingChange {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p := ss.pending[key]
	delete(ss.pending, key)
	return p
}

// splitKey splits a queue key; the name takes the rest.
func splitKey(key string) (kind, namespace, name string) {
	parts := strings.SplitN(key, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}
