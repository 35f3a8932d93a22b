package events

import (
	"context"
	"log/slog"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// listMode is how a stream's initial list is treated by the handler.
type listMode int32

const (
	// modeFirstStart: no usable watermark; initial items older than max_age
	// are skipped.
	modeFirstStart listMode = iota
	// modeResume: the informer resumes from the watermark; initial items at
	// or below it are skipped, and the watch starts at the watermark so the
	// versions written meanwhile (intermediate counts included) are replayed.
	modeResume
)

// resumeLW wraps an Event list/watch so that an informer can resume from a
// watermark W:
//
//   - The first list is made fresh (resourceVersion "", a consistent read)
//     and, when its resourceVersion L is >= W, reported to the reflector as
//     W. The store then holds the current Events, and the reflector watches
//     from W: the API server replays every change after W — the count bumps
//     that happened while no collector was shipping — before the live ones.
//     Replayed versions are older than what the list showed; the informer
//     hands them over as ordinary updates and each becomes its own record.
//   - If W is no longer in the API server's watch window the watch fails
//     with 410 Gone and the reflector relists as usual: the Events as they
//     are now are shipped, the intermediate versions are lost. That is
//     counted in kubesift_collector_events_resume_expired_total.
//   - If L < W the watermark is from the future (a restored etcd, another
//     cluster's Lease): it is ignored and the stream starts as a first start.
//
// Only the first list of a session is treated this way; relists pass through.
// It also counts relists and watch restarts, and reports the initial list's
// resourceVersion to the tracker.
type resumeLW struct {
	api      string
	stream   int
	inner    cache.ListerWatcherWithContext
	resumeRV uint64 // 0: no watermark
	tr       *tracker
	m        *metrics
	log      *slog.Logger

	mu       sync.Mutex
	mode     listMode
	watched  bool // a watch was started: the initial list is over
	lists    int
	watches  int
	resuming bool // the current watch is the first one, started at resumeRV
}

var _ cache.ListerWatcherWithContext = (*resumeLW)(nil)

// IsWatchListSemanticsUnSupported makes the reflector use list+watch instead
// of a streaming watch-list: the resume needs the list's resourceVersion.
func (lw *resumeLW) IsWatchListSemanticsUnSupported() bool { return true }

func (lw *resumeLW) listMode() listMode {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.mode
}

// ListWithContext implements cache.ListerWithContext.
func (lw *resumeLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	lw.mu.Lock()
	initial := !lw.watched
	firstPage := opts.Continue == ""
	if firstPage {
		if lw.lists > 0 && !initial {
			lw.m.relists.WithLabelValues(lw.api).Inc()
		}
		lw.lists++
	}
	resume := initial && firstPage && lw.resumeRV != 0
	lw.mu.Unlock()

	if resume {
		// A consistent read: L is then at least every version the previous
		// collector shipped, and the comparison with W below is meaningful.
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	obj, err := lw.inner.ListWithContext(ctx, opts)
	if err != nil || !initial || !firstPage {
		return obj, err
	}
	lm, err := meta.ListAccessor(obj)
	if err != nil {
		return nil, err
	}
	listRV, perr := parseRV(lm.GetResourceVersion())
	lw.mu.Lock()
	defer lw.mu.Unlock()
	switch {
	case perr != nil:
		lw.log.Warn("Event list has no integer resourceVersion; the watermark will not advance", "api", lw.api, "resource_version", lm.GetResourceVersion())
		lw.tr.invalidate()
		lw.mode = modeFirstStart
	case resume && listRV >= lw.resumeRV:
		lm.SetResourceVersion(strconv.FormatUint(lw.resumeRV, 10))
		lw.tr.setBase(lw.stream, lw.resumeRV)
		lw.mode = modeResume
		lw.resuming = true
	case resume:
		lw.log.Warn("watermark is ahead of the API server (restored etcd or another cluster's Lease?); ignoring it: first-start rules apply",
			"api", lw.api, "watermark_rv", lw.resumeRV, "list_rv", listRV)
		lw.m.watermarkIgnored.WithLabelValues(ignoredAhead).Inc()
		lw.tr.setBase(lw.stream, listRV)
		lw.mode = modeFirstStart
	default:
		lw.tr.setBase(lw.stream, listRV)
		lw.mode = modeFirstStart
	}
	return obj, nil
}

// WatchWithContext implements cache.WatcherWithContext.
func (lw *resumeLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	lw.mu.Lock()
	lw.watched = true
	if lw.watches > 0 {
		lw.m.watchRestarts.WithLabelValues(lw.api).Inc()
	}
	lw.watches++
	resuming := lw.resuming
	lw.resuming = false
	lw.mu.Unlock()
	w, err := lw.inner.WatchWithContext(ctx, opts)
	if err != nil {
		if resuming && isGone(err) {
			lw.expired(opts.ResourceVersion)
		}
		return nil, err
	}
	if !resuming {
		return w, nil
	}
	// The resume watch: spot a 410 in the stream to count the lost window.
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if e.Type == watch.Error {
			if st, ok := e.Object.(*metav1.Status); ok && (st.Code == 410 || st.Reason == metav1.StatusReasonExpired || st.Reason == metav1.StatusReasonGone) {
				lw.expired(opts.ResourceVersion)
			}
		}
		return e, true
	}), nil
}

func (lw *resumeLW) expired(rv string) {
	lw.m.resumeExpired.Inc()
	lw.log.Warn("watermark is older than the API server's watch window: Events are shipped as they are now, "+
		"occurrences that were overwritten while no collector shipped are lost", "api", lw.api, "watermark_rv", rv)
}

func isGone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}
