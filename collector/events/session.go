package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/tools/cache"

	"github.com/kubesift/kubesift/record"
)

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

	// Build every informer before starting any, so that a setup error
	// leaves nothing running.
	infs, err := s.buildInformers()
	if err != nil {
		return err
	}

	// The Pod cache first: Events of the initial list are enriched too.
	for _, inf := range infs.pods {
		runInformer(inf)
	}
	if len(infs.pods) > 0 {
		wctx, cancel := context.WithTimeout(infCtx, podSyncWait)
		ok := cache.WaitForCacheSync(wctx.Done(), infs.podsSynced...)
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
	for _, inf := range infs.events {
		runInformer(inf)
	}
	informers.Go(func() {
		if cache.WaitForCacheSync(infCtx.Done(), infs.eventsSynced...) {
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
