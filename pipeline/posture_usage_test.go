package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// fakeUsage is a usage index and audit stream in memory. Uses returns the
// uses "ingested" in [from, to); failReads and failSaves make that many
// calls fail first.
type fakeUsage struct {
	mu                   sync.Mutex
	snaps                map[string]rbacusage.Snapshot
	uses                 []ingested
	failReads, failSaves int
	saves                int
}

type ingested struct {
	at  time.Time
	use rbacusage.Use
}

func (f *fakeUsage) Load(_ context.Context, cluster string) (rbacusage.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snaps[cluster], nil
}

func (f *fakeUsage) Save(_ context.Context, cluster string, snap rbacusage.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSaves > 0 {
		f.failSaves--
		return errors.New("store down")
	}
	f.saves++
	old := f.snaps[cluster]
	tb := rbacusage.NewTable()
	for _, u := range append(old.Usages, snap.Usages...) {
		tb.Restore(u)
	}
	f.snaps[cluster] = rbacusage.Snapshot{WatchStart: snap.WatchStart, ReadTo: snap.ReadTo, Usages: tb.All()}
	return nil
}

func (f *fakeUsage) Uses(_ context.Context, _ string, from, to time.Time) ([]rbacusage.Use, elasticsearch.UseStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failReads > 0 {
		f.failReads--
		return nil, elasticsearch.UseStats{}, errors.New("search down")
	}
	var out []rbacusage.Use
	for _, u := range f.uses {
		if !u.at.Before(from) && u.at.Before(to) {
			out = append(out, u.use)
		}
	}
	return out, elasticsearch.UseStats{Parsed: len(out)}, nil
}

func (f *fakeUsage) add(u rbacusage.Use) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uses = append(f.uses, ingested{time.Now(), u})
}

func (f *fakeUsage) saveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

func (f *fakeUsage) stored(cluster string) rbacusage.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snaps[cluster]
}

// TestPostureConsumerRBACUsage drives the usage path of the posture
// consumer on an in-process Kafka with a usage store in memory and a 2 s
// window: a binding never used opens as unused only once the cluster has
// been watched for the window, a use read from the audit stream resolves
// it, reads and writes that fail are counted and retried without losing
// the use, and a restarted consumer restores the watch start and usage
// (the binding stays resolved: nothing is decided again; the watch start
// it saves is the first one).
func TestPostureConsumerRBACUsage(t *testing.T) {
	kc := fakeKafka(t, 1, kfake.SeedTopics(1, topicObjects))
	brokers := kc.ListenAddrs()
	ff := newFakeFindings()
	ow := newObjectsWriter(t, brokers, topicObjects)
	const cl, check, uid = "prod", "posture-rbac-unused-binding", "crb-uid"
	ow.put(cl, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "alice-view", uid, "10",
		`{"metadata":{"name":"alice-view"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"kind":"User","name":"alice"}]}`)
	fu := &fakeUsage{snaps: map[string]rbacusage.Snapshot{}, failReads: 2}
	const window = 2 * time.Second
	withUsage := func(window time.Duration) func(o *PostureOptions) {
		return func(o *PostureOptions) {
			o.Usage = fu
			o.Processor.Posture.RBACUsage = config.ProcessorRBACUsageConfig{Enabled: true, Window: window, Interval: 50 * time.Millisecond, Lookback: time.Minute}
		}
	}
	reg := prometheus.NewRegistry()
	started := time.Now()
	stop := startPosture(t, brokers, "posture-usage", ff, reg, withUsage(window))

	testenv.WaitFor(t, "the never-used binding opens as unused", 20*time.Second, func() bool { return ff.state(cl, check, uid) == posture.StateOpen })
	opened := time.Now()
	if d := time.Since(started); d < window {
		t.Errorf("opened %v after the start, before the cluster was watched for the %v window", d, window)
	}
	if n := testenv.Metric(t, reg, "kubesift_rbac_usage_reads_total", "step", "read", "result", "error"); n != 2 {
		t.Errorf("failed reads counted %v, want 2", n)
	}
	fu.mu.Lock()
	fu.failSaves = 2
	fu.mu.Unlock()
	g := rbacusage.Grant{Binding: rbacusage.Ref{Kind: "ClusterRoleBinding", Name: "alice-view"}, Role: rbacusage.Ref{Kind: "ClusterRole", Name: "view"},
		Subject: rbacusage.Subject{Kind: "User", Name: "alice"}}
	fu.add(rbacusage.Use{Grant: g, Pair: rbacusage.Pair{Verb: "list", Resource: "pods"}, At: time.Now()})
	testenv.WaitFor(t, "a use resolves it", 20*time.Second, func() bool { return ff.state(cl, check, uid) == posture.StateResolved })
	testenv.WaitFor(t, "the use stored after two failed saves", 20*time.Second, func() bool { return len(fu.stored(cl).Usages) == 1 })
	if n := testenv.Metric(t, reg, "kubesift_rbac_usage_reads_total", "step", "save", "result", "error"); n != 2 {
		t.Errorf("failed saves counted %v, want 2", n)
	}
	snap := fu.stored(cl)
	// The watch began when the consumer first judged the cluster (after it
	// joined the group, which takes longer under load), rounded up to the
	// second, and at least the window before the finding opened.
	if snap.WatchStart.Before(started.Truncate(time.Second)) || snap.WatchStart.After(opened.Add(-window)) || snap.ReadTo.IsZero() {
		t.Errorf("stored watch %v, read to %v; consumer started %v, finding seen open %v", snap.WatchStart, snap.ReadTo, started, opened)
	}

	// The restarted consumer judges with a window of a minute: with 2 s,
	// whether the binding turns unused again depends on how long the
	// restart takes, and the point here is that nothing decided is decided
	// again and that the watch start survives.
	stop()
	reg2 := prometheus.NewRegistry()
	before, _ := ff.written()
	saves := fu.saveCount()
	startPosture(t, brokers, "posture-usage", ff, reg2, withUsage(time.Minute))
	testenv.WaitFor(t, "the restarted consumer rebuilt", 20*time.Second, func() bool {
		return testenv.Metric(t, reg2, "kubesift_posture_rebuilds_total") == 1
	})
	testenv.WaitFor(t, "the restarted consumer read usage", 20*time.Second, func() bool {
		return testenv.Metric(t, reg2, "kubesift_rbac_usage_reads_total", "step", "read", "result", "ok") > 0
	})
	testenv.WaitFor(t, "the restarted consumer saved", 20*time.Second, func() bool { return fu.saveCount() > saves })
	if after, _ := ff.written(); after != before || ff.state(cl, check, uid) != posture.StateResolved {
		t.Errorf("restart: %d transition documents before, %d after; state %s", before, after, ff.state(cl, check, uid))
	}
	if again := fu.stored(cl); !again.WatchStart.Equal(snap.WatchStart) || len(again.Usages) != 1 {
		t.Errorf("after the restart: watch start %v (want %v), %d usages (want 1)", again.WatchStart, snap.WatchStart, len(again.Usages))
	}
}

// TestNewPostureRegistersAllOrNone: when one of its collectors is refused
// (here the engine's, already on the registry), NewPosture fails and
// leaves none of the others registered.
func TestNewPostureRegistersAllOrNone(t *testing.T) {
	set, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng := posture.New(set.Set())
	reg := prometheus.NewRegistry()
	if err := reg.Register(eng.Collector()); err != nil {
		t.Fatal(err)
	}
	ff := newFakeFindings()
	pc := testProcessorConfig("records-reg")
	pc.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: "reg", AlertSeverity: "high", ScoreInterval: time.Second,
		RBACUsage: config.ProcessorRBACUsageConfig{Enabled: true, Window: time.Hour, Interval: time.Minute, Lookback: time.Minute}}
	_, err = NewPosture(PostureOptions{Kafka: testKafka([]string{"127.0.0.1:1"}), Processor: pc, Engine: eng,
		Findings: ff, States: ff.States, Documents: fakeDocs{}, Writer: newFakeWriter(), Registerer: reg, Logger: testLogger(t),
		Usage: &fakeUsage{snaps: map[string]rbacusage.Snapshot{}}})
	if err == nil {
		t.Fatal("NewPosture registered beside the engine's collector")
	}
	// Counters without series do not show in Gather: registering a fresh
	// set of each tells whether the consumer's are still there.
	for _, c := range append(newPostureMetrics().collectors(), newUsageMetrics().collectors()...) {
		if err := reg.Register(c); err != nil {
			t.Errorf("left registered: %v", err)
		}
	}
}
