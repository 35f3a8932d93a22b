package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// The end-to-end posture path on the test ground: the objects source on the
// real kube-apiserver, the real publisher into a compacted topic of the
// real Kafka, the posture consumer, and the real Elasticsearch.

// postureGround is one test's unique topics, indices and cluster name.
type postureGround struct {
	cluster string
	kafka   config.KafkaConfig
	es      config.ElasticsearchConfig
	client  *elasticsearch.Client
	kube    kubernetes.Interface
}

func randHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newPostureGround(t *testing.T) *postureGround {
	t.Helper()
	testenv.Short(t)
	testenv.SharedLock(t)
	kube := testenv.NewKubeClient(t, "kubesift-test").CS
	sfx := randHex()
	g := &postureGround{cluster: "it-posture-" + sfx, kube: kube}
	broker := testenv.KafkaBrokers(t)[0]
	prefix := "it-posture-" + sfx
	g.kafka = config.Default().Kafka
	g.kafka.Brokers = []string{broker}
	g.kafka.Topics = config.TopicsConfig{Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects",
		Alerts: prefix + ".alerts", DLQ: prefix + ".dlq"}
	testenv.CreateTopicConfigs(t, broker,
		kafka.TopicConfig{Topic: g.kafka.Topics.Objects, NumPartitions: 2,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}},
		kafka.TopicConfig{Topic: g.kafka.Topics.Alerts, NumPartitions: 1},
		kafka.TopicConfig{Topic: g.kafka.Topics.DLQ, NumPartitions: 1})

	g.es = config.Default().Sink.Elasticsearch
	g.es.Addresses = []string{testenv.ElasticsearchURL(t)}
	g.es.FlushInterval = 50 * time.Millisecond
	g.es.Streams = config.ESStreamsConfig{Audit: "logs-kstest.audit-" + sfx, Events: "logs-kstest.events-" + sfx, Posture: "logs-kstest.posture-" + sfx}
	g.es.AlertsIndex = "kstest-alerts-" + sfx
	g.es.Findings = config.ESFindingsConfig{Index: "kstest-findings-" + sfx,
		TransitionsStream: "logs-kstest.transitions-" + sfx, ScoresStream: "metrics-kstest.scores-" + sfx}
	g.es.ILM.Policy = "kstest-" + sfx
	var err error
	if g.client, err = elasticsearch.NewClient(g.es); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanupES)
	if err := elasticsearch.Setup(context.Background(), g.client, g.es, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *postureGround) cleanupES() {
	testenv.DeleteES(g.es.Addresses[0],
		[]string{g.es.Streams.Audit, g.es.Streams.Events, g.es.Streams.Posture, g.es.Findings.TransitionsStream, g.es.Findings.ScoresStream},
		[]string{g.es.AlertsIndex, g.es.Findings.Index}, elasticsearch.IndexTemplateName, g.es.ILM.Policy)
}

// do sends one request and returns the status and decoded answer.
func (g *postureGround) do(method, path, body string) (int, map[string]any) {
	status, b := testenv.ESDo(g.es.Addresses[0], method, path, body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return status, m
}

// finding is the stored state document's kubesift.finding (nil while there
// is none); GET is real-time, so no refresh is needed.
func (g *postureGround) finding(check, uid string) map[string]any {
	status, doc := g.do(http.MethodGet, "/"+g.es.Findings.Index+"/_doc/"+url.PathEscape(g.cluster+"/"+check+"/"+uid), "")
	if status != http.StatusOK {
		return nil
	}
	f, _ := doc["_source"].(map[string]any)["kubesift"].(map[string]any)["finding"].(map[string]any)
	return f
}

// state is the stored state of a finding ("" while there is none).
func (g *postureGround) state(check, uid string) string {
	s, _ := g.finding(check, uid)["state"].(string)
	return s
}

// openingTimes is a finding's first_seen and opened_at as its state
// document has them.
func (g *postureGround) openingTimes(check, uid string) string {
	f := g.finding(check, uid)
	return fmt.Sprintf("first_seen %v, opened_at %v", f["first_seen"], f["opened_at"])
}

// transitions counts the transition documents of the findings of the
// objects uids. The test's cluster is the whole shared kube-apiserver,
// where other tests change objects meanwhile; only the test's own objects
// have a known history.
func (g *postureGround) transitions(t *testing.T, uids []string) int {
	t.Helper()
	g.do(http.MethodPost, "/"+g.es.Findings.TransitionsStream+"/_refresh", "")
	q, _ := json.Marshal(map[string]any{"query": map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"orchestrator.cluster.name": g.cluster}},
		map[string]any{"terms": map[string]any{"kubesift.finding.object.uid": uids}},
	}}}})
	status, res := g.do(http.MethodPost, "/"+g.es.Findings.TransitionsStream+"/_count", string(q))
	if status != http.StatusOK {
		t.Fatalf("count transitions: %d %v", status, res)
	}
	return int(res["count"].(float64))
}

// startCollector runs the objects source into the real publisher until
// the returned stop is called.
func (g *postureGround) startCollector(t *testing.T) (stop func()) {
	t.Helper()
	return g.startCollectorKinds(t, "Namespace", "Pod", "Deployment", "NetworkPolicy", "ServiceAccount")
}

// startCollectorKinds runs the objects source on the given kinds.
func (g *postureGround) startCollectorKinds(t *testing.T, kinds ...string) (stop func()) {
	t.Helper()
	p := config.Default().Publish
	p.Spool.Dir = t.TempDir()
	p.BatchTimeout = 5 * time.Millisecond
	pub, err := publish.New(publish.Options{Kafka: g.kafka, Publish: p, Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultObjectsConfig()
	cfg.Enabled = true
	cfg.Kinds = kinds
	cfg.LeaderElection.Enabled = false
	cfg.Batch.MaxWait = 10 * time.Millisecond
	src, err := objects.New(cfg, record.Cluster{Name: g.cluster}, g.kube, pub, nil, prometheus.NewRegistry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return runUntilStopped(t, "objects source", src.Run, func() bool { return src.Ready() == nil }, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := pub.Close(ctx); err != nil {
			t.Errorf("publisher close: %v", err)
		}
	})
}

// startPostureReal runs the posture consumer on the real Kafka and
// Elasticsearch until the returned stop is called.
func (g *postureGround) startPostureReal(t *testing.T, reg *prometheus.Registry) (stop func()) {
	t.Helper()
	return g.startPostureWith(t, reg, nil)
}

// startPostureWith is startPostureReal with the options changed by edit.
func (g *postureGround) startPostureWith(t *testing.T, reg *prometheus.Registry, edit func(*PostureOptions)) (stop func()) {
	t.Helper()
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: g.client, Config: g.es})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := elasticsearch.NewFindingsWriter(w, g.es)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := ecs.New(g.es)
	if err != nil {
		t.Fatal(err)
	}
	pc := testProcessorConfig("records-" + g.cluster)
	pc.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: "posture-" + g.cluster, AlertSeverity: "high", ScoreInterval: time.Second}
	o := PostureOptions{Kafka: g.kafka, Processor: pc, Engine: posture.New(eng.Set()), Findings: fw,
		States: func(ctx context.Context, cluster string) ([]posture.Decision, error) {
			ds, _, err := elasticsearch.FindingStates(ctx, g.client, g.es.Findings.Index, cluster)
			return ds, err
		},
		Documents: docs, Writer: w, Registerer: reg, Logger: testLogger(t)}
	if edit != nil {
		edit(&o)
	}
	c, err := NewPosture(o)
	if err != nil {
		t.Fatal(err)
	}
	return runUntilStopped(t, "posture consumer", c.Run, func() bool { return c.Ready() == nil }, nil)
}

// runUntilStopped starts run, waits for ready, and returns the stop that
// cancels it, waits for it and then calls after.
func runUntilStopped(t *testing.T, name string, run func(context.Context) error, ready func() bool, after func()) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if after != nil {
				after()
			}
		})
	}
	t.Cleanup(stop)
	testenv.WaitFor(t, name+" ready", 60*time.Second, ready)
	return stop
}

// within waits for the finding's state and returns how long it took from
// start.
func (g *postureGround) within(t *testing.T, what, check, uid, want string, start time.Time) time.Duration {
	t.Helper()
	testenv.WaitFor(t, what, 30*time.Second, func() bool { return g.state(check, uid) == want })
	d := time.Since(start)
	t.Logf("%s: %v", what, d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("%s took %v, want under 5s", what, d)
	}
	return d
}

func privilegedDeployment(ns string, privileged bool) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.9",
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(privileged)}}}},
			},
		},
	}
}

// TestPostureEndToEndOnRealGround (takes the shared lock of the test
// ground): planted violations open findings; fixing the Deployment,
// deleting the Pod and creating a NetworkPolicy resolve theirs, each within
// 5 s from the API call to the state in Elasticsearch; restarting the
// posture consumer and the objects source adds no transition document and
// no alert.
func TestPostureEndToEndOnRealGround(t *testing.T) {
	g := newPostureGround(t)
	ctx := context.Background()
	const privCheck, nsCheck = "posture-privileged-container", "posture-namespace-without-network-policy"
	stopCollector := g.startCollector(t)
	reg := prometheus.NewRegistry()
	stopPosture := g.startPostureReal(t, reg)

	// The source first publishes every object of the shared kube-apiserver
	// and the consumer judges them; the namespace's finding opening marks
	// the end of that warm-up, which is not a change's latency.
	nsName := "kubesift-posture-" + randHex()
	ns, err := g.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.kube.CoreV1().Namespaces().Delete(context.Background(), nsName, metav1.DeleteOptions{}) })
	testenv.WaitFor(t, "namespace without NetworkPolicy opens", 60*time.Second, func() bool { return g.state(nsCheck, string(ns.UID)) == "open" })

	start := time.Now()
	dep, err := g.kube.AppsV1().Deployments(nsName).Create(ctx, privilegedDeployment(nsName, true), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.within(t, "privileged Deployment opens", privCheck, string(dep.UID), "open", start)
	// Still failing at the restart, where it must stay silent.
	keepSpec := privilegedDeployment(nsName, true)
	keepSpec.Name = "keep"
	keep, err := g.kube.AppsV1().Deployments(nsName).Create(ctx, keepSpec, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "second privileged Deployment opens", 30*time.Second, func() bool { return g.state(privCheck, string(keep.UID)) == "open" })

	start = time.Now()
	pod, err := g.kube.CoreV1().Pods(nsName).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "priv", Namespace: nsName},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.9",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.within(t, "privileged Pod opens", privCheck, string(pod.UID), "open", start)

	start = time.Now()
	if _, err := g.kube.NetworkingV1().NetworkPolicies(nsName).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: nsName},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	g.within(t, "NetworkPolicy resolves the namespace finding", nsCheck, string(ns.UID), "resolved", start)

	depOpened := g.openingTimes(privCheck, string(dep.UID))
	if strings.Contains(depOpened, "<nil>") {
		t.Fatalf("open state document without its times: %s", depOpened)
	}
	start = time.Now()
	fixed := privilegedDeployment(nsName, false)
	fixed.ResourceVersion = dep.ResourceVersion
	if _, err := g.kube.AppsV1().Deployments(nsName).Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	g.within(t, "fixing the Deployment resolves", privCheck, string(dep.UID), "resolved", start)
	// The resolved state document still says when the finding was first
	// seen and opened.
	if got := g.openingTimes(privCheck, string(dep.UID)); got != depOpened {
		t.Errorf("resolved state document: %s, want %s as when it was open", got, depOpened)
	}

	start = time.Now()
	if err := g.kube.CoreV1().Pods(nsName).Delete(ctx, "priv", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	g.within(t, "deleting the Pod resolves", privCheck, string(pod.UID), "resolved", start)

	// The alerts of the three privileged findings are on the alerts topic,
	// once each.
	mine := []string{string(ns.UID), string(dep.UID), string(pod.UID), string(keep.UID)}
	myAlerts := func() map[string]int {
		out := map[string]int{}
		for _, m := range testenv.ReadTopic(t, g.kafka.Brokers[0], g.kafka.Topics.Alerts) {
			var a rules.Alert
			if err := json.Unmarshal(m.Value, &a); err != nil {
				t.Fatal(err)
			}
			for _, uid := range mine {
				if strings.HasPrefix(a.ID, g.cluster+"/"+a.RuleID+"/"+uid+"/") {
					out[a.RuleID+"/"+uid+"/"+strings.TrimPrefix(a.ID, g.cluster+"/"+a.RuleID+"/"+uid+"/")]++
				}
			}
		}
		return out
	}
	privAlerts := func(alerts map[string]int) int {
		n := 0
		for id, c := range alerts {
			if strings.HasPrefix(id, privCheck+"/") {
				n += c
			}
		}
		return n
	}
	testenv.WaitFor(t, "alerts of the three privileged findings", 30*time.Second, func() bool { return privAlerts(myAlerts()) == 3 })

	// Restart both: the source republishes every object it lists, the
	// consumer rebuilds from the topic and restores from the state index.
	// Nothing is decided again about the test's objects.
	before, alertsBefore := g.transitions(t, mine), myAlerts()
	stopPosture()
	stopCollector()
	reg2 := prometheus.NewRegistry()
	g.startPostureReal(t, reg2)
	g.startCollector(t)
	testenv.WaitFor(t, "both partitions rebuilt", 60*time.Second, func() bool {
		return testenv.Metric(t, reg2, "kubesift_posture_rebuilds_total") == 2
	})
	// The source's republished objects arrive as unchanged versions.
	testenv.WaitFor(t, "republished objects seen", 60*time.Second, func() bool {
		return testenv.Metric(t, reg2, "kubesift_posture_objects_total", "result", "unchanged") > 0
	})
	after, alertsAfter := g.transitions(t, mine), myAlerts()
	t.Logf("transition documents of the test's objects: %d before the restart, %d after; alert messages %v, then %v",
		before, after, alertsBefore, alertsAfter)
	if after != before {
		t.Errorf("restart added %d transition documents", after-before)
	}
	for id, n := range alertsAfter {
		if n != alertsBefore[id] {
			t.Errorf("alert %s: %d messages after the restart, %d before", id, n, alertsBefore[id])
		}
	}

	// Resolved after the restart, the finding opened before it keeps its
	// times: Restore read them back from the state index.
	keepOpened := g.openingTimes(privCheck, string(keep.UID))
	keepFixed := privilegedDeployment(nsName, false)
	keepFixed.Name, keepFixed.ResourceVersion = "keep", keep.ResourceVersion
	if _, err := g.kube.AppsV1().Deployments(nsName).Update(ctx, keepFixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "fixing the second Deployment resolves", 30*time.Second, func() bool { return g.state(privCheck, string(keep.UID)) == "resolved" })
	if got := g.openingTimes(privCheck, string(keep.UID)); got != keepOpened || strings.Contains(got, "<nil>") {
		t.Errorf("resolved after the restart: %s, want %s as before it", got, keepOpened)
	}
}
