package events

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// TestShipsEveryOccurrence: adds and count bumps on both APIs each become a
// record "<uid>:<count>", stamped with the cluster identity.
func TestShipsEveryOccurrence(t *testing.T) {
	f := newFakeCluster(t)
	cfg := testConfig()
	cfg.APIs = []string{config.EventsAPIEventsV1, config.EventsAPICoreV1}
	pub := newFakePublisher()
	r := start(t, cfg, f.client, pub)
	r.waitLive(t, f, pub)
	ctx := context.Background()
	now := time.Now()

	want := map[string]bool{}
	for i := range 5 {
		uid := types.UID(fmt.Sprintf("ev1-%d", i))
		ev, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprintf("e1-%d", i), uid, 1, now), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[string(uid)+":1"] = true
		for c := int32(2); c <= 4; c++ {
			ev = ev.DeepCopy()
			ev.Series = &eventsv1.EventSeries{Count: c, LastObservedTime: metav1.NewMicroTime(now)}
			if ev, err = f.client.EventsV1().Events("default").Update(ctx, ev, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			want[fmt.Sprintf("%s:%d", uid, c)] = true
		}
		cuid := types.UID(fmt.Sprintf("core-%d", i))
		cev, err := f.client.CoreV1().Events("default").Create(ctx, eventCore("default", fmt.Sprintf("c-%d", i), cuid, 1, now), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[string(cuid)+":1"] = true
		cev = cev.DeepCopy()
		cev.Count = 2
		if _, err = f.client.CoreV1().Events("default").Update(ctx, cev, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		want[string(cuid)+":2"] = true
	}
	testenv.WaitFor(t, "every occurrence", 10*time.Second, func() bool {
		got := pub.ids()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	for _, rec := range pub.records() {
		if rec.Cluster.Name != "test" || rec.Cluster.UID != testClusterUID {
			t.Errorf("%s: cluster %+v", rec.ID, rec.Cluster)
		}
		if rec.Source != record.SourceEvent {
			t.Errorf("%s: source %q", rec.ID, rec.Source)
		}
		var obj struct{ APIVersion, Kind string }
		if err := json.Unmarshal(rec.Object, &obj); err != nil || obj.Kind != "Event" || obj.APIVersion != rec.APIVersion {
			t.Errorf("%s: object apiVersion/kind = %q/%q (api %q), err %v", rec.ID, obj.APIVersion, obj.Kind, rec.APIVersion, err)
		}
	}
	if got := testenv.Metric(t, r.reg, "kubesift_collector_events_shipped_total"); got < float64(len(want)) {
		t.Errorf("shipped_total = %v, want >= %d", got, len(want))
	}
	if got := testenv.Metric(t, r.reg, "kubesift_collector_events_leader"); got != 1 {
		t.Errorf("leader gauge = %v with leader election off", got)
	}
}

// TestHandlerSkipsResync: an update whose resourceVersion did not change is
// not shipped.
func TestHandlerSkipsResync(t *testing.T) {
	c, err := New(testConfig(), record.Cluster{Name: "t"}, newFakeCluster(t).client, newFakePublisher(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(c)
	s.infCtx = context.Background()
	h := &handler{s: s, api: config.EventsAPIEventsV1, lw: &resumeLW{}}
	h.stream = s.tr.addStream("x", func() bool { return true }, func() []any { return nil })
	ev := eventV1("default", "a", "u1", 1, time.Now())
	ev.ResourceVersion = "10"
	h.OnUpdate(ev, ev.DeepCopy())
	if len(s.queue) != 0 {
		t.Fatalf("resync queued %d items", len(s.queue))
	}
	ev2 := ev.DeepCopy()
	ev2.ResourceVersion = "11"
	h.OnUpdate(ev, ev2)
	if len(s.queue) != 1 {
		t.Fatalf("update queued %d items, want 1", len(s.queue))
	}
}

// TestFirstStartMaxAge: without a watermark, Events older than max_age are
// skipped and counted, newer ones shipped.
func TestFirstStartMaxAge(t *testing.T) {
	f := newFakeCluster(t)
	ctx := context.Background()
	now := time.Now()
	for i, age := range []time.Duration{3 * time.Hour, 90 * time.Minute, 10 * time.Minute, time.Second} {
		_, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprintf("e%d", i), types.UID(fmt.Sprintf("u%d", i)), 1, now.Add(-age)), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	pub := newFakePublisher()
	r := start(t, testConfig(), f.client, pub)
	testenv.WaitFor(t, "two recent Events", 5*time.Second, func() bool { return len(pub.ids()) == 2 })
	got := pub.ids()
	if got["u2:1"] == 0 || got["u3:1"] == 0 {
		t.Errorf("shipped %v, want u2:1 and u3:1", got)
	}
	if n := testenv.Metric(t, r.reg, "kubesift_collector_events_skipped_total", "reason", "too_old"); n != 2 {
		t.Errorf("skipped too_old = %v, want 2", n)
	}
}

// TestRestartDoesNotReship: a collector writes its watermark; a restarted
// one skips what was shipped and ships what is new.
func TestRestartDoesNotReship(t *testing.T) {
	f := newFakeCluster(t)
	ctx := context.Background()
	now := time.Now()
	create := func(name string) {
		t.Helper()
		if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", name, types.UID(name), 1, now), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		create(fmt.Sprintf("old-%d", i))
	}
	pub1 := newFakePublisher()
	r1 := start(t, testConfig(), f.client, pub1)
	testenv.WaitFor(t, "backlog shipped", 5*time.Second, func() bool { return len(pub1.ids()) == 20 })
	testenv.WaitFor(t, "watermark written", 5*time.Second, func() bool {
		return testenv.Metric(t, r1.reg, "kubesift_collector_events_watermark_resource_version") >= float64(f.rv.Load())
	})
	r1.stop()
	wm := readWatermark(t, f)
	if wm.ResourceVersion != uint64(f.rv.Load()) || wm.ClusterUID != testClusterUID || wm.Writer == "" {
		t.Fatalf("stored watermark %+v, want rv %d", wm, f.rv.Load())
	}

	pub2 := newFakePublisher()
	r2 := start(t, testConfig(), f.client, pub2)
	create("new-0")
	testenv.WaitFor(t, "the new Event", 5*time.Second, func() bool { return pub2.ids()["new-0:1"] > 0 })
	// Every one of the 21 Events is either shipped or skipped once the
	// restarted collector has dealt with it: wait for that, so a wrongly
	// re-shipped one cannot arrive after the check.
	testenv.WaitFor(t, "21 Events shipped or skipped", 5*time.Second, func() bool {
		return float64(len(pub2.ids()))+testenv.Metric(t, r2.reg, "kubesift_collector_events_skipped_total", "reason", "watermark") >= 21
	})
	if got := pub2.ids(); len(got) != 1 {
		t.Errorf("restarted collector shipped %v, want only new-0:1", got)
	}
	if n := testenv.Metric(t, r2.reg, "kubesift_collector_events_skipped_total", "reason", "watermark"); n != 20 {
		t.Errorf("skipped watermark = %v, want 20", n)
	}
}

func readWatermark(t *testing.T, f *fakeCluster) Watermark {
	t.Helper()
	l, err := f.client.CoordinationV1().Leases(testNS).Get(context.Background(), "kubesift-events-watermark", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseWatermark(l.Annotations[AnnotationWatermark])
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestStoredWatermarkIgnored: a watermark of another cluster or scope, or
// an unreadable one, is not used (first-start rules apply).
func TestStoredWatermarkIgnored(t *testing.T) {
	tests := []struct {
		name, annotation, reason string
	}{
		{"other cluster", Watermark{ResourceVersion: 99999, ClusterUID: "other", Scope: scopeOf(nil, "", "")}.Format(), "cluster"},
		{"other scope", Watermark{ResourceVersion: 99999, ClusterUID: testClusterUID, Scope: scopeOf([]string{"x"}, "", "")}.Format(), "scope"},
		{"garbage", `{"v":1,"rv":"01"}`, "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCluster(t)
			ctx := context.Background()
			_, err := f.client.CoordinationV1().Leases(testNS).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name: "kubesift-events-watermark", Namespace: testNS, Annotations: map[string]string{AnnotationWatermark: tc.annotation}}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", "a", "a", 1, time.Now()), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pub := newFakePublisher()
			r := start(t, testConfig(), f.client, pub)
			testenv.WaitFor(t, "the Event", 5*time.Second, func() bool { return pub.ids()["a:1"] > 0 })
			if n := testenv.Metric(t, r.reg, "kubesift_collector_events_watermark_ignored_total", "reason", tc.reason); n != 1 {
				t.Errorf("watermark_ignored{%s} = %v", tc.reason, n)
			}
		})
	}
}

// TestBackpressureIsRetried: ErrBackpressure delays, never drops.
func TestBackpressureIsRetried(t *testing.T) {
	f := newFakeCluster(t)
	pub := newFakePublisher()
	pub.failNext = 4
	r := start(t, testConfig(), f.client, pub)
	ctx := context.Background()
	for i := range 10 {
		if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprint(i), types.UID(fmt.Sprint(i)), 1, time.Now()), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "all 10", 10*time.Second, func() bool { return len(pub.ids()) == 10 })
	if n := testenv.Metric(t, r.reg, "kubesift_collector_events_publish_retries_total", "reason", "backpressure"); n != 4 {
		t.Errorf("backpressure retries = %v, want 4", n)
	}
}

// TestRefusedRecordIsDeadLettered: a record the publisher keeps refusing
// goes to the dead-letter topic; the rest of its batch is shipped.
func TestRefusedRecordIsDeadLettered(t *testing.T) {
	f := newFakeCluster(t)
	pub := newFakePublisher()
	pub.reject["bad:1"] = true
	cfg := testConfig()
	cfg.Batch.MaxWait = 200 * time.Millisecond
	r := start(t, cfg, f.client, pub)
	ctx := context.Background()
	for _, n := range []string{"a", "bad", "b"} {
		if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", n, types.UID(n), 1, time.Now()), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "a, b shipped and bad dead-lettered", 15*time.Second, func() bool {
		ids := pub.ids()
		return ids["a:1"] > 0 && ids["b:1"] > 0 && len(pub.deadLetters()) == 1
	})
	dl := pub.deadLetters()[0]
	if dl.Reason != "publish_rejected" || dl.Source != "events" || dl.Cluster.UID != testClusterUID {
		t.Errorf("dead letter %+v", dl)
	}
	if n := testenv.Metric(t, r.reg, "kubesift_collector_events_dropped_total", "reason", "publish_rejected"); n != 1 {
		t.Errorf("dropped publish_rejected = %v", n)
	}
}

// TestEventWithoutUIDIsDeadLettered: no UID, no record ID.
func TestEventWithoutUIDIsDeadLettered(t *testing.T) {
	f := newFakeCluster(t)
	pub := newFakePublisher()
	start(t, testConfig(), f.client, pub)
	if _, err := f.client.EventsV1().Events("default").Create(context.Background(), eventV1("default", "nouid", "", 1, time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "dead letter", 5*time.Second, func() bool { return len(pub.deadLetters()) == 1 })
	if dl := pub.deadLetters()[0]; dl.Reason != "field" || len(dl.Data) == 0 {
		t.Errorf("dead letter %+v", dl)
	}
}

// TestBoundedQueueWaitsNeverDrops: with a tiny queue and a stuck publisher,
// handlers wait (counted); once the publisher moves, everything arrives.
func TestBoundedQueueWaitsNeverDrops(t *testing.T) {
	f := newFakeCluster(t)
	pub := newFakePublisher()
	pub.block = make(chan struct{})
	cfg := testConfig()
	cfg.QueueSize = 2
	cfg.Batch.MaxRecords = 2
	r := start(t, cfg, f.client, pub)
	ctx := context.Background()
	const n = 30
	for i := range n {
		if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprint(i), types.UID(fmt.Sprint(i)), 1, time.Now()), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "a full queue", 5*time.Second, func() bool {
		return testenv.Metric(t, r.reg, "kubesift_collector_events_queue_full_total") > 0
	})
	if d := testenv.Metric(t, r.reg, "kubesift_collector_events_queue_depth"); d > 3 {
		t.Errorf("queue depth %v exceeds queue_size+1", d)
	}
	pub.mu.Lock()
	close(pub.block)
	pub.block = nil
	pub.mu.Unlock()
	testenv.WaitFor(t, "all Events", 10*time.Second, func() bool { return len(pub.ids()) == n })
}

// TestEnrichmentFromPodCache: an Event about a Pod gets node, owner and
// labels from the Pod informer, on the shipped copy only.
func TestEnrichmentFromPodCache(t *testing.T) {
	f := newFakeCluster(t)
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "pod-uid-web-0",
			Labels: map[string]string{"app": "web", "secret-ish": "nope"},
			OwnerReferences: []metav1.OwnerReference{
				{Kind: "Node", Name: "not-the-controller"},
				{Kind: "ReplicaSet", Name: "web-5d4f", Controller: ptr.To(true)},
			}},
		Spec: corev1.PodSpec{NodeName: "node-7"},
	}
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.APIs = []string{config.EventsAPIEventsV1, config.EventsAPICoreV1}
	cfg.Enrich.Pods = true
	cfg.Enrich.Labels = []string{"app"}
	pub := newFakePublisher()
	r := start(t, cfg, f.client, pub)
	if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", "e", "e", 1, time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.CoreV1().Events("default").Create(ctx, eventCore("default", "c", "c", 1, time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := eventV1("default", "o", "o", 1, time.Now())
	other.Regarding.Name, other.Regarding.UID = "gone", "gone"
	if _, err := f.client.EventsV1().Events("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "three records", 5*time.Second, func() bool { return len(pub.ids()) == 3 })
	wantAnn := map[string]string{
		rules.AnnotationNode: "node-7", rules.AnnotationOwnerKind: "ReplicaSet", rules.AnnotationOwnerName: "web-5d4f",
		AnnotationPodLabels: `{"app":"web"}`,
	}
	for _, rec := range pub.records() {
		var ann map[string]string
		switch {
		case rec.Event != nil:
			ann = rec.Event.Annotations
		case rec.CoreEvent != nil:
			ann = rec.CoreEvent.Annotations
		}
		if rec.ID == "o:1" {
			if len(ann) != 0 {
				t.Errorf("Event about an uncached Pod enriched: %v", ann)
			}
			continue
		}
		for k, v := range wantAnn {
			if ann[k] != v {
				t.Errorf("%s: annotation %s = %q, want %q", rec.ID, k, ann[k], v)
			}
		}
		if !json.Valid(rec.Object) || !containsAll(string(rec.Object), "kubesift.io/node", "node-7") {
			t.Errorf("%s: enrichment missing from the encoded object: %s", rec.ID, rec.Object)
		}
	}
	// The informer cache objects are untouched: the fake's stored Event has
	// no annotations, and neither has what the informer hands out.
	ev, err := f.client.EventsV1().Events("default").Get(ctx, "e", metav1.GetOptions{})
	if err != nil || len(ev.Annotations) != 0 {
		t.Errorf("stored Event annotations %v (err %v)", ev.Annotations, err)
	}
	if hit := testenv.Metric(t, r.reg, "kubesift_collector_events_enrich_total", "result", "hit"); hit != 2 {
		t.Errorf("enrich hits = %v, want 2", hit)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		found := false
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestAnnotationNamesMatchRules keeps the collector's enrichment annotations
// equal to the ones the rules read.
func TestAnnotationNamesMatchRules(t *testing.T) {
	for _, tc := range []struct{ ours, theirs string }{
		{AnnotationNode, rules.AnnotationNode},
		{AnnotationOwnerKind, rules.AnnotationOwnerKind},
		{AnnotationOwnerName, rules.AnnotationOwnerName},
	} {
		if tc.ours != tc.theirs {
			t.Errorf("collector annotation %q, rules read %q", tc.ours, tc.theirs)
		}
	}
}

// TestLeaderElectionOneShips: two collectors on one (fake) API server; only
// the Lease holder ships.
func TestLeaderElectionOneShips(t *testing.T) {
	f := newFakeCluster(t)
	cfg := testConfig()
	cfg.LeaderElection.Enabled = true
	cfg.LeaderElection.LeaseDuration = 2 * time.Second
	cfg.LeaderElection.RenewDeadline = 1500 * time.Millisecond
	cfg.LeaderElection.RetryPeriod = 200 * time.Millisecond
	a, b := cfg, cfg
	a.LeaderElection.Identity, b.LeaderElection.Identity = "a", "b"
	pa, pb := newFakePublisher(), newFakePublisher()
	ra := start(t, a, f.client, pa)
	rb := start(t, b, f.client, pb)
	testenv.WaitFor(t, "a leader", 10*time.Second, func() bool { return ra.c.IsLeader() || rb.c.IsLeader() })
	for i := range 10 {
		if _, err := f.client.EventsV1().Events("default").Create(context.Background(), eventV1("default", fmt.Sprint(i), types.UID(fmt.Sprint(i)), 1, time.Now()), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "10 records", 10*time.Second, func() bool { return len(pa.ids())+len(pb.ids()) >= 10 })
	// A window in which a second shipper would show itself: that nothing
	// more happens cannot be awaited, only given time to happen.
	time.Sleep(300 * time.Millisecond)
	if len(pa.ids()) > 0 && len(pb.ids()) > 0 {
		t.Errorf("both shipped: a %d, b %d", len(pa.ids()), len(pb.ids()))
	}
	if ra.c.IsLeader() == rb.c.IsLeader() {
		t.Errorf("leaders: a %v, b %v", ra.c.IsLeader(), rb.c.IsLeader())
	}
	// Both are ready: the leader synced, the follower waits by design.
	if ea, eb := ra.c.Ready(), rb.c.Ready(); ea != nil || eb != nil {
		t.Errorf("Ready: a %v, b %v", ea, eb)
	}
}

// TestNewRejects: configuration and argument errors name the field.
func TestNewRejects(t *testing.T) {
	client := newFakeCluster(t).client
	tests := []struct {
		name string
		mod  func(*config.EventsConfig)
		want string
	}{
		{"bad api", func(c *config.EventsConfig) { c.APIs = []string{"events.k8s.io/v1beta1"} }, "collector.events.apis[0]"},
		{"lease timings", func(c *config.EventsConfig) { c.LeaderElection.RenewDeadline = c.LeaderElection.LeaseDuration }, "collector.events.leader_election.lease_duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			_, err := New(cfg, record.Cluster{Name: "x"}, client, newFakePublisher(), nil, nil)
			if err == nil || !containsAll(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// TestNewOutsideAPod: with no namespace configured, no POD_NAMESPACE and no
// service account, the leader and watermark Leases go to
// collector.DefaultNamespace rather than New failing.
func TestNewOutsideAPod(t *testing.T) {
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		t.Skip("running in a pod")
	}
	t.Setenv("POD_NAMESPACE", "")
	cfg := testConfig()
	cfg.LeaderElection.Enabled, cfg.LeaderElection.Namespace = true, ""
	cfg.Watermark.Enabled, cfg.Watermark.Namespace = true, ""
	c, err := New(cfg, record.Cluster{Name: "x"}, newFakeCluster(t).client, newFakePublisher(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.leaseNS != collector.DefaultNamespace || c.wmNS != collector.DefaultNamespace {
		t.Errorf("Leases in %q and %q, want %q", c.leaseNS, c.wmNS, collector.DefaultNamespace)
	}
}

// storeWatermark writes a watermark Lease as a previous collector would.
func storeWatermark(t *testing.T, f *fakeCluster, rv uint64) {
	t.Helper()
	w := Watermark{ResourceVersion: rv, ClusterUID: testClusterUID, Scope: scopeOf(nil, "", ""), Writer: "earlier"}
	_, err := f.client.CoordinationV1().Leases(testNS).Create(context.Background(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name: "kubesift-events-watermark", Namespace: testNS, Annotations: map[string]string{AnnotationWatermark: w.Format()}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestResumeFromWatermark covers the start of a session with a stored
// watermark W: initial Events at or below W are skipped, above W shipped;
// a W beyond the API server's watch window (410 on the resume watch) is
// counted and the relist still ships what changed; a W ahead of the API
// server is ignored.
func TestResumeFromWatermark(t *testing.T) {
	tests := []struct {
		name        string
		gone        bool // the resume watch answers 410 Gone
		ahead       bool // the watermark is beyond the list's resourceVersion
		wantSkipped float64
		wantIDs     []string
	}{
		{name: "resume", wantSkipped: 3, wantIDs: []string{"new-0:1", "new-1:1", "old-1:2", "live:1"}},
		{name: "watch window expired", gone: true, wantSkipped: 3, wantIDs: []string{"new-0:1", "new-1:1", "old-1:2", "live:1"}},
		{name: "watermark ahead", ahead: true, wantIDs: []string{"old-0:1", "old-1:2", "old-2:1", "old-3:1", "new-0:1", "new-1:1", "live:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCluster(t)
			ctx := context.Background()
			now := time.Now()
			var old1 *eventsv1.Event
			for i := range 4 {
				ev, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprintf("old-%d", i), types.UID(fmt.Sprintf("old-%d", i)), 1, now), metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if i == 1 {
					old1 = ev
				}
			}
			w := uint64(f.rv.Load())
			if tc.ahead {
				w += 1000
			}
			storeWatermark(t, f, w)
			// After W: two new Events and a repetition of old-1.
			for i := range 2 {
				if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", fmt.Sprintf("new-%d", i), types.UID(fmt.Sprintf("new-%d", i)), 1, now), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			old1 = old1.DeepCopy()
			old1.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(now)}
			if _, err := f.client.EventsV1().Events("default").Update(ctx, old1, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if tc.gone {
				var once sync.Once
				fn := func(rv string) error {
					var err error
					if rv == strconv.FormatUint(w, 10) {
						once.Do(func() { err = apierrors.NewResourceExpired("too old resource version") })
					}
					return err
				}
				f.watchErr.Store(&fn)
			}
			pub := newFakePublisher()
			r := start(t, testConfig(), f.client, pub)
			r.waitLive(t, f, pub)
			if _, err := f.client.EventsV1().Events("default").Create(ctx, eventV1("default", "live", "live", 1, now), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, "the expected records", 5*time.Second, func() bool {
				got := pub.ids()
				for _, id := range tc.wantIDs {
					if got[id] == 0 {
						return false
					}
				}
				return true
			})
			// Every Event is shipped or skipped once the collector has
			// dealt with it: wait for all of them, so a wrongly shipped
			// one cannot arrive after the check.
			testenv.WaitFor(t, "every Event shipped or skipped", 5*time.Second, func() bool {
				skipped := testenv.Metric(t, r.reg, "kubesift_collector_events_skipped_total", "reason", "watermark")
				return float64(len(pub.ids()))+skipped >= float64(len(tc.wantIDs))+tc.wantSkipped
			})
			if got := pub.ids(); len(got) != len(tc.wantIDs) {
				t.Errorf("shipped %v, want exactly %v", got, tc.wantIDs)
			}
			if n := testenv.Metric(t, r.reg, "kubesift_collector_events_skipped_total", "reason", "watermark"); n != tc.wantSkipped {
				t.Errorf("skipped watermark = %v, want %v", n, tc.wantSkipped)
			}
			wantGone := 0.0
			if tc.gone {
				wantGone = 1
			}
			if n := testenv.Metric(t, r.reg, "kubesift_collector_events_resume_expired_total"); n != wantGone {
				t.Errorf("resume_expired = %v, want %v", n, wantGone)
			}
			wantAhead := 0.0
			if tc.ahead {
				wantAhead = 1
			}
			if n := testenv.Metric(t, r.reg, "kubesift_collector_events_watermark_ignored_total", "reason", "ahead"); n != wantAhead {
				t.Errorf("watermark_ignored{ahead} = %v, want %v", n, wantAhead)
			}
		})
	}
}

// TestReadyWaitsForClusterID: until the kube-system UID is read, the
// collector cannot campaign or ship, so /readyz must say so.
func TestReadyWaitsForClusterID(t *testing.T) {
	f := newFakeCluster(t)
	block := make(chan struct{})
	f.client.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-block
		return false, nil, nil
	})
	r := start(t, testConfig(), f.client, newFakePublisher())
	defer r.stop()
	if err := r.c.Ready(); err == nil || !strings.Contains(err.Error(), "cluster id") {
		t.Fatalf("Ready while the cluster id is unknown = %v, want an error naming it", err)
	}
	close(block)
	testenv.WaitFor(t, "Ready once the cluster id could be read", 10*time.Second, func() bool { return r.c.Ready() == nil })
}
