package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/tools/cache"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// publishAttempts is how often a batch is tried after a non-backpressure
// error before its records are published one by one to find the one the
// publisher refuses.
const publishAttempts = 3

// podSyncWait bounds how long the Event informers wait for the Pod cache:
// enrichment must not hold Events back when Pods cannot be listed.
const podSyncWait = time.Minute

// item is one Event version on its way from an informer handler to the
// publisher. obj is the informer's cached object: read only.
type item struct {
	api      string
	obj      runtime.Object // *eventsv1.Event or *corev1.Event
	uid      string
	rv       uint64
	seq      uint64
	received time.Time
}

// session is one leadership term's work: informers, queue, worker,
// watermark. A new leader (or a restart) starts a new session.
type session struct {
	c       *Collector
	log     *slog.Logger
	cluster record.Cluster
	tr      *tracker
	queue   chan *item
	store   *leaseStore // nil: watermark off
	start   time.Time

	resumeRV uint64
	loaded   Watermark
	written  uint64

	pods *podIndex

	infCtx context.Context // ends when the informers must stop
}

func newSession(c *Collector) *session {
	s := &session{
		c: c, log: c.log, cluster: c.Cluster(), tr: newTracker(),
		queue: make(chan *item, c.cfg.QueueSize), start: c.now(),
	}
	if c.cfg.Watermark.Enabled {
		s.store = &leaseStore{leases: c.client.CoordinationV1(), namespace: c.wmNS, name: c.cfg.Watermark.LeaseName, identity: c.identity}
	}
	return s
}

// run works until ctx ends (nil) or the session cannot start (error).
func (s *session) run(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	cfg := s.c.cfg
	if err := s.loadWatermark(ctx); err != nil {
		return err
	}
	if !clientfeatures.FeatureGates().Enabled(clientfeatures.AtomicFIFO) ||
		!clientfeatures.FeatureGates().Enabled(clientfeatures.InOrderInformers) {
		// Without in-order delivery and atomic relists the tracker's
		// argument does not hold (see tracker): ship, but never advance.
		s.log.Warn("client-go feature gates AtomicFIFO/InOrderInformers are off: the watermark will not advance")
		s.tr.invalidate()
	}

	infCtx, stopInformers := context.WithCancel(ctx)
	defer stopInformers()
	s.infCtx = infCtx
	var informers sync.WaitGroup
	runInformer := func(inf cache.SharedIndexInformer) {
		informers.Go(func() { inf.RunWithContext(infCtx) })
	}

	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	// Build every informer before starting any, so that a setup error
	// leaves nothing running.
	var podInformers, eventInformers []cache.SharedIndexInformer
	var podsSynced, synced []cache.InformerSynced
	if cfg.Enrich.Pods {
		s.pods = &podIndex{byNamespace: map[string]cache.Indexer{}, m: s.c.m}
		for _, ns := range namespaces {
			// Pods keep the streaming watch-list when the client supports it
			// (the fake clientset does not; this wrapper tells the reflector).
			lw := cache.ToListWatcherWithWatchListSemantics(s.podLW(ns), s.c.client)
			inf := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{ObjectDescription: "pods"})
			if err := inf.SetTransform(podTransform(cfg.Enrich.Labels)); err != nil {
				return fmt.Errorf("pod informer: %w", err)
			}
			s.pods.byNamespace[ns] = inf.GetIndexer()
			podInformers = append(podInformers, inf)
			podsSynced = append(podsSynced, inf.HasSynced)
		}
	}
	for _, api := range cfg.APIs {
		for _, ns := range namespaces {
			inf, reg, err := s.eventInformer(api, ns)
			if err != nil {
				return err
			}
			eventInformers = append(eventInformers, inf)
			synced = append(synced, reg.HasSynced)
		}
	}

	// The Pod cache first: Events of the initial list are enriched too.
	for _, inf := range podInformers {
		runInformer(inf)
	}
	if len(podInformers) > 0 {
		wctx, cancel := context.WithTimeout(infCtx, podSyncWait)
		ok := cache.WaitForCacheSync(wctx.Done(), podsSynced...)
		cancel()
		if ctx.Err() != nil {
			stopInformers()
			informers.Wait()
			return nil
		}
		if !ok {
			s.log.Warn("Pod cache not synced; shipping Events without enrichment until it is (can the collector list pods?)", "waited", podSyncWait)
		}
	}
	for _, inf := range eventInformers {
		runInformer(inf)
	}
	informers.Go(func() {
		if cache.WaitForCacheSync(infCtx.Done(), synced...) {
			s.c.synced.Store(true)
			s.log.Info("Event informers synced")
		}
	})
	defer s.c.synced.Store(false)

	s.log.Info("shipping Events", "apis", cfg.APIs, "namespaces", cfg.Namespaces,
		"resume_rv", s.resumeRV, "watermark", cfg.Watermark.Enabled)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		s.work(workCtx)
	}()
	cpCtx, stopCheckpoints := context.WithCancel(ctx)
	defer stopCheckpoints()
	cpDone := make(chan struct{})
	go func() {
		defer close(cpDone)
		s.checkpoints(cpCtx)
	}()

	<-ctx.Done()
	// Stop taking Events, ship what is queued (up to shutdown_grace), then
	// write the watermark once more. Whatever is not shipped stays above it.
	stopInformers()
	informers.Wait()
	close(s.queue)
	grace := time.AfterFunc(cfg.ShutdownGrace, stopWork)
	<-workerDone
	grace.Stop()
	stopCheckpoints()
	<-cpDone
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.checkpoint(fctx)
	s.log.Info("stopped shipping Events")
	return nil
}

// loadWatermark reads the stored watermark and decides whether to resume.
func (s *session) loadWatermark(ctx context.Context) error {
	if s.store == nil {
		return nil
	}
	w, found, err := s.store.load(ctx)
	var perr error
	if err != nil {
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return nil
		}
		// A malformed annotation is reported and replaced; an API error is
		// retried by the caller (shipping without the watermark would
		// re-ship the backlog up to max_age: safe, but avoidable).
		if !errors.Is(err, errBadWatermark) {
			return fmt.Errorf("load watermark: %w", err)
		}
		perr = err
	}
	switch {
	case perr != nil:
		s.log.Warn("stored watermark is unreadable; first-start rules apply", "err", perr)
		s.c.m.watermarkIgnored.WithLabelValues("invalid").Inc()
	case !found:
		s.log.Info("no watermark yet: first start, skipping Events older than max_age", "max_age", s.c.cfg.MaxAge)
	case w.ClusterUID != "" && s.cluster.UID != "" && w.ClusterUID != s.cluster.UID:
		s.log.Warn("stored watermark belongs to another cluster; first-start rules apply", "watermark_cluster_uid", w.ClusterUID, "cluster_uid", s.cluster.UID)
		s.c.m.watermarkIgnored.WithLabelValues("cluster").Inc()
	case w.Scope != s.c.scope:
		s.log.Warn("namespaces or selectors changed since the watermark was written; first-start rules apply", "watermark_scope", w.Scope, "scope", s.c.scope)
		s.c.m.watermarkIgnored.WithLabelValues("scope").Inc()
	default:
		s.resumeRV, s.loaded, s.written = w.ResourceVersion, w, w.ResourceVersion
		s.c.m.watermarkRV.Set(float64(w.ResourceVersion))
		if !w.EventTime.IsZero() {
			s.c.m.watermarkTime.Set(float64(w.EventTime.UnixNano()) / 1e9)
		}
		s.log.Info("resuming from the watermark", "watermark_rv", w.ResourceVersion, "watermark_event_time", w.EventTime, "written_by", w.Writer, "written_at", w.Updated)
	}
	return nil
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

// handler receives one Event informer's notifications. It decides, cheaply,
// whether a version is shipped and queues the object itself (not a key: the
// cache only keeps the latest version, and every version is an occurrence).
type handler struct {
	s      *session
	api    string
	stream int
	lw     *resumeLW
}

func (h *handler) OnAdd(obj any, initial bool) {
	m := h.s.c.m
	m.seen.WithLabelValues(h.api).Inc()
	m.added.WithLabelValues(h.api).Inc()
	o, uid, rv, ok := h.meta(obj)
	if !ok {
		return
	}
	if initial {
		if h.lw.listMode() == modeResume {
			// rv 0 (unparsable) is never "at or below" the watermark.
			if rv != 0 && rv <= h.s.resumeRV {
				m.skipped.WithLabelValues(skipWatermark).Inc()
				h.s.tr.skip(uid, rv)
				return
			}
		} else if t := eventTime(o); t.Before(h.s.start.Add(-h.s.c.cfg.MaxAge)) {
			m.skipped.WithLabelValues(skipTooOld).Inc()
			h.s.tr.skip(uid, rv)
			return
		}
	}
	h.enqueue(o, uid, rv, initial)
}

func (h *handler) OnUpdate(oldObj, newObj any) {
	m := h.s.c.m
	m.seen.WithLabelValues(h.api).Inc()
	o, uid, rv, ok := h.meta(newObj)
	if !ok {
		return
	}
	if old, err := meta.Accessor(oldObj); err == nil && old.GetResourceVersion() == o.(metav1.Object).GetResourceVersion() {
		// A resync or a relist of an unchanged Event: nothing new happened.
		m.skipped.WithLabelValues(skipResync).Inc()
		return
	}
	m.updated.WithLabelValues(h.api).Inc()
	h.enqueue(o, uid, rv, false)
}

func (h *handler) OnDelete(obj any) {
	if _, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return
	}
	if _, _, rv, ok := h.meta(obj); ok {
		h.s.tr.observe(h.stream, rv)
	}
}

// meta extracts what the handler needs. An unparsable resourceVersion stops
// the watermark (once) but the Event is still shipped.
func (h *handler) meta(obj any) (runtime.Object, string, uint64, bool) {
	o, ok := obj.(runtime.Object)
	if !ok {
		return nil, "", 0, false
	}
	a, err := meta.Accessor(o)
	if err != nil {
		return nil, "", 0, false
	}
	rv, err := parseRV(a.GetResourceVersion())
	if err != nil {
		h.s.tr.invalidate()
	}
	return o, string(a.GetUID()), rv, true
}

// enqueue hands a version to the worker. When the queue is full it waits —
// nothing is dropped — and counts the wait. (The shared informer buffers
// notifications per handler, so a waiting handler delays delivery; client-go
// itself has no bound there, which is why the queue depth and the wait are
// exported.)
func (h *handler) enqueue(o runtime.Object, uid string, rv uint64, initial bool) {
	s := h.s
	it := &item{api: h.api, obj: o, uid: uid, rv: rv, received: s.c.now()}
	// Registered before the send so that the watermark stays below it even
	// while the handler waits for room.
	it.seq = s.tr.deliver(h.stream, rv, initial)
	s.c.m.depth.Add(1)
	select {
	case s.queue <- it:
		return
	default:
	}
	s.c.m.queueFull.Inc()
	t0 := time.Now()
	select {
	case s.queue <- it:
	case <-s.infCtx.Done():
		// Shutting down: the version stays pending (never acknowledged), so
		// the watermark stays below it and the next leader ships it.
		s.c.m.depth.Add(-1)
		s.c.m.unshipped.Inc()
	}
	s.c.m.queueBlocked.Add(time.Since(t0).Seconds())
}

func eventTime(o runtime.Object) time.Time {
	switch ev := o.(type) {
	case *eventsv1.Event:
		return record.EventTime(ev)
	case *corev1.Event:
		return record.CoreEventTime(ev)
	}
	return time.Time{}
}

// work batches queued versions and ships them until the queue is closed and
// drained, or ctx ends (then the rest stays unshipped, above the watermark).
func (s *session) work(ctx context.Context) {
	maxRecords, maxWait := s.c.cfg.Batch.MaxRecords, s.c.cfg.Batch.MaxWait
	batch := make([]*item, 0, maxRecords)
	for {
		it, ok := <-s.queue
		if !ok {
			return
		}
		s.c.m.depth.Add(-1)
		batch = append(batch[:0], it)
		timer := time.NewTimer(maxWait)
	fill:
		for len(batch) < maxRecords {
			select {
			case it, ok := <-s.queue:
				if !ok {
					break fill
				}
				s.c.m.depth.Add(-1)
				batch = append(batch, it)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		if !s.ship(ctx, batch) {
			n := len(batch)
			for range s.queue {
				s.c.m.depth.Add(-1)
				n++
			}
			s.c.m.unshipped.Add(float64(n))
			s.log.Warn("stopped before these Events were shipped; the next leader ships them (they are above the watermark)", "events", n)
			return
		}
	}
}

// ship builds the batch's records and publishes them; it returns false only
// when ctx ended first.
func (s *session) ship(ctx context.Context, batch []*item) bool {
	recs := make([]*record.Record, 0, len(batch))
	recItems := make([]*item, 0, len(batch))
	type dead struct {
		it  *item
		dl  collector.DeadLetter
		why string
	}
	var deads []dead
	for _, it := range batch {
		rec, err := s.build(it)
		reason := "field"
		if err == nil {
			// Never publish an Event whose message could not be redacted.
			if err = s.c.sanitizer().Apply(rec); err != nil {
				reason = "redaction"
			}
		}
		if err != nil {
			data, _ := json.Marshal(it.obj)
			deads = append(deads, dead{it: it, dl: s.deadLetter(data, reason, err), why: "build"})
			continue
		}
		recs = append(recs, rec)
		recItems = append(recItems, it)
	}
	if len(recs) > 0 {
		start := time.Now()
		rejected, ok := s.publish(ctx, recs)
		if !ok {
			return false
		}
		s.c.m.publishDuration.Observe(time.Since(start).Seconds())
		s.c.m.batchRecords.Observe(float64(len(recs) - len(rejected)))
		for _, i := range rejected {
			deads = append(deads, dead{it: recItems[i], dl: s.deadLetter(recs[i].Object, "publish_rejected", errors.New("refused by the publisher")), why: "publish_rejected"})
		}
		s.c.m.shipped.Add(float64(len(recs) - len(rejected)))
	}
	for _, d := range deads {
		if !s.publishDeadLetter(ctx, d.dl) {
			return false
		}
		s.c.m.deadLetters.Inc()
		if d.why == "publish_rejected" {
			s.c.m.dropped.WithLabelValues("publish_rejected").Inc()
		}
	}
	acks := make([]ackItem, len(batch))
	for i, it := range batch {
		acks[i] = ackItem{seq: it.seq, uid: it.uid, rv: it.rv, eventTime: eventTime(it.obj)}
	}
	s.tr.ack(acks)
	if t := s.tr.lastEventTime(); !t.IsZero() {
		s.c.m.lastEventTime.WithLabelValues(s.cluster.Name).Set(float64(t.UnixNano()) / 1e9)
	}
	return true
}

// build turns a queued version into a record: a copy of the cached object
// (never the object itself) with its type set and, for Events about Pods,
// the enrichment annotations.
func (s *session) build(it *item) (*record.Record, error) {
	switch ev := it.obj.(type) {
	case *eventsv1.Event:
		cp := ev.DeepCopy()
		cp.APIVersion, cp.Kind = record.APIEventsV1, "Event"
		if s.pods != nil && isPod(cp.Regarding) {
			addAnnotations(&cp.Annotations, s.pods.annotations(nsOr(cp.Regarding.Namespace, cp.Namespace), cp.Regarding.Name, cp.Regarding.UID))
		}
		return record.NewEvent(cp, nil, s.cluster, it.received)
	case *corev1.Event:
		cp := ev.DeepCopy()
		cp.APIVersion, cp.Kind = record.APICoreV1, "Event"
		if s.pods != nil && isPod(cp.InvolvedObject) {
			addAnnotations(&cp.Annotations, s.pods.annotations(nsOr(cp.InvolvedObject.Namespace, cp.Namespace), cp.InvolvedObject.Name, cp.InvolvedObject.UID))
		}
		return record.NewCoreEvent(cp, nil, s.cluster, it.received)
	}
	return nil, fmt.Errorf("unexpected object %T", it.obj)
}

func isPod(ref corev1.ObjectReference) bool {
	return ref.Kind == "Pod" && (ref.APIVersion == "v1" || ref.APIVersion == "") && ref.Name != ""
}

func nsOr(ns, fallback string) string {
	if ns != "" {
		return ns
	}
	return fallback
}

func (s *session) deadLetter(data []byte, reason string, err error) collector.DeadLetter {
	return s.c.san.DeadLetter(collector.DeadLetter{
		Data: data, Source: Source, Origin: "informer", Offset: -1,
		Reason: reason, Error: err.Error(), Cluster: s.cluster,
	})
}

// publish publishes recs, retrying: forever on backpressure (the publisher
// asks for it), publishAttempts times on other errors (by the collector
// contract a record the publisher cannot take at all, e.g. one larger than
// publish.batch_bytes). Then the records are tried one by one and the ones
// still refused are returned; they become dead letters. If every record is
// refused the fault is the publisher's, not the records': the batch is
// retried instead. ok is false only when ctx ended.
func (s *session) publish(ctx context.Context, recs []*record.Record) (rejected []int, ok bool) {
	for {
		err := s.publishRetrying(ctx, recs)
		if ctx.Err() != nil {
			return nil, false
		}
		if err == nil {
			return nil, true
		}
		if len(recs) == 1 {
			return []int{0}, true
		}
		rejected = rejected[:0]
		var ids []string
		for i := range recs {
			if err := s.publishRetrying(ctx, recs[i:i+1]); ctx.Err() != nil {
				return nil, false
			} else if err != nil {
				rejected = append(rejected, i)
				if len(ids) < 10 {
					ids = append(ids, recs[i].ID)
				}
			}
		}
		if len(rejected) < len(recs) {
			if len(rejected) > 0 {
				s.log.Error("publisher refuses Event records; sending them to the dead-letter topic", "refused", len(rejected), "of", len(recs), "ids", ids, "err", err)
			}
			return rejected, true
		}
		s.log.Error("publisher refuses every record of a batch; retrying the batch", "records", len(recs), "err", err)
		if !sleep(ctx, 5*time.Second) {
			return nil, false
		}
	}
}

// publishRetrying publishes recs until the publisher acknowledges them
// (nil), refuses them publishAttempts times with an error other than
// backpressure (that error), or ctx ends (ctx's error).
func (s *session) publishRetrying(ctx context.Context, recs []*record.Record) error {
	waits, attempts, logged := 0, 0, false
	for {
		err := s.c.pub.Publish(ctx, recs)
		if err == nil {
			if logged {
				s.log.Info("publishing Events again")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		backpressure := errors.Is(err, collector.ErrBackpressure)
		if backpressure {
			s.c.m.publishRetries.WithLabelValues("backpressure").Inc()
		} else {
			s.c.m.publishRetries.WithLabelValues("error").Inc()
			if attempts++; attempts >= publishAttempts {
				return err
			}
		}
		if !logged && len(recs) > 1 {
			s.log.Warn("publishing Events failed; retrying", "err", err, "records", len(recs), "backpressure", backpressure)
			logged = true
		}
		if waits++; !sleep(ctx, publishBackoff.Wait(waits)) {
			return ctx.Err()
		}
	}
}

func (s *session) publishDeadLetter(ctx context.Context, dl collector.DeadLetter) bool {
	for waits := 1; ; waits++ {
		err := s.c.pub.PublishDeadLetters(ctx, []collector.DeadLetter{dl})
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("publishing an Event dead letter failed; retrying", "reason", dl.Reason, "err", err)
		if !sleep(ctx, publishBackoff.Wait(waits)) {
			return false
		}
	}
}

// publishBackoff spaces the retries of a refused publish (records and dead
// letters): 100ms doubling to 5s, with equal jitter (internal/backoff).
var publishBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// checkpoints writes the watermark every interval while it advances.
func (s *session) checkpoints(ctx context.Context) {
	if s.store == nil {
		return
	}
	t := time.NewTicker(s.c.cfg.Watermark.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkpoint(ctx)
		}
	}
}

// checkpoint computes the watermark and stores it if it advanced.
func (s *session) checkpoint(ctx context.Context) {
	if s.store == nil {
		return
	}
	w, et, ok := s.tr.candidate()
	if !ok || w <= s.written {
		return
	}
	if s.loaded.EventTime.After(et) {
		et = s.loaded.EventTime
	}
	wm := Watermark{ResourceVersion: w, EventTime: et, ClusterUID: s.cluster.UID, Scope: s.c.scope, Writer: s.c.identity, Updated: s.c.now()}
	if _, err := s.store.save(ctx, wm); err != nil {
		s.c.m.watermarkWrites.WithLabelValues("error").Inc()
		s.log.Warn("writing the watermark failed; a restart would re-ship more than needed", "err", err)
		return
	}
	s.c.m.watermarkWrites.WithLabelValues("ok").Inc()
	s.written = w
	s.c.m.watermarkRV.Set(float64(w))
	if !et.IsZero() {
		s.c.m.watermarkTime.Set(float64(et.UnixNano()) / 1e9)
	}
}
