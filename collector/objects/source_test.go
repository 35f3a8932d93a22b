package objects

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

const waitLong = 10 * time.Second

func TestKindsMatchConfig(t *testing.T) {
	got := slices.Sorted(maps.Keys(kinds))
	want := slices.Sorted(slices.Values(config.ObjectKinds))
	if !slices.Equal(got, want) {
		t.Fatalf("kinds %v, config.ObjectKinds %v", got, want)
	}
	for name, k := range kinds {
		if k.kind != name || k.resource == "" || k.resource == "secrets" {
			t.Errorf("kind %s: %+v", name, k)
		}
		if _, err := k.informer(informers.NewSharedInformerFactory(fake.NewClientset(), 0)); err != nil {
			t.Errorf("kind %s: %v", name, err)
		}
	}
}

// Add, update and delete of one object: a record per version (id
// uid:resourceVersion, key cluster/kind/namespace/name, managedFields gone,
// apiVersion and kind set) and a tombstone carrying the last version's id.
func TestAddUpdateDeleteTombstone(t *testing.T) {
	cs := fake.NewClientset()
	pub := &memPublisher{}
	r := start(t, testConfig("Pod", "ClusterRole"), cs, pub)
	ctx := context.Background()
	pods := cs.CoreV1().Pods("web")
	const key = "unit/Pod/web/front"
	if _, err := pods.Create(ctx, pod("web", "front", "u-front", "10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Each version is published before the next change is made: changes
	// to a key that is still queued would be coalesced.
	testenv.WaitFor(t, "first version", waitLong, func() bool { return len(pub.byKey(key)) == 1 })
	p := pod("web", "front", "u-front", "11")
	p.Spec.Containers[0].Image = "nginx:1.28"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "two versions", waitLong, func() bool { return len(pub.byKey(key)) == 2 })
	if err := pods.Delete(ctx, "front", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "tombstone", waitLong, func() bool { return len(pub.byKey(key)) == 3 })

	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "reader", UID: "u-cr", ResourceVersion: "5"}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "cluster-scoped record", waitLong, func() bool { return len(pub.byKey("unit/ClusterRole//reader")) == 1 })

	recs := pub.byKey(key)
	tests := []struct {
		i       int
		id      string
		deleted bool
		image   string
	}{
		{0, "u-front:10", false, "nginx:1.27"},
		{1, "u-front:11", false, "nginx:1.28"},
		{2, "u-front:11", true, ""},
	}
	for _, tc := range tests {
		rec := recs[tc.i]
		if rec.ID != tc.id || rec.Deleted != tc.deleted || rec.APIVersion != "v1" || rec.Cluster != testCluster {
			t.Errorf("record %d: id %s deleted %v api %s cluster %v", tc.i, rec.ID, rec.Deleted, rec.APIVersion, rec.Cluster)
		}
		if tc.deleted {
			if rec.Object != nil {
				t.Errorf("tombstone with an object: %s", rec.Object)
			}
			continue
		}
		var obj corev1.Pod
		if err := json.Unmarshal(rec.Object, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind != "Pod" || obj.APIVersion != "v1" || obj.ManagedFields != nil || strings.Contains(string(rec.Object), "managedFields") ||
			obj.Spec.Containers[0].Image != tc.image {
			t.Errorf("record %d object: %s", tc.i, rec.Object)
		}
	}
	if got := pub.byKey("unit/ClusterRole//reader")[0]; got.APIVersion != "rbac.authorization.k8s.io/v1" || got.ID != "u-cr:5" {
		t.Errorf("cluster role record: %s %s", got.APIVersion, got.ID)
	}
	if n := r.metric(t, "published_total", "kind", "Pod", "type", "tombstone"); n != 1 {
		t.Errorf("published_total{type=tombstone} = %v", n)
	}
}

// The handler skips an update with an unchanged resourceVersion (a resync
// or relist), and the worker skips a version whose published form did not
// change but for resourceVersion: a Node whose kubelet only renewed its
// heartbeats publishes nothing, a real condition change publishes.
func TestResyncAndNodeHeartbeatDoNotChurn(t *testing.T) {
	cs := fake.NewClientset()
	pub := &memPublisher{}
	r := start(t, testConfig("Node"), cs, pub)
	ctx := context.Background()
	node := func(rv string, beat time.Time, ready corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u-n1", ResourceVersion: rv},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.NewTime(beat),
				LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
			}}},
		}
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("1", t0, corev1.ConditionTrue), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const key = "unit/Node//n1"
	testenv.WaitFor(t, "first version", waitLong, func() bool { return len(pub.byKey(key)) == 1 })
	if strings.Contains(string(pub.byKey(key)[0].Object), "2026-12-06") {
		t.Fatalf("heartbeat published: %s", pub.byKey(key)[0].Object)
	}

	steps := []struct {
		name        string
		node        *corev1.Node
		wantRecords int
		wantSkipped string // the skipped_total reason that must go up
	}{
		{"same resourceVersion (resync)", node("1", t0, corev1.ConditionTrue), 1, skipResync},
		{"heartbeat only", node("2", t0.Add(time.Minute), corev1.ConditionTrue), 1, skipUnchanged},
		{"another heartbeat", node("3", t0.Add(2*time.Minute), corev1.ConditionTrue), 1, skipUnchanged},
		{"real change", node("4", t0.Add(3*time.Minute), corev1.ConditionFalse), 2, ""},
	}
	for _, st := range steps {
		before := 0.0
		if st.wantSkipped != "" {
			before = r.metric(t, "skipped_total", "reason", st.wantSkipped)
		}
		if _, err := cs.CoreV1().Nodes().Update(ctx, st.node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if st.wantSkipped != "" {
			testenv.WaitFor(t, st.name+": skipped", waitLong, func() bool {
				return r.metric(t, "skipped_total", "reason", st.wantSkipped) > before
			})
		} else {
			testenv.WaitFor(t, st.name+": published", waitLong, func() bool { return len(pub.byKey(key)) == st.wantRecords })
		}
		if n := len(pub.byKey(key)); n != st.wantRecords {
			t.Fatalf("%s: %d records, want %d", st.name, n, st.wantRecords)
		}
	}
	if got := pub.byKey(key)[1].ID; got != "u-n1:4" {
		t.Errorf("real change published as %s", got)
	}
}

// A burst of updates to one object while the publisher is busy publishes
// its latest state once, not every version.
func TestBurstToOneObjectCoalesced(t *testing.T) {
	cs := fake.NewClientset()
	pub := &memPublisher{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	r := start(t, testConfig("Pod"), cs, pub)
	ctx := context.Background()
	pods := cs.CoreV1().Pods("ns")
	if _, err := pods.Create(ctx, pod("ns", "busy", "u-busy", "1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	<-pub.entered // the worker holds the first version, waiting on the publisher
	const burst = 50
	for i := 2; i <= burst+1; i++ {
		p := pod("ns", "busy", "u-busy", fmt.Sprint(i))
		p.Labels = map[string]string{"n": fmt.Sprint(i)}
		if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "all updates seen", waitLong, func() bool {
		return r.metric(t, "notifications_total", "kind", "Pod", "op", "update") == burst
	})
	pub.mu.Lock()
	close(pub.hold)
	pub.hold = nil
	pub.mu.Unlock()
	testenv.WaitFor(t, "latest version published", waitLong, func() bool {
		recs := pub.byKey("unit/Pod/ns/busy")
		return len(recs) > 0 && recs[len(recs)-1].ID == fmt.Sprintf("u-busy:%d", burst+1)
	})
	if n := len(pub.byKey("unit/Pod/ns/busy")); n != 2 {
		t.Fatalf("%d records for a burst of %d updates, want 2 (the first version and the latest)", n, burst)
	}
}

// Bad input is dead-lettered and counted, and never holds back the good
// objects of its batch: an object without a UID (no record ID possible)
// and a queued key of a kind the source does not collect.
func TestBadObjectsDeadLettered(t *testing.T) {
	cs := fake.NewClientset()
	pub := &memPublisher{}
	r := start(t, testConfig("Pod"), cs, pub)
	ctx := context.Background()
	for _, p := range []*corev1.Pod{pod("ns", "no-uid", "", "3"), pod("ns", "good", "u-good", "4")} {
		if _, err := cs.CoreV1().Pods("ns").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "good object published", waitLong, func() bool { return len(pub.byKey("unit/Pod/ns/good")) == 1 })
	testenv.WaitFor(t, "dead letter", waitLong, func() bool { return len(pub.deadLetters()) == 1 })
	dl := pub.deadLetters()[0]
	if dl.Reason != dlField || dl.Source != SourceName || dl.Origin != "Pod/ns/no-uid" || !strings.Contains(dl.Error, "metadata.uid") {
		t.Errorf("dead letter %+v", dl)
	}
	if n := r.metric(t, "dead_letters_total", "reason", dlField); n != 1 {
		t.Errorf("dead_letters_total{field} = %v", n)
	}
	if len(pub.byKey("unit/Pod/ns/no-uid")) != 0 {
		t.Error("an object without a UID was published")
	}
}

func TestUnknownKindDeadLettered(t *testing.T) {
	pub := &memPublisher{}
	src, err := New(testConfig("Pod"), testCluster, fake.NewClientset(), pub, nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ss := newSession(src)
	ss.publishBatch(context.Background(), []string{"Secret/ns/s"})
	dls := pub.deadLetters()
	if len(dls) != 1 || dls[0].Reason != dlUnknownKind || len(pub.records()) != 0 {
		t.Fatalf("dead letters %+v, records %d", dls, len(pub.records()))
	}
}

// A full queue drops changes (counted) and recovers them from the cache
// once it drains: every object is published in the end.
func TestQueueFullDropsThenRecovers(t *testing.T) {
	cs := fake.NewClientset()
	pub := &memPublisher{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	cfg := testConfig("Pod")
	cfg.QueueSize = 2
	r := start(t, cfg, cs, pub)
	ctx := context.Background()
	create := func(i int) {
		if _, err := cs.CoreV1().Pods("ns").Create(ctx, pod("ns", fmt.Sprint("p", i), fmt.Sprint("u", i), "1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(0)
	<-pub.entered
	const n = 10
	for i := 1; i < n; i++ {
		create(i)
	}
	testenv.WaitFor(t, "changes dropped", waitLong, func() bool {
		return r.metric(t, "dropped_total", "reason", "queue_full") > 0 &&
			r.metric(t, "notifications_total", "kind", "Pod", "op", "add") == n
	})
	pub.mu.Lock()
	close(pub.hold)
	pub.hold = nil
	pub.mu.Unlock()
	testenv.WaitFor(t, "every object published", waitLong, func() bool { return len(pub.records()) == n })
	if r.metric(t, "requeued_total") == 0 {
		t.Error("nothing re-queued after the overflow")
	}
}

// ValidatingAdmissionPolicy is collected when the API server serves it and
// skipped with a counted notice when it does not.
func TestOptionalKindSkippedWhenNotServed(t *testing.T) {
	tests := []struct {
		name    string
		served  bool
		skipped float64
	}{
		{"served", true, 0},
		{"not served", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tc.served {
				servedVAP(cs)
			}
			r := start(t, testConfig("ValidatingAdmissionPolicy", "Namespace"), cs, &memPublisher{})
			if got := r.metric(t, "kinds_unavailable_total", "kind", "ValidatingAdmissionPolicy"); got != tc.skipped {
				t.Errorf("kinds_unavailable_total = %v, want %v", got, tc.skipped)
			}
		})
	}
}

// TestInitialListMarked: an object present when the informers start is
// published with InitialList; one created afterwards, and a later version
// of the first, are not.
func TestInitialListMarked(t *testing.T) {
	cs := fake.NewClientset(pod("web", "old", "u-old", "10"))
	pub := &memPublisher{}
	start(t, testConfig("Pod"), cs, pub)
	ctx := context.Background()
	testenv.WaitFor(t, "listed pod", waitLong, func() bool { return len(pub.byKey("unit/Pod/web/old")) == 1 })
	if _, err := cs.CoreV1().Pods("web").Create(ctx, pod("web", "new", "u-new", "11"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "created pod", waitLong, func() bool { return len(pub.byKey("unit/Pod/web/new")) == 1 })
	p := pod("web", "old", "u-old", "12")
	p.Spec.Containers[0].Image = "nginx:1.28"
	if _, err := cs.CoreV1().Pods("web").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "updated pod", waitLong, func() bool { return len(pub.byKey("unit/Pod/web/old")) == 2 })
	for _, tc := range []struct {
		key  string
		i    int
		want bool
	}{
		{"unit/Pod/web/old", 0, true},
		{"unit/Pod/web/new", 0, false},
		{"unit/Pod/web/old", 1, false},
	} {
		if got := pub.byKey(tc.key)[tc.i].InitialList; got != tc.want {
			t.Errorf("%s record %d: InitialList %v, want %v", tc.key, tc.i, got, tc.want)
		}
	}
}
