package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// fakePublisher is an in-memory collector.Publisher. Publish acknowledges a
// batch by appending it to the accepted records (unless told otherwise).
type fakePublisher struct {
	mu       sync.Mutex
	recs     []*record.Record
	dls      []collector.DeadLetter
	calls    int
	failNext int             // Publish calls that answer ErrBackpressure
	reject   map[string]bool // record IDs refused with a non-retryable error
	block    chan struct{}   // when non-nil, Publish waits for it to close
	killed   atomic.Bool     // "kill -9": every later Publish hangs, nothing is acknowledged
	onAck    func(recs []*record.Record)
}

func newFakePublisher() *fakePublisher { return &fakePublisher{reject: map[string]bool{}} }

func (p *fakePublisher) Publish(ctx context.Context, recs []*record.Record) error {
	p.mu.Lock()
	p.calls++
	block := p.block
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p.killed.Load() {
		// Like a process killed with SIGKILL: no answer, ever.
		<-ctx.Done()
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failNext > 0 {
		p.failNext--
		return fmt.Errorf("fake: spool full: %w", collector.ErrBackpressure)
	}
	for _, r := range recs {
		if p.reject[r.ID] {
			return fmt.Errorf("fake: record %s refused", r.ID)
		}
	}
	p.recs = append(p.recs, recs...)
	if p.onAck != nil {
		p.onAck(recs)
	}
	return nil
}

func (p *fakePublisher) PublishDeadLetters(ctx context.Context, dls []collector.DeadLetter) error {
	if p.killed.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dls = append(p.dls, dls...)
	return nil
}

func (p *fakePublisher) records() []*record.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.recs)
}

func (p *fakePublisher) ids() map[string]int {
	m := map[string]int{}
	for _, r := range p.records() {
		m[r.ID]++
	}
	return m
}

func (p *fakePublisher) deadLetters() []collector.DeadLetter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.dls)
}

// fakeCluster is a fake clientset with a kube-system namespace, the
// collector's namespace, and resourceVersions on Events: client-go's fake
// tracker does not set them, so a reactor stamps every created or updated
// Event with the next value of one counter (as etcd would).
type fakeCluster struct {
	client *fake.Clientset
	rv     atomic.Int64
	// watchErr, when set, may fail an Event watch started at resourceVersion
	// rv (e.g. 410 Gone for a resume from a compacted watermark).
	watchErr atomic.Pointer[func(rv string) error]
}

const (
	testNS         = "kubesift"
	testClusterUID = "0b6ad3b5-6c3e-4c52-9c8b-kube-system"
)

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	f := &fakeCluster{client: fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: testClusterUID}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}},
	)}
	f.rv.Store(1000)
	stamp := func(a k8stesting.Action) (bool, runtime.Object, error) {
		// CreateAction and UpdateAction have the same method set.
		var obj runtime.Object
		if a, ok := a.(k8stesting.CreateAction); ok {
			obj = a.GetObject()
		}
		if m, ok := obj.(metav1.Object); ok {
			m.SetResourceVersion(strconv.FormatInt(f.rv.Add(1), 10))
		}
		return false, nil, nil
	}
	for _, verb := range []string{"create", "update"} {
		f.client.PrependReactor(verb, "events", stamp)
	}
	// A list reports the counter as its resourceVersion, as the API server
	// reports the etcd revision (the tracker would report its own count).
	f.client.PrependReactor("list", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gvr := a.GetResource()
		obj, err := f.client.Tracker().List(gvr, schema.GroupVersionKind{Group: gvr.Group, Version: gvr.Version, Kind: "Event"}, a.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		lm, err := meta.ListAccessor(obj)
		if err != nil {
			return true, nil, err
		}
		lm.SetResourceVersion(strconv.FormatInt(f.rv.Load(), 10))
		return true, obj, nil
	})
	// A watch from resourceVersion R starts with the Events changed after R
	// (their latest version only: unlike the API server, the fake keeps no
	// history).
	f.client.PrependWatchReactor("events", func(a k8stesting.Action) (bool, watch.Interface, error) {
		gvr, ns := a.GetResource(), a.GetNamespace()
		if fn := f.watchErr.Load(); fn != nil {
			if err := (*fn)(a.(k8stesting.WatchAction).GetWatchRestrictions().ResourceVersion); err != nil {
				return true, nil, err
			}
		}
		w, err := f.client.Tracker().Watch(gvr, ns)
		if err != nil {
			return true, nil, err
		}
		from, _ := strconv.ParseUint(a.(k8stesting.WatchAction).GetWatchRestrictions().ResourceVersion, 10, 64)
		list, err := f.client.Tracker().List(gvr, schema.GroupVersionKind{Group: gvr.Group, Version: gvr.Version, Kind: "Event"}, ns)
		if err != nil {
			return true, nil, err
		}
		items, _ := meta.ExtractList(list)
		for _, o := range items {
			if m, ok := o.(metav1.Object); ok {
				if rv, _ := strconv.ParseUint(m.GetResourceVersion(), 10, 64); rv > from {
					w.(*watch.RaceFreeFakeWatcher).Add(o)
				}
			}
		}
		return true, w, nil
	})
	return f
}

// testConfig is a configuration with short timings for unit tests.
func testConfig() config.EventsConfig {
	c := config.DefaultEventsConfig()
	c.Enabled = true
	c.LeaderElection.Enabled = false
	c.LeaderElection.Namespace = testNS
	c.Watermark.Namespace = testNS
	c.Watermark.Interval = 50 * time.Millisecond
	c.Batch.MaxWait = 10 * time.Millisecond
	c.ShutdownGrace = 2 * time.Second
	c.Enrich.Pods = false
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() || os.Getenv("KUBESIFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// running is a collector started by start; stop cancels it and waits.
type running struct {
	c    *Collector
	reg  *prometheus.Registry
	stop func()
	done chan error
}

func start(t *testing.T, cfg config.EventsConfig, client *fake.Clientset, pub collector.Publisher) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, record.Cluster{Name: "test"}, client, pub, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, reg: reg, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// waitLive waits until the collector's informers synced and a probe Event
// created now is shipped: the watch is established. (The fake clientset's
// watch, unlike the API server's, does not replay versions written between
// the list and the watch.) The probe's records are removed from pub.
func (r *running) waitLive(t *testing.T, f *fakeCluster, pub *fakePublisher) {
	t.Helper()
	testenv.WaitFor(t, "informers synced", 10*time.Second, r.c.Synced)
	name := fmt.Sprintf("probe-%d", f.rv.Load())
	if _, err := f.client.EventsV1().Events("default").Create(context.Background(), eventV1("default", name, types.UID(name), 1, time.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the probe Event", 10*time.Second, func() bool { return pub.ids()[name+":1"] > 0 })
	pub.mu.Lock()
	pub.recs = slices.DeleteFunc(pub.recs, func(r *record.Record) bool { return r.ID == name+":1" })
	pub.mu.Unlock()
}

// eventV1 builds an events.k8s.io/v1 Event (count = series count, 1 = none).
func eventV1(ns, name string, uid types.UID, count int32, at time.Time) *eventsv1.Event {
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid},
		EventTime:           metav1.NewMicroTime(at),
		Reason:              "Pulled",
		Note:                "pulled image",
		Type:                corev1.EventTypeNormal,
		Action:              "Pull",
		ReportingController: "kubelet",
		ReportingInstance:   "node-1",
		Regarding:           corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "web-0", UID: "pod-uid-web-0"},
	}
	if count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(at)}
	}
	return ev
}

// eventCore builds a core/v1 Event.
func eventCore(ns, name string, uid types.UID, count int32, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "web-0", UID: "pod-uid-web-0"},
		Reason:         "BackOff",
		Message:        "back-off restarting failed container",
		Type:           corev1.EventTypeWarning,
		Count:          count,
		FirstTimestamp: metav1.NewTime(at),
		LastTimestamp:  metav1.NewTime(at),
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
	}
}
