package posture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// fixtureRulesDir writes the rule file a scan of the fixture assumes: its
// approved registries replace the default list, and its exemptions
// (namespace, workload, image repository, any registry) are appended to the
// default ones, which also pin the registry.
func fixtureRulesDir(t *testing.T, exp expectations) string {
	t.Helper()
	dir := t.TempDir()
	lists := "lists:\n- name: approved_registries\n  items: [" + strings.Join(exp.ApprovedRegistries, ", ") + "]\n" +
		"- name: posture_exemptions\n  append: true\n  items:\n"
	for _, x := range exp.Exemptions {
		lists += "  - " + x.Namespace + "/" + x.Workload + "/*/" + x.ImageRepository + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture.yaml"), []byte(lists), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// applyFixture applies every planted set under run and returns the uids
// the server gave the objects; the sets are removed when the test ends.
func applyFixture(t *testing.T, g *testenv.KubeClient, run string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	uids := map[string]bool{}
	for _, s := range loadSets(t, run) {
		t.Cleanup(func() { g.RemoveAll(t, s.objs) })
		for _, o := range s.objs {
			got, _, err := g.Apply(ctx, o, false)
			if err != nil {
				t.Fatalf("%s: %s: %v", s.file, keyOf(o), err)
			}
			uids[string(got.GetUID())] = true
		}
	}
	return uids
}

// verdict is what the comparison holds equal for one (check, object uid).
type verdict struct {
	Severity string
	CIS      string
}

// continuousGround is a `kubesift process --posture` built by
// pipeline.NewProcessor on the test ground's Kafka and Elasticsearch under
// names of its own, fed by the objects source.
type continuousGround struct {
	cfg     *config.Config
	cluster string
}

func newContinuousGround(t *testing.T, rulesDir string) *continuousGround {
	t.Helper()
	testenv.Short(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	sfx := hex.EncodeToString(b[:])
	cfg := config.Default()
	broker := testenv.KafkaBrokers(t)[0]
	prefix := "it-agree-" + sfx
	cfg.Kafka.Brokers = []string{broker}
	cfg.Kafka.Topics = config.TopicsConfig{Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects",
		Alerts: prefix + ".alerts", DLQ: prefix + ".dlq"}
	testenv.CreateTopicConfigs(t, broker,
		kafka.TopicConfig{Topic: cfg.Kafka.Topics.Audit, NumPartitions: 1},
		kafka.TopicConfig{Topic: cfg.Kafka.Topics.Events, NumPartitions: 1},
		kafka.TopicConfig{Topic: cfg.Kafka.Topics.Objects, NumPartitions: 2,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}},
		kafka.TopicConfig{Topic: cfg.Kafka.Topics.Alerts, NumPartitions: 1},
		kafka.TopicConfig{Topic: cfg.Kafka.Topics.DLQ, NumPartitions: 1})

	es := &cfg.Sink.Elasticsearch
	es.Addresses = []string{testenv.ElasticsearchURL(t)}
	es.FlushInterval = 50 * time.Millisecond
	es.Streams = config.ESStreamsConfig{Audit: "logs-kstest.audit-" + sfx, Events: "logs-kstest.events-" + sfx, Posture: "logs-kstest.posture-" + sfx}
	es.AlertsIndex = "kstest-alerts-" + sfx
	es.Findings = config.ESFindingsConfig{Index: "kstest-findings-" + sfx,
		TransitionsStream: "logs-kstest.transitions-" + sfx, ScoresStream: "metrics-kstest.scores-" + sfx}
	es.ILM.Policy = "kstest-" + sfx

	pc := &cfg.Processor
	pc.GroupID = prefix + "-records"
	pc.SessionTimeout = 6 * time.Second
	pc.HeartbeatInterval = 300 * time.Millisecond
	pc.RebalanceTimeout = 10 * time.Second
	pc.CommitInterval = 100 * time.Millisecond
	pc.FetchMaxWait = 100 * time.Millisecond
	pc.Rules.Dirs = []string{rulesDir}
	pc.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: prefix + "-posture", AlertSeverity: "high", ScoreInterval: time.Second}

	g := &continuousGround{cfg: &cfg, cluster: prefix}
	t.Cleanup(g.cleanupES)
	return g
}

func (g *continuousGround) cleanupES() {
	es := g.cfg.Sink.Elasticsearch
	testenv.DeleteES(es.Addresses[0],
		[]string{es.Streams.Audit, es.Streams.Events, es.Streams.Posture, es.Findings.TransitionsStream, es.Findings.ScoresStream},
		[]string{es.AlertsIndex, es.Findings.Index}, elasticsearch.IndexTemplateName, es.ILM.Policy)
}

// do sends one request to the ground's Elasticsearch.
func (g *continuousGround) do(method, path, body string) (int, []byte) {
	return testenv.ESDo(g.cfg.Sink.Elasticsearch.Addresses[0], method, path, body)
}

// start runs the processor with its posture consumer and the objects
// source until the test ends, with the processor's metrics in reg. ready
// receives the processor's readiness as /readyz would.
func (g *continuousGround) start(t *testing.T, kube *testenv.KubeClient, reg prometheus.Registerer, ready func(error)) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	b, err := pipeline.NewProcessor(ctx, g.cfg, pipeline.ProcessorDeps{Registerer: reg, Logger: log,
		SetupStore: true, Ready: ready})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p := g.cfg.Publish
	p.Spool.Dir = t.TempDir()
	p.BatchTimeout = 5 * time.Millisecond
	pub, err := publish.New(publish.Options{Kafka: g.cfg.Kafka, Publish: p, Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		cancel()
		_ = b.Discard()
		t.Fatal(err)
	}
	oc := config.DefaultObjectsConfig()
	oc.Enabled = true
	oc.LeaderElection.Enabled = false
	oc.Batch.MaxWait = 10 * time.Millisecond
	src, err := objects.New(oc, record.Cluster{Name: g.cluster}, kube.CS, pub, nil, prometheus.NewRegistry(), log)
	if err != nil {
		cancel()
		_ = b.Discard()
		t.Fatal(err)
	}
	grp := lifecycle.New(log)
	b.Add(grp)
	grp.Add("objects source", src.Run)
	done := make(chan error, 1)
	go func() { done <- grp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer ccancel()
		if err := pub.Close(cctx); err != nil {
			t.Errorf("publisher close: %v", err)
		}
	})
}

// openFindings reads the open (and reopened) findings of the objects uids
// from the findings index.
func (g *continuousGround) openFindings(uids map[string]bool) (map[string]verdict, error) {
	idx := g.cfg.Sink.Elasticsearch.Findings.Index
	g.do(http.MethodPost, "/"+idx+"/_refresh", "")
	list := make([]string, 0, len(uids))
	for u := range uids {
		list = append(list, u)
	}
	q, _ := json.Marshal(map[string]any{"size": 10000, "query": map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"orchestrator.cluster.name": g.cluster}},
		map[string]any{"terms": map[string]any{"kubesift.finding.object.uid": list}},
		map[string]any{"terms": map[string]any{"kubesift.finding.state": []string{"open", "reopened"}}},
	}}}})
	status, body := g.do(http.MethodPost, "/"+idx+"/_search", string(q))
	if status != http.StatusOK {
		return nil, fmt.Errorf("search %s: %d %s", idx, status, body)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Kubesift struct {
						Finding struct {
							CheckID  string   `json:"check_id"`
							Severity string   `json:"severity"`
							CIS      []string `json:"cis"`
							Object   struct {
								UID string `json:"uid"`
							} `json:"object"`
						} `json:"finding"`
					} `json:"kubesift"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("search %s: %w", idx, err)
	}
	out := map[string]verdict{}
	for _, h := range res.Hits.Hits {
		f := h.Source.Kubesift.Finding
		out[f.CheckID+" "+f.Object.UID] = verdict{Severity: f.Severity, CIS: strings.Join(f.CIS, ",")}
	}
	return out, nil
}

// diffVerdicts describes how got differs from want, "" when equal.
func diffVerdicts(want, got map[string]verdict) string {
	var lines []string
	for k, w := range want {
		switch g, ok := got[k]; {
		case !ok:
			lines = append(lines, "scan only: "+k)
		case g != w:
			lines = append(lines, fmt.Sprintf("differ: %s scan %+v, continuous %+v", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, "continuous only: "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestScanAgreesWithContinuousOnRealGround (takes the shared lock of the
// test ground) applies the planted fixture to the real kube-apiserver,
// runs `kubesift process --posture` as NewProcessor builds it (objects
// source → real Kafka → posture consumer → real Elasticsearch) with the
// fixture's rules, and the built binary's `posture scan` with the same
// rules; the open findings on the fixture's objects in the findings index
// must equal the scan's, compared on (check, object uid), severity and CIS
// items. The processor reports ready only once the posture consumer has
// rebuilt both partitions. The scan sees the cluster once; the continuous path is waited for
// until it shows the same set.
func TestScanAgreesWithContinuousOnRealGround(t *testing.T) {
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	testenv.SharedLock(t)
	exp := loadExpectations(t)
	rulesDir := fixtureRulesDir(t, exp)
	kube := newGround(t)
	run := runPrefix()
	t.Logf("run prefix %s", run)
	g := newContinuousGround(t, rulesDir)
	uids := applyFixture(t, kube, run)

	// /readyz: ready only once both consumers are members and the posture
	// consumer has rebuilt both partitions of the objects topic.
	reg := prometheus.NewRegistry()
	var readiness atomic.Pointer[string]
	g.start(t, kube, reg, func(err error) {
		s := fmt.Sprint(err)
		readiness.Store(&s)
	})
	testenv.WaitForNil(t, "kubesift process --posture ready", time.Minute, func() error {
		if s := readiness.Load(); s == nil || *s != "<nil>" {
			return fmt.Errorf("readiness %v", s)
		}
		return nil
	})
	if n := testenv.Metric(t, reg, "kubesift_posture_rebuilds_total"); n != 2 {
		t.Errorf("ready after %v rebuilds, want both partitions rebuilt", n)
	}
	findings, _, stderr, took := runScan(t, kubeconfig, rulesDir, "critical")
	t.Logf("scan: %d findings on the whole ground in %v; %s", len(findings), took.Round(time.Millisecond), strings.TrimSpace(stderr))
	want := map[string]verdict{}
	for _, f := range findings {
		if uids[f.Object.UID] {
			want[f.CheckID+" "+f.Object.UID] = verdict{Severity: f.Severity, CIS: strings.Join(f.CIS, ",")}
		}
	}
	if len(want) < len(uids)/2 {
		t.Fatalf("the scan reports %d findings on the %d fixture objects; the fixture plants more", len(want), len(uids))
	}
	start := time.Now()
	testenv.WaitForNil(t, "the findings index to agree with the scan", 2*time.Minute, func() error {
		got, err := g.openFindings(uids)
		if err != nil {
			return err
		}
		if d := diffVerdicts(want, got); d != "" {
			return fmt.Errorf("the findings index and the scan differ:\n%s", d)
		}
		return nil
	})
	t.Logf("%d open findings on %d fixture objects agree, finding for finding (continuous path caught up %v after the scan)",
		len(want), len(uids), time.Since(start).Round(time.Millisecond))
}
