package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/ndjson"
)

const topicObjects = "unit.objects"

// fakeFindings is an in-memory findings index: state documents replaced
// only by a greater ecs.FindingVersion (external versioning), transition
// documents created once. done runs on a goroutine of its own, as the
// Elasticsearch writer's does.
type fakeFindings struct {
	mu          sync.Mutex
	states      map[string]posture.Decision
	version     map[string]int64
	transitions map[string]int // TransitionID -> times written
	scores      map[string]posture.Score
}

func newFakeFindings() *fakeFindings {
	return &fakeFindings{states: map[string]posture.Decision{}, version: map[string]int64{},
		transitions: map[string]int{}, scores: map[string]posture.Score{}}
}

func (f *fakeFindings) Write(ctx context.Context, fs []ecs.Finding, done func(*ecs.Finding, sink.Result)) error {
	for i := range fs {
		if err := ctx.Err(); err != nil {
			return err
		}
		fd := &fs[i]
		v, err := ecs.FindingVersion(&fd.Decision)
		f.mu.Lock()
		res := sink.Result{Status: sink.Duplicate}
		switch {
		case err != nil:
			res = sink.Result{Status: sink.Rejected, Reason: "invalid_finding: " + err.Error()}
		default:
			if v > f.version[fd.ID] {
				f.version[fd.ID], f.states[fd.ID] = v, fd.Decision
				res.Status = sink.Indexed
			}
			tid := ecs.TransitionID(&fd.Decision)
			if f.transitions[tid] == 0 {
				res.Status = sink.Indexed
			}
			f.transitions[tid]++
		}
		f.mu.Unlock()
		go done(fd, res)
	}
	return nil
}

func (f *fakeFindings) WriteScores(_ context.Context, cluster string, total posture.Score, _ map[string]posture.Score, _ time.Time, done func(sink.Result)) error {
	f.mu.Lock()
	f.scores[cluster] = total
	f.mu.Unlock()
	go done(sink.Result{Status: sink.Indexed})
	return nil
}

func (f *fakeFindings) States(_ context.Context, cluster string) ([]posture.Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []posture.Decision
	for _, d := range f.states {
		if d.Cluster == cluster {
			out = append(out, d)
		}
	}
	return out, nil
}

// state is the stored state of the finding of check on uid ("" if none).
func (f *fakeFindings) state(cluster, check, uid string) posture.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[cluster+"/"+check+"/"+uid].State
}

// written returns how many transition documents exist and how many were
// written more than once.
func (f *fakeFindings) written() (n, repeated int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.transitions {
		n++
		if c > 1 {
			repeated++
		}
	}
	return n, repeated
}

// objectsWriter produces object records to the objects topic, all of a
// cluster on one partition as collector/publish does.
type objectsWriter struct {
	t *testing.T
	w *kafka.Writer
}

func newObjectsWriter(t *testing.T, brokers []string, topic string) *objectsWriter {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, parts ...int) int {
			cl, _, _, _, _ := record.ParseObjectKey(string(m.Key))
			return (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(cl)}, parts...)
		})}
	t.Cleanup(func() { w.Close() })
	return &objectsWriter{t: t, w: w}
}

// put publishes one version of an object; raw is its JSON body.
func (o *objectsWriter) put(cluster, apiVersion, kind, ns, name, uid, rv, raw string) {
	o.t.Helper()
	r, err := record.NewObject(record.ObjectRef{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name, UID: uid, ResourceVersion: rv},
		[]byte(raw), record.Cluster{Name: cluster}, time.Now())
	if err != nil {
		o.t.Fatal(err)
	}
	o.send(r)
}

// del publishes the tombstone of an object.
func (o *objectsWriter) del(cluster, apiVersion, kind, ns, name, uid, rv string) {
	o.t.Helper()
	r, err := record.NewObjectTombstone(record.ObjectRef{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name, UID: uid, ResourceVersion: rv},
		record.Cluster{Name: cluster}, time.Now())
	if err != nil {
		o.t.Fatal(err)
	}
	o.send(r)
}

func (o *objectsWriter) send(r *record.Record) {
	o.t.Helper()
	m := kafka.Message{Key: []byte(r.Key)}
	for _, h := range record.Headers(r) {
		m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	if !r.Deleted {
		v, err := record.Marshal(r)
		if err != nil {
			o.t.Fatal(err)
		}
		m.Value = v
	}
	o.raw(m)
}

func (o *objectsWriter) raw(m kafka.Message) {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.w.WriteMessages(ctx, m); err != nil {
		o.t.Fatal(err)
	}
}

func namespaceJSON(name string) string {
	return fmt.Sprintf(`{"metadata":{"name":%q,"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`, name)
}

func podJSON(ns, name string, privileged bool) string {
	return fmt.Sprintf(`{"metadata":{"name":%q,"namespace":%q},"spec":{"automountServiceAccountToken":false,"containers":[{"name":"c","image":"registry.k8s.io/pause@sha256:aa","securityContext":{"privileged":%t}}]}}`,
		name, ns, privileged)
}

func netpolJSON(ns string) string {
	return fmt.Sprintf(`{"metadata":{"name":"deny","namespace":%q},"spec":{"podSelector":{},"policyTypes":["Ingress","Egress"]}}`, ns)
}

// startPosture runs a posture consumer of group on the fake cluster until
// the returned stop is called; stop waits for Run to return. opts adjust
// the options before the consumer is built.
func startPosture(t *testing.T, brokers []string, group string, ff *fakeFindings, reg *prometheus.Registry,
	opts ...func(*PostureOptions)) (stop func()) {
	t.Helper()
	set, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pc := testProcessorConfig("records-" + group)
	pc.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: group, AlertSeverity: "high", ScoreInterval: 100 * time.Millisecond}
	o := PostureOptions{Kafka: testKafka(brokers), Processor: pc, Engine: posture.New(set.Set()),
		Findings: ff, States: ff.States, Documents: fakeDocs{}, Writer: newFakeWriter(), Registerer: reg, Logger: testLogger(t)}
	for _, opt := range opts {
		opt(&o)
	}
	c, err := NewPosture(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testenv.WaitFor(t, "posture consumer in its group", 20*time.Second, func() bool { return c.Ready() == nil })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("posture Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// alertsOn returns the posture alerts on the alerts topic, by id.
func alertsOn(t *testing.T, broker string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range testenv.ReadTopic(t, broker, topicAlerts) {
		var a rules.Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatal(err)
		}
		out[a.ID]++
	}
	return out
}

// TestPostureLifecycle drives one cluster through the posture consumer on
// an in-process Kafka: planted violations open findings (the critical one
// raises an alert), a NetworkPolicy resolves its namespace's finding,
// fixing and deleting a Pod resolve its finding, a reopen raises a second
// alert, and a restarted consumer rebuilds silently — no transition
// written twice, no alert produced twice. Bad messages are dead-lettered.
func TestPostureLifecycle(t *testing.T) {
	kc := fakeKafka(t, 2, kfake.SeedTopics(2, topicObjects))
	brokers := kc.ListenAddrs()
	ff := newFakeFindings()
	ow := newObjectsWriter(t, brokers, topicObjects)
	const cl = "prod"
	const nsCheck, privCheck = "posture-namespace-without-network-policy", "posture-privileged-container"

	// Before the consumer starts: the rebuild opens these.
	ow.put(cl, "v1", "Namespace", "", "shop", "ns-uid", "10", namespaceJSON("shop"))
	ow.put(cl, "v1", "Pod", "shop", "p", "pod-uid", "11", podJSON("shop", "p", true))
	// Still failing at the restart, where it must stay silent.
	ow.put(cl, "v1", "Pod", "shop", "q", "q-uid", "9", podJSON("shop", "q", true))
	reg := prometheus.NewRegistry()
	stop := startPosture(t, brokers, "posture-unit", ff, reg)

	steps := []struct {
		name  string
		do    func()
		check string
		uid   string
		want  posture.State
	}{
		{"rebuild opens the namespace finding", func() {}, nsCheck, "ns-uid", posture.StateOpen},
		{"rebuild opens the privileged finding", func() {}, privCheck, "pod-uid", posture.StateOpen},
		{"rebuild opens the other privileged finding", func() {}, privCheck, "q-uid", posture.StateOpen},
		{"a NetworkPolicy resolves the namespace finding", func() {
			ow.put(cl, "networking.k8s.io/v1", "NetworkPolicy", "shop", "deny", "np-uid", "12", netpolJSON("shop"))
		}, nsCheck, "ns-uid", posture.StateResolved},
		{"fixing the Pod resolves", func() {
			ow.put(cl, "v1", "Pod", "shop", "p", "pod-uid", "13", podJSON("shop", "p", false))
		}, privCheck, "pod-uid", posture.StateResolved},
		{"breaking it again reopens", func() {
			ow.put(cl, "v1", "Pod", "shop", "p", "pod-uid", "14", podJSON("shop", "p", true))
		}, privCheck, "pod-uid", posture.StateReopened},
		{"deleting the Pod resolves", func() {
			ow.del(cl, "v1", "Pod", "shop", "p", "pod-uid", "14")
		}, privCheck, "pod-uid", posture.StateResolved},
	}
	for _, s := range steps {
		s.do()
		testenv.WaitFor(t, s.name, 20*time.Second, func() bool { return ff.state(cl, s.check, s.uid) == s.want })
	}
	// Three alerts: the opens of both critical findings and the reopen;
	// the medium namespace finding stays below
	// processor.posture.alert_severity.
	testenv.WaitFor(t, "three posture alerts", 20*time.Second, func() bool { return len(alertsOn(t, brokers[0])) == 3 })

	// Bad input: not a record, and a record of an object without a uid.
	ow.raw(kafka.Message{Key: []byte(cl + "/Pod/shop/junk"), Value: []byte("{not a record")})
	bad, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "noid", UID: "u", ResourceVersion: "15"},
		[]byte(`{}`), record.Cluster{Name: cl}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad.ID = "u:" // the uid:resourceVersion id without a resourceVersion
	ow.send(bad)
	testenv.WaitFor(t, "two dead letters", 20*time.Second, func() bool { return len(testenv.ReadTopic(t, brokers[0], topicDLQ)) == 2 })
	if got := testenv.Metric(t, reg, "kubesift_posture_messages_total", "result", "invalid"); got != 2 {
		t.Errorf("invalid messages counted %v, want 2", got)
	}
	testenv.WaitFor(t, "posture score exported", 10*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_posture_score", "cluster", cl, "namespace", "") > 0
	})

	before, repeated := ff.written()
	stop()
	// A second consumer of the same group rebuilds from the beginning and
	// restores the states: nothing is decided again.
	reg2 := prometheus.NewRegistry()
	startPosture(t, brokers, "posture-unit", ff, reg2)
	testenv.WaitFor(t, "the restarted consumer rebuilt", 20*time.Second, func() bool {
		return testenv.Metric(t, reg2, "kubesift_posture_rebuilds_total") == 2 // both partitions
	})
	after, repeated2 := ff.written()
	if after != before || repeated2 != repeated {
		t.Errorf("restart wrote transitions: %d documents (%d repeated) before, %d (%d) after", before, repeated, after, repeated2)
	}
	if got := testenv.Metric(t, reg2, "kubesift_posture_transitions_emitted_total", "state", "open"); got != 0 {
		t.Errorf("restart emitted %v open transitions, want 0", got)
	}
	alerts := alertsOn(t, brokers[0])
	if len(alerts) != 3 {
		t.Errorf("%d distinct alerts after the restart, want 3", len(alerts))
	}
	for id, n := range alerts {
		if n != 1 {
			t.Errorf("alert %s produced %d times", id, n)
		}
	}
}

// TestNewProcessorBuildsPosture: NewProcessor builds the posture consumer
// only when processor.posture.enabled and the store is Elasticsearch or the
// NDJSON store, and registers its metrics beside the processor's on the
// command's registry.
func TestNewProcessorBuildsPosture(t *testing.T) {
	tests := []struct {
		name        string
		enabled     bool
		store       string // "" (Elasticsearch), "ndjson", "other"
		wantPosture bool
	}{
		{"off by default", false, "", false},
		{"enabled", true, "", true},
		{"enabled with the NDJSON store", true, "ndjson", true},
		{"off with the NDJSON store", false, "ndjson", false},
		{"enabled with a command's own store", true, "other", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Kafka = testKafka([]string{"127.0.0.1:1"})
			cfg.Processor = testProcessorConfig("unit-build-posture")
			cfg.Processor.Posture.Enabled = tc.enabled
			cfg.Sink.Elasticsearch.Addresses = []string{"http://127.0.0.1:1"}
			deps := ProcessorDeps{Registerer: prometheus.NewRegistry(), Logger: testLogger(t)}
			switch tc.store {
			case "ndjson":
				files, err := ndjson.New(ndjson.Options{Dir: t.TempDir(), Registerer: deps.Registerer})
				if err != nil {
					t.Fatal(err)
				}
				deps.Store = files
			case "other":
				deps.Store = newFakeWriter()
			}
			b, err := NewProcessor(context.Background(), &cfg, deps)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Discard()
			if got := b.Posture != nil; got != tc.wantPosture {
				t.Fatalf("posture consumer built: %v, want %v", got, tc.wantPosture)
			}
			mfs, err := deps.Registerer.(*prometheus.Registry).Gather()
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, mf := range mfs {
				found[mf.GetName()] = true
			}
			for _, name := range []string{"kubesift_posture_messages_total", "kubesift_posture_evaluations_total", "kubesift_processor_in_flight_messages"} {
				want := tc.wantPosture || name == "kubesift_processor_in_flight_messages"
				if found[name] != want {
					t.Errorf("%s registered: %v, want %v", name, found[name], want)
				}
			}
		})
	}
}

// TestTransitionTime: a live transition is stamped with its change's
// observation; a rebuild's opening with the observation that opened it, so
// two stores rebuilt from one topic stamp it alike; anything else now.
func TestTransitionTime(t *testing.T) {
	observed := time.Date(2026, 12, 6, 22, 15, 36, 0, time.UTC)
	opened := time.Date(2026, 12, 6, 22, 10, 0, 0, time.UTC)
	tests := []struct {
		name    string
		state   posture.State
		opened  time.Time
		at      time.Time
		want    time.Time
		wantNow bool
	}{
		{"live change", posture.StateOpen, opened, observed, observed, false},
		{"live resolve", posture.StateResolved, opened, observed, observed, false},
		{"rebuild open", posture.StateOpen, opened, time.Time{}, opened, false},
		{"rebuild reopen", posture.StateReopened, opened, time.Time{}, opened, false},
		{"rebuild open without a time", posture.StateOpen, time.Time{}, time.Time{}, time.Time{}, true},
		{"rebuild resolve", posture.StateResolved, opened, time.Time{}, time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			got := transitionTime(&posture.Decision{State: tc.state, OpenedAt: tc.opened}, tc.at)
			if tc.wantNow {
				if got.Before(before) || got.After(time.Now()) {
					t.Errorf("got %v, want now", got)
				}
				return
			}
			if !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
