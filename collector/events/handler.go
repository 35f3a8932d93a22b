package events

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/kubesift/kubesift/record"
)

// The Event informers' handlers: which versions are shipped, each queued for
// the worker, waiting for room rather than dropping one.

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
