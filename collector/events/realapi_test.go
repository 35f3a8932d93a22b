package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// Helpers for the tests against the test ground's real kube-apiserver
// (hack/testenv/kube.sh) and Kafka (hack/testenv/kafka.sh). Every test works
// in a namespace of its own and watches only that namespace, so tests of
// other packages sharing the API server do not disturb it. There is no
// controller manager on the test ground: a deleted namespace stays
// Terminating, so cleanup deletes the Events (and Leases) explicitly.

// realKube returns an admin rest.Config and client for the test ground.
func realKube(t testing.TB) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	cfg := &rest.Config{
		Host:            k.URL,
		BearerToken:     k.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		QPS:             1000,
		Burst:           2000,
		Timeout:         30 * time.Second,
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cs
}

func randSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testNamespace creates a namespace for one test and empties it afterwards.
func testNamespace(t testing.TB, cs kubernetes.Interface) string {
	t.Helper()
	name := "kubesift-ev-" + randSuffix()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cs.CoreV1().Events(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.CoordinationV1().Leases(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// realConfig is a collector configuration for one test namespace with short
// timings.
func realConfig(ns string) config.EventsConfig {
	c := config.DefaultEventsConfig()
	c.Enabled = true
	c.APIs = []string{config.EventsAPIEventsV1, config.EventsAPICoreV1}
	c.Namespaces = []string{ns}
	c.Watermark.Namespace = ns
	c.Watermark.Interval = 250 * time.Millisecond
	c.LeaderElection.Namespace = ns
	c.LeaderElection.LeaseDuration = 4 * time.Second
	c.LeaderElection.RenewDeadline = 3 * time.Second
	c.LeaderElection.RetryPeriod = 500 * time.Millisecond
	c.Batch.MaxWait = 20 * time.Millisecond
	c.ShutdownGrace = 5 * time.Second
	c.Enrich.Pods = true
	c.Enrich.Labels = []string{"app"}
	return c
}

// realCollector starts a collector against the real API server.
type realCollector struct {
	c      *Collector
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startReal(t testing.TB, restCfg *rest.Config, cfg config.EventsConfig, pub collector.Publisher) *realCollector {
	t.Helper()
	rc := rest.CopyConfig(restCfg)
	rc.QPS, rc.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, record.Cluster{Name: "it"}, cs, pub, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &realCollector{c: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the collector and waits for Run (idempotent).
func (r *realCollector) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("Run did not return within 30s of cancel")
	}
}

// loadGen creates and bumps Events through client-go and remembers every
// (uid, count) it wrote, with the time the write returned.
type loadGen struct {
	cs   kubernetes.Interface
	ns   string
	mu   sync.Mutex
	want map[string]time.Time
	evs  []*genEvent
	errs atomic.Int64
}

type genEvent struct {
	mu    sync.Mutex
	v1    *eventsv1.Event
	core  *corev1.Event
	count int32
}

func newLoadGen(cs kubernetes.Interface, ns string) *loadGen {
	return &loadGen{cs: cs, ns: ns, want: map[string]time.Time{}}
}

func (g *loadGen) note(uid types.UID, count int32) {
	g.mu.Lock()
	g.want[record.EventRecordID(string(uid), count)] = time.Now()
	g.mu.Unlock()
}

// retry runs op until it succeeds, retrying transient API errors.
func retry(ctx context.Context, op func() error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = op(); err == nil || ctx.Err() != nil {
			return err
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond) // a client's pause before retrying
	}
	return err
}

// create writes Event number i: even through events.k8s.io/v1, odd through
// core/v1, about one of 20 Pods.
func (g *loadGen) create(ctx context.Context, i int) (*genEvent, error) {
	now := time.Now()
	name := fmt.Sprintf("ev-%d-%s", i, randSuffix())
	pod := fmt.Sprintf("web-%d", i%20)
	ge := &genEvent{count: 1}
	var err error
	if i%2 == 0 {
		ev := &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.ns},
			EventTime:  metav1.NewMicroTime(now), ReportingController: "kubesift.io/loadgen", ReportingInstance: "it-0",
			Action: "Test", Reason: "Testing", Type: corev1.EventTypeNormal, Note: "event " + name,
			Regarding: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: g.ns, Name: pod},
		}
		err = retry(ctx, func() error {
			var e error
			ge.v1, e = g.cs.EventsV1().Events(g.ns).Create(ctx, ev, metav1.CreateOptions{})
			return e
		})
		if err == nil {
			g.note(ge.v1.UID, 1)
		}
	} else {
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: g.ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: g.ns, Name: pod},
			Reason:         "BackOff", Message: "back-off " + name, Type: corev1.EventTypeWarning, Count: 1,
			FirstTimestamp: metav1.NewTime(now), LastTimestamp: metav1.NewTime(now),
			Source: corev1.EventSource{Component: "kubesift-loadgen", Host: "it-0"},
		}
		err = retry(ctx, func() error {
			var e error
			ge.core, e = g.cs.CoreV1().Events(g.ns).Create(ctx, ev, metav1.CreateOptions{})
			return e
		})
		if err == nil {
			g.note(ge.core.UID, 1)
		}
	}
	if err != nil {
		g.errs.Add(1)
		return nil, fmt.Errorf("create event %d: %w", i, err)
	}
	g.mu.Lock()
	g.evs = append(g.evs, ge)
	g.mu.Unlock()
	return ge, nil
}

// bump repeats an Event: series.count (events.k8s.io) or count (core) + 1.
func (g *loadGen) bump(ctx context.Context, ge *genEvent) error {
	ge.mu.Lock()
	defer ge.mu.Unlock()
	now := time.Now()
	next := ge.count + 1
	var err error
	if ge.v1 != nil {
		ev := ge.v1.DeepCopy()
		ev.Series = &eventsv1.EventSeries{Count: next, LastObservedTime: metav1.NewMicroTime(now)}
		err = retry(ctx, func() error {
			out, e := g.cs.EventsV1().Events(g.ns).Update(ctx, ev, metav1.UpdateOptions{})
			if e == nil {
				ge.v1 = out
			}
			return e
		})
		if err == nil {
			g.note(ge.v1.UID, next)
		}
	} else {
		ev := ge.core.DeepCopy()
		ev.Count, ev.LastTimestamp = next, metav1.NewTime(now)
		err = retry(ctx, func() error {
			out, e := g.cs.CoreV1().Events(g.ns).Update(ctx, ev, metav1.UpdateOptions{})
			if e == nil {
				ge.core = out
			}
			return e
		})
		if err == nil {
			g.note(ge.core.UID, next)
		}
	}
	if err != nil {
		g.errs.Add(1)
		return fmt.Errorf("bump event: %w", err)
	}
	ge.count = next
	return nil
}

// run creates n Events with `workers` writers; Event i is then bumped
// bumps(i) times. It returns the first error.
func (g *loadGen) run(ctx context.Context, n, workers int, bumps func(i int) int) error {
	work := make(chan int)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for range workers {
		wg.Go(func() {
			for i := range work {
				ge, err := g.create(ctx, i)
				if err == nil {
					for range bumps(i) {
						if err = g.bump(ctx, ge); err != nil {
							break
						}
					}
				}
				if err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// bumpExisting bumps every k-th Event created so far `times` times.
func (g *loadGen) bumpExisting(ctx context.Context, every, times int) error {
	g.mu.Lock()
	evs := append([]*genEvent(nil), g.evs...)
	g.mu.Unlock()
	for i := 0; i < len(evs); i += every {
		for range times {
			if err := g.bump(ctx, evs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *loadGen) wanted() map[string]time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]time.Time, len(g.want))
	for k, v := range g.want {
		out[k] = v
	}
	return out
}

// missing lists the wanted IDs not in got (at most 10 shown).
func missing(want map[string]time.Time, got map[string]int) (n int, sample []string) {
	for id := range want {
		if got[id] == 0 {
			n++
			if len(sample) < 10 {
				sample = append(sample, id)
			}
		}
	}
	sort.Strings(sample)
	return n, sample
}

// ackRecorder wraps a real publisher and remembers what it acknowledged.
type ackRecorder struct {
	collector.Publisher
	fp *fakePublisher
}

func (a ackRecorder) Publish(ctx context.Context, recs []*record.Record) error {
	if err := a.Publisher.Publish(ctx, recs); err != nil {
		return err
	}
	a.fp.mu.Lock()
	a.fp.recs = append(a.fp.recs, recs...)
	a.fp.mu.Unlock()
	return nil
}

// realPublisher is the Kafka publisher of collector/publish on a fresh
// events topic of the test ground's broker.
func realPublisher(t testing.TB) (*publish.Publisher, string, string) {
	t.Helper()
	testenv.SharedLock(t)
	broker := testenv.KafkaBrokers(t)[0]
	k := config.Default().Kafka
	k.Brokers = []string{broker}
	prefix := "it-events-" + randSuffix()
	k.Topics = config.TopicsConfig{Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects", Alerts: prefix + ".alerts", DLQ: prefix + ".dlq"}
	testenv.CreateTopics(t, broker, 4, k.Topics.Events)
	testenv.CreateTopics(t, broker, 1, k.Topics.DLQ)
	p := config.Default().Publish
	p.Spool.Dir = t.TempDir()
	pub, err := publish.New(publish.Options{Kafka: k, Publish: p, Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return pub, broker, k.Topics.Events
}

// readTopicIDs consumes topic from the beginning to its current end with
// kafka-go and counts the record IDs (header kubesift-id, checked against
// the decoded envelope).
func readTopicIDs(t testing.TB, broker, topic string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MaxBytes: 16 << 20})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p.ID, err)
			}
			var hid string
			for _, h := range m.Headers {
				if h.Key == record.HeaderID {
					hid = string(h.Value)
				}
			}
			rec, err := record.Unmarshal(m.Value)
			if err != nil || rec.ID != hid {
				r.Close()
				t.Fatalf("message %s/%d@%d: header id %q, envelope %v (err %v)", topic, p.ID, m.Offset, hid, rec, err)
			}
			ids[hid]++
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return ids
}

// checkIDsMatchContent: every record's ID is the "<uid>:<count>" of the
// object it carries, so a duplicate is the same occurrence.
func checkIDsMatchContent(t testing.TB, recs []*record.Record) {
	t.Helper()
	bad := 0
	for _, r := range recs {
		var id string
		switch {
		case r.Event != nil:
			id = record.EventRecordID(string(r.Event.UID), record.EventCount(r.Event))
		case r.CoreEvent != nil:
			id = record.EventRecordID(string(r.CoreEvent.UID), record.CoreEventCount(r.CoreEvent))
		}
		if id != r.ID {
			bad++
			if bad < 5 {
				t.Errorf("record %s carries occurrence %s", r.ID, id)
			}
		}
	}
}

func logMetrics(t testing.TB, reg *prometheus.Registry, names ...string) {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		b.WriteString(strings.TrimPrefix(n, "kubesift_collector_events_"))
		b.WriteString("=")
		b.WriteString(strconv.FormatFloat(testenv.Metric(t, reg, n), 'f', -1, 64))
		b.WriteString(" ")
	}
	for _, r := range []string{skipResync, skipWatermark, skipTooOld} {
		fmt.Fprintf(&b, "skipped{%s}=%v ", r, testenv.Metric(t, reg, "kubesift_collector_events_skipped_total", "reason", r))
	}
	t.Log(b.String())
}

// ---------------------------------------------------------------- tests

// TestIntegrationTenThousand: 10,000 (uid, count) occurrences — 5,000 new
// Events through both APIs and 5,000 count bumps — written through
// client-go while the collector runs; every one reaches the publisher.
func TestIntegrationTenThousand(t *testing.T) {
	restCfg, cs := realKube(t)
	ns := testNamespace(t, cs)
	pub := newFakePublisher()
	rc := startReal(t, restCfg, realConfig(ns), pub)
	testenv.WaitFor(t, "leader and informers synced", 30*time.Second, rc.c.Synced)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runTenThousand(t, ctx, cs, ns, rc, pub)
}

// TestIntegrationTenThousandKafka: the same through the real Kafka
// publisher (collector/publish) into the test ground's broker, read back
// with kafka-go.
func TestIntegrationTenThousandKafka(t *testing.T) {
	restCfg, cs := realKube(t)
	kpub, broker, topic := realPublisher(t)
	ns := testNamespace(t, cs)
	rec := ackRecorder{Publisher: kpub, fp: newFakePublisher()}
	rc := startReal(t, restCfg, realConfig(ns), rec)
	testenv.WaitFor(t, "leader and informers synced", 30*time.Second, rc.c.Synced)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want := runTenThousand(t, ctx, cs, ns, rc, rec.fp)
	rc.stop(t)
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	if err := kpub.Close(cctx); err != nil {
		t.Errorf("close publisher: %v", err)
	}
	got := readTopicIDs(t, broker, topic)
	msgs := 0
	for _, n := range got {
		msgs += n
	}
	if n, sample := missing(want, got); n > 0 {
		t.Fatalf("%d of %d occurrences missing from Kafka topic %s, e.g. %v", n, len(want), topic, sample)
	}
	t.Logf("Kafka %s: %d messages, %d distinct ids, all %d occurrences present", topic, msgs, len(got), len(want))
}

func runTenThousand(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, rc *realCollector, pub *fakePublisher) map[string]time.Time {
	t.Helper()
	g := newLoadGen(cs, ns)
	start := time.Now()
	// 5,000 Events; every even one is bumped twice: 5,000 + 2×2,500.
	if err := g.run(ctx, 5000, 8, func(i int) int { return 2 * ((i + 1) % 2) }); err != nil {
		t.Fatal(err)
	}
	written := time.Since(start)
	want := g.wanted()
	if len(want) != 10000 {
		t.Fatalf("wrote %d occurrences, want 10000", len(want))
	}
	testenv.WaitFor(t, "every occurrence at the publisher", 3*time.Minute, func() bool {
		n, _ := missing(want, pub.ids())
		return n == 0
	})
	total := time.Since(start)
	got := pub.ids()
	dups, recs := 0, 0
	for _, n := range got {
		recs += n
		if n > 1 {
			dups++
		}
	}
	checkIDsMatchContent(t, pub.records())
	t.Logf("10000 occurrences written in %v (%.0f/s); all at the publisher after %v (%.0f/s end to end); %d records for %d ids "+
		"(both APIs watched: each occurrence twice), %d ids more than once",
		written.Round(time.Millisecond), 10000/written.Seconds(), total.Round(time.Millisecond), 10000/total.Seconds(), recs, len(got), dups)
	logMetrics(t, rc.reg, "kubesift_collector_events_seen_total", "kubesift_collector_events_added_total",
		"kubesift_collector_events_updated_total", "kubesift_collector_events_skipped_total", "kubesift_collector_events_shipped_total",
		"kubesift_collector_events_queue_full_total", "kubesift_collector_events_watch_restarts_total", "kubesift_collector_events_relists_total",
		"kubesift_collector_events_watermark_resource_version", "kubesift_collector_events_leader_terms_total")
	return want
}

// TestIntegrationRestartResumes: a restarted collector does not ship the
// old backlog again, and ships everything that happened while it was down
// — including every intermediate count of Events that repeated meanwhile
// (replayed from the watermark).
func TestIntegrationRestartResumes(t *testing.T) {
	restCfg, cs := realKube(t)
	ns := testNamespace(t, cs)
	cfg := realConfig(ns)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	pub1 := newFakePublisher()
	rc1 := startReal(t, restCfg, cfg, pub1)
	testenv.WaitFor(t, "leader and informers synced", 30*time.Second, rc1.c.Synced)
	g := newLoadGen(cs, ns)
	if err := g.run(ctx, 300, 4, func(i int) int { return i % 3 }); err != nil {
		t.Fatal(err)
	}
	phase1 := g.wanted()
	testenv.WaitFor(t, "the backlog shipped", time.Minute, func() bool { n, _ := missing(phase1, pub1.ids()); return n == 0 })
	rc1.stop(t)
	wmRV := testenv.Metric(t, rc1.reg, "kubesift_collector_events_watermark_resource_version")
	t.Logf("first run shipped %d ids; watermark %v", len(pub1.ids()), wmRV)

	// While no collector runs: every 5th old Event repeats three times,
	// and 50 new Events appear (half of them repeat).
	if err := g.bumpExisting(ctx, 5, 3); err != nil {
		t.Fatal(err)
	}
	if err := g.run(ctx, 50, 4, func(i int) int { return i % 2 }); err != nil {
		t.Fatal(err)
	}
	all := g.wanted()
	downtime := map[string]time.Time{}
	for id, at := range all {
		if _, old := phase1[id]; !old {
			downtime[id] = at
		}
	}

	pub2 := newFakePublisher()
	rc2 := startReal(t, restCfg, cfg, pub2)
	testenv.WaitFor(t, "the downtime occurrences shipped", time.Minute, func() bool { n, _ := missing(downtime, pub2.ids()); return n == 0 })
	// A window for a wrong re-ship to show: that nothing more arrives
	// cannot be awaited, and the two informers give no order to wait on.
	time.Sleep(time.Second)
	reshipped := 0
	for id := range pub2.ids() {
		if _, old := phase1[id]; old {
			reshipped++
		}
	}
	t.Logf("second run: %d ids shipped, %d occurrences happened while down (all present, intermediate counts included), %d old ids re-shipped; skipped(watermark)=%v resume_expired=%v",
		len(pub2.ids()), len(downtime), reshipped, testenv.Metric(t, rc2.reg, "kubesift_collector_events_skipped_total", "reason", "watermark"),
		testenv.Metric(t, rc2.reg, "kubesift_collector_events_resume_expired_total"))
	if reshipped > 0 {
		t.Errorf("%d ids of the old backlog shipped again", reshipped)
	}
	if n := testenv.Metric(t, rc2.reg, "kubesift_collector_events_skipped_total", "reason", "watermark"); n == 0 {
		t.Error("nothing skipped by the watermark")
	}
}

// TestIntegrationLeaderFailover: two collectors in one leader election.
// Events are shipped by one only; the leader is then killed ("kill -9":
// context cancelled without releasing the Lease, publisher stopped dead)
// while Events keep coming; the other takes over within the lease duration
// and no occurrence is missing.
func TestIntegrationLeaderFailover(t *testing.T) {
	restCfg, cs := realKube(t)
	ns := testNamespace(t, cs)
	cfg := realConfig(ns)
	cfg.LeaderElection.ReleaseOnCancel = false
	cfg.ShutdownGrace = 500 * time.Millisecond
	a, b := cfg, cfg
	a.LeaderElection.Identity, b.LeaderElection.Identity = "collector-a", "collector-b"
	pa, pb := newFakePublisher(), newFakePublisher()
	ra := startReal(t, restCfg, a, pa)
	rb := startReal(t, restCfg, b, pb)
	testenv.WaitFor(t, "a leader", 30*time.Second, func() bool { return ra.c.Synced() || rb.c.Synced() })
	leader, follower, lp, fp := ra, rb, pa, pb
	if rb.c.IsLeader() {
		leader, follower, lp, fp = rb, ra, pb, pa
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	g := newLoadGen(cs, ns)
	if err := g.run(ctx, 200, 4, func(i int) int { return i % 3 }); err != nil {
		t.Fatal(err)
	}
	phase1 := g.wanted()
	testenv.WaitFor(t, "phase 1 shipped", time.Minute, func() bool { n, _ := missing(phase1, lp.ids()); return n == 0 })
	if n := len(fp.ids()); n != 0 {
		t.Errorf("the follower shipped %d records while not leading", n)
	}
	t.Logf("leader %s shipped all %d occurrences; follower %s shipped none", leader.c.Identity(), len(phase1), follower.c.Identity())

	// Keep writing (new Events and bumps of old ones) across the kill.
	genCtx, stopGen := context.WithCancel(ctx)
	var genErr error
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		for i := 0; genCtx.Err() == nil; i++ {
			ge, err := g.create(genCtx, 10000+i)
			if err == nil && i%2 == 0 {
				err = g.bump(genCtx, ge)
			}
			if err == nil && i%5 == 0 {
				err = g.bumpExisting(genCtx, 40, 1)
			}
			if err != nil && genCtx.Err() == nil {
				genErr = err
				return
			}
			time.Sleep(20 * time.Millisecond) // the generator's pace, part of the load
		}
	}()
	time.Sleep(2 * time.Second) // load before the kill: the fault's timeline, not a wait
	lp.killed.Store(true)
	killedAt := time.Now()
	leader.cancel()
	testenv.WaitFor(t, "the follower to lead", 30*time.Second, follower.c.Synced)
	takeover := time.Since(killedAt)
	time.Sleep(3 * time.Second) // load after the takeover: the fault's timeline, not a wait
	stopGen()
	<-genDone
	if genErr != nil {
		t.Fatal(genErr)
	}
	want := g.wanted()
	union := func() map[string]int {
		u := lp.ids()
		for id, n := range fp.ids() {
			u[id] += n
		}
		return u
	}
	testenv.WaitFor(t, "every occurrence shipped by one of the two", time.Minute, func() bool { n, _ := missing(want, union()); return n == 0 })
	both := 0
	la, fa := lp.ids(), fp.ids()
	for id := range fa {
		if la[id] > 0 {
			both++
		}
	}
	checkIDsMatchContent(t, append(lp.records(), fp.records()...))
	t.Logf("killed %s; %s led and synced %v later (lease_duration %v); %d occurrences in all, none missing; %d shipped by both (same record id), resume_expired=%v",
		leader.c.Identity(), follower.c.Identity(), takeover.Round(time.Millisecond), cfg.LeaderElection.LeaseDuration, len(want), both,
		testenv.Metric(t, follower.reg, "kubesift_collector_events_resume_expired_total"))
	if limit := cfg.LeaderElection.LeaseDuration + 2*cfg.LeaderElection.RetryPeriod + 2*time.Second; takeover > limit {
		t.Errorf("takeover took %v, more than lease_duration + 2 retry periods + 2s (%v)", takeover, limit)
	}
}
