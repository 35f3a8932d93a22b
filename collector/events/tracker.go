package events

import (
	"container/heap"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
)

// tracker knows, for the watermark, which Event versions the collector was
// handed and which of them are durable. It answers one question
// (candidate): up to which resourceVersion W has every Event version that
// exists or existed been either shipped and acknowledged, deliberately
// skipped, or is beyond reach anyway? The argument, per informer ("stream"):
//
//   - delivered(s): the highest resourceVersion delivered to the handler
//     from the watch phase (or the initial list's resourceVersion). In the
//     watch phase client-go delivers in resourceVersion order (the
//     InOrderInformers FIFO, GA and locked on since client-go 1.36), so
//     every version <= delivered(s) has reached the handler, except the items
//     of a relist, which arrive as one atomic store Replace and are then
//     delivered in list order (see the next point).
//   - Versions applied to the informer's store but not yet delivered to the
//     handler (the shared informer buffers notifications per handler):
//     candidate takes a store snapshot after reading delivered(s) and keeps W
//     below every stored version that is not the last acknowledged version of
//     its object.
//   - Versions delivered but not yet acknowledged (queued, in a batch being
//     published, retried): W stays below the smallest of them.
//
// candidate is only defined once every stream's initial list has been
// delivered (its registration HasSynced).
type tracker struct {
	mu      sync.Mutex
	streams []*stream
	// valid is false once a resourceVersion failed to parse as an integer;
	// the watermark then stops advancing (logged once by the caller).
	valid bool

	seq     uint64
	pending pendingHeap
	done    map[uint64]struct{} // acknowledged seqs still inside pending

	acked map[string]*ackEntry // Event UID -> last acknowledged version

	maxEventTime time.Time
}

type ackEntry struct {
	rv uint64
	// missing counts consecutive candidate snapshots that did not contain
	// the object; after two it is forgotten (the Event was deleted). Two,
	// not one: an object acknowledged right after a snapshot was taken is
	// absent from that snapshot although it exists.
	missing uint8
}

// stream is one informer's view.
type stream struct {
	name      string
	synced    func() bool
	list      func() []any
	delivered uint64
	based     bool // delivered holds at least the initial list's resourceVersion
}

func newTracker() *tracker {
	return &tracker{valid: true, done: map[uint64]struct{}{}, acked: map[string]*ackEntry{}}
}

// addStream registers an informer; synced and list read its handler
// registration and store.
func (t *tracker) addStream(name string, synced func() bool, list func() []any) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams = append(t.streams, &stream{name: name, synced: synced, list: list})
	return len(t.streams) - 1
}

// setBase records the resourceVersion the initial list reported to the
// informer: everything at or below it is in that list.
func (t *tracker) setBase(s int, rv uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[s]
	st.delivered, st.based = rv, true
}

// invalidate stops the watermark from advancing.
func (t *tracker) invalidate() {
	t.mu.Lock()
	t.valid = false
	t.mu.Unlock()
}

// deliver registers a version handed to the shipping queue and returns its
// sequence number. initial marks items of the initial list, which arrive in
// list (not resourceVersion) order and so do not move delivered(s).
func (t *tracker) deliver(s int, rv uint64, initial bool) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	heap.Push(&t.pending, pendingItem{rv: rv, seq: t.seq})
	if !initial {
		t.observeLocked(s, rv)
	}
	return t.seq
}

// observe notes a version delivered in the watch phase that is not shipped
// (a deletion).
func (t *tracker) observe(s int, rv uint64) {
	t.mu.Lock()
	t.observeLocked(s, rv)
	t.mu.Unlock()
}

func (t *tracker) observeLocked(s int, rv uint64) {
	if st := t.streams[s]; rv > st.delivered {
		st.delivered = rv
	}
}

// skip records a version deliberately not shipped (older than the
// watermark or max_age): for the watermark it counts as done.
func (t *tracker) skip(uid string, rv uint64) {
	t.mu.Lock()
	t.setAckedLocked(uid, rv)
	t.mu.Unlock()
}

// ackItem is what ack needs of a shipped queue item.
type ackItem struct {
	seq       uint64
	uid       string
	rv        uint64
	eventTime time.Time
}

// ack records versions as durable (published, dead-lettered or dropped on
// purpose).
func (t *tracker) ack(items []ackItem) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		t.done[it.seq] = struct{}{}
		t.setAckedLocked(it.uid, it.rv)
		if it.eventTime.After(t.maxEventTime) {
			t.maxEventTime = it.eventTime
		}
	}
}

func (t *tracker) setAckedLocked(uid string, rv uint64) {
	if e, ok := t.acked[uid]; ok {
		e.rv, e.missing = rv, 0
		return
	}
	t.acked[uid] = &ackEntry{rv: rv}
}

// minPendingLocked is the smallest resourceVersion delivered and not yet
// acknowledged, or 0 when there is none.
func (t *tracker) minPendingLocked() uint64 {
	for t.pending.Len() > 0 {
		top := t.pending[0]
		if _, ok := t.done[top.seq]; !ok {
			return top.rv
		}
		delete(t.done, top.seq)
		heap.Pop(&t.pending)
	}
	return 0
}

// lastEventTime is the latest event time acknowledged.
func (t *tracker) lastEventTime() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxEventTime
}

// pendingLen is the number of versions delivered and not yet acknowledged
// (for tests).
func (t *tracker) pendingLen() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending.Len() - len(t.done)
}

// candidate computes the watermark (see the type doc). ok is false while it
// is undefined: a stream not yet synced, or resourceVersions that are not
// integers. Deliberately not holding mu while listing the stores: the store
// snapshot may be large, and handlers must not wait for it.
func (t *tracker) candidate() (w uint64, eventTime time.Time, ok bool) {
	t.mu.Lock()
	if !t.valid || len(t.streams) == 0 {
		t.mu.Unlock()
		return 0, time.Time{}, false
	}
	streams := make([]*stream, len(t.streams))
	copy(streams, t.streams)
	var dmin uint64
	for i, st := range streams {
		if !st.based || !st.synced() {
			t.mu.Unlock()
			return 0, time.Time{}, false
		}
		if i == 0 || st.delivered < dmin {
			dmin = st.delivered
		}
	}
	t.mu.Unlock()

	// Snapshot after reading delivered(s): anything delivered by then was
	// applied to its store before, so it is in the snapshot or superseded
	// by a newer version that is.
	type stored struct {
		uid string
		rv  uint64
	}
	var snap []stored
	for _, st := range streams {
		for _, o := range st.list() {
			m, err := meta.Accessor(o)
			if err != nil {
				continue
			}
			rv, err := parseRV(m.GetResourceVersion())
			if err != nil {
				t.invalidate()
				return 0, time.Time{}, false
			}
			snap = append(snap, stored{uid: string(m.GetUID()), rv: rv})
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	w = dmin
	present := make(map[string]struct{}, len(snap))
	for _, o := range snap {
		present[o.uid] = struct{}{}
		if o.rv > w {
			continue
		}
		if e, ok := t.acked[o.uid]; !ok || e.rv != o.rv {
			w = o.rv - 1
		}
	}
	if p := t.minPendingLocked(); p != 0 && p-1 < w {
		w = p - 1
	}
	for uid, e := range t.acked {
		if _, ok := present[uid]; ok {
			continue
		}
		if e.missing++; e.missing >= 2 {
			delete(t.acked, uid)
		}
	}
	return w, t.maxEventTime, true
}

type pendingItem struct{ rv, seq uint64 }

// pendingHeap is a min-heap of delivered versions by resourceVersion.
// Acknowledged entries are removed lazily when they reach the top; the heap
// is bounded by the queue plus one batch, because a full queue stops the
// handlers.
type pendingHeap []pendingItem

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].rv < h[j].rv }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(pendingItem)) }
func (h *pendingHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	*h = old[:n-1]
	return x
}
