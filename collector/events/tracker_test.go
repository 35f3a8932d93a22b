package events

import (
	"strconv"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func storedEvent(uid string, rv uint64) any {
	return &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), ResourceVersion: strconv.FormatUint(rv, 10)}}
}

// TestTrackerCandidate walks the cases the watermark argument rests on.
func TestTrackerCandidate(t *testing.T) {
	type op func(tr *tracker, store *[]any)
	deliver := func(uid string, rv uint64, initial bool) op {
		return func(tr *tracker, store *[]any) {
			*store = append(*store, storedEvent(uid, rv))
			seq := tr.deliver(0, rv, initial)
			pending[uid+strconv.FormatUint(rv, 10)] = seq
		}
	}
	ack := func(uid string, rv uint64) op {
		return func(tr *tracker, _ *[]any) {
			tr.ack([]ackItem{{seq: pending[uid+strconv.FormatUint(rv, 10)], uid: uid, rv: rv}})
		}
	}
	applyOnly := func(uid string, rv uint64) op { // in the store, not yet handed to the handler
		return func(_ *tracker, store *[]any) { *store = append(*store, storedEvent(uid, rv)) }
	}
	skip := func(uid string, rv uint64) op {
		return func(tr *tracker, store *[]any) { *store = append(*store, storedEvent(uid, rv)); tr.skip(uid, rv) }
	}
	tests := []struct {
		name   string
		base   uint64
		synced bool
		ops    []op
		want   uint64
		ok     bool
	}{
		{name: "not synced", base: 100, synced: false, ops: nil, ok: false},
		{name: "nothing delivered: the list's version", base: 100, synced: true, want: 100, ok: true},
		{name: "acked watch versions advance it", base: 100, synced: true,
			ops: []op{deliver("a", 101, false), deliver("b", 105, false), ack("a", 101), ack("b", 105)}, want: 105, ok: true},
		{name: "pending version holds it below", base: 100, synced: true,
			ops: []op{deliver("a", 101, false), deliver("b", 105, false), ack("b", 105)}, want: 100, ok: true},
		{name: "stored but not yet delivered holds it below", base: 100, synced: true,
			ops: []op{deliver("a", 101, false), ack("a", 101), applyOnly("c", 103), deliver("b", 105, false), ack("b", 105)}, want: 102, ok: true},
		{name: "initial items do not move delivered", base: 100, synced: true,
			ops: []op{deliver("a", 90, true), deliver("b", 99, true), ack("a", 90), ack("b", 99)}, want: 100, ok: true},
		{name: "skipped initial items count as done", base: 100, synced: true,
			ops: []op{skip("a", 50), deliver("b", 99, true)}, want: 98, ok: true},
		{name: "an older version pending while a newer is acked", base: 100, synced: true,
			ops: []op{deliver("a", 101, false), deliver("a", 102, false), ack("a", 102)}, want: 100, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pending = map[string]uint64{}
			tr := newTracker()
			var store []any
			s := tr.addStream("s", func() bool { return tc.synced }, func() []any {
				// the store keeps the latest version per UID
				latest := map[string]any{}
				var order []string
				for _, o := range store {
					uid := string(o.(*eventsv1.Event).UID)
					if _, ok := latest[uid]; !ok {
						order = append(order, uid)
					}
					latest[uid] = o
				}
				out := make([]any, 0, len(order))
				for _, u := range order {
					out = append(out, latest[u])
				}
				return out
			})
			tr.setBase(s, tc.base)
			for _, o := range tc.ops {
				o(tr, &store)
			}
			w, _, ok := tr.candidate()
			if ok != tc.ok || (ok && w != tc.want) {
				t.Errorf("candidate = %d, %v; want %d, %v", w, ok, tc.want, tc.ok)
			}
		})
	}
}

var pending map[string]uint64

// TestTrackerForgetsDeletedEvents: acknowledged entries of Events gone from
// the store are dropped after two snapshots; the pending heap empties.
func TestTrackerForgetsDeletedEvents(t *testing.T) {
	tr := newTracker()
	var store []any
	s := tr.addStream("s", func() bool { return true }, func() []any { return store })
	tr.setBase(s, 1)
	for i := range 100 {
		rv := uint64(10 + i)
		seq := tr.deliver(s, rv, false)
		tr.ack([]ackItem{{seq: seq, uid: strconv.Itoa(i), rv: rv}})
	}
	for range 2 {
		if _, _, ok := tr.candidate(); !ok {
			t.Fatal("no candidate")
		}
	}
	if len(tr.acked) != 0 || tr.pendingLen() != 0 || tr.pending.Len() != 0 {
		t.Errorf("acked %d, pending %d, heap %d after the Events are gone", len(tr.acked), tr.pendingLen(), tr.pending.Len())
	}
}

// TestTrackerInvalid: non-integer resourceVersions stop the watermark.
func TestTrackerInvalid(t *testing.T) {
	tr := newTracker()
	s := tr.addStream("s", func() bool { return true }, func() []any {
		return []any{&eventsv1.Event{ObjectMeta: metav1.ObjectMeta{UID: "a", ResourceVersion: "abc"}}}
	})
	tr.setBase(s, 5)
	if _, _, ok := tr.candidate(); ok {
		t.Fatal("candidate with a non-integer resourceVersion in the store")
	}
	if _, _, ok := tr.candidate(); ok {
		t.Fatal("candidate after invalidation")
	}
}
