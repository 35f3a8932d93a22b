package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/kibana"
)

// TestKibanaPanelsHaveData (real Kafka and Elasticsearch) loads the bundled
// scenario through `kubesift run` on the real Kafka — the collector's
// replay, the processor with the built-in rules and the Elasticsearch sink,
// as `kubesift process` runs them — then writes posture findings and
// scores through the real FindingsWriter (the scenario holds no object
// snapshots for the posture consumer to judge), and runs every panel's
// Elasticsearch search (kibana.Panel.Search) and every control's terms
// aggregation: each must return at least one non-empty bucket, or a hit
// for a saved search.
func TestKibanaPanelsHaveData(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.ElasticsearchURL(t)
	e := newProcEnv(t, "kb", brokers, esURL, 1)
	events, objects := e.topic+"-events", e.topic+"-objects"
	e.createTopics(map[string]int{events: 1, objects: 1})

	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{e.esURL}
	cfg.ILM.Enabled = false
	cfg.FlushInterval = 250 * time.Millisecond
	cfg.Streams = config.ESStreamsConfig{Audit: e.stream, Events: "logs-kubesift.events-" + e.run, Posture: "logs-kubesift.posture-" + e.run}
	cfg.AlertsIndex = e.alertsIdx
	cfg.Findings = config.ESFindingsConfig{Index: "kubesift-findings-" + e.run,
		TransitionsStream: "logs-kubesift.finding_transitions-" + e.run, ScoresStream: "metrics-kubesift.posture_scores-" + e.run}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{events, objects}})
		for _, p := range []string{
			"/_data_stream/" + cfg.Findings.TransitionsStream, "/_data_stream/" + cfg.Findings.ScoresStream, "/" + cfg.Findings.Index,
			"/_index_template/" + elasticsearch.IndexTemplateName(cfg.Findings.TransitionsStream),
			"/_index_template/" + elasticsearch.IndexTemplateName(cfg.Findings.ScoresStream),
			"/_index_template/" + elasticsearch.IndexTemplateName(cfg.Findings.Index),
		} {
			_, _, _ = e.es(ctx, http.MethodDelete, p, nil)
		}
	})

	cfgPath := filepath.Join(e.dir, "kibana.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`cluster: {name: %q}
kafka:
  brokers: [%s]
  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}
processor: {group_id: %q}
notify: {consumer_group: %q}
sink:
  elasticsearch:
    addresses: [%q]
    flush_interval: 250ms
    ilm: {enabled: false}
    streams: {audit: %q, events: %q, posture: %q}
    alerts_index: %q
    findings: {index: %q, transitions_stream: %q, scores_stream: %q}
`, "scenario-"+e.run, quoteAll(brokers), e.topic, events, objects, e.alerts, e.dlq, e.group, e.group+"-notify", e.esURL,
		cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.AlertsIndex,
		cfg.Findings.Index, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "run-kibana", nil, "run", "-c", cfgPath, "--out", filepath.Join(e.dir, "out"),
		filepath.Join(testenv.Root(), "examples", "scenario"))
	if err := p.Wait(5 * time.Minute); err != nil {
		t.Fatalf("kubesift run: %v\n%s", err, testenv.Tail(p.LogPath, 40))
	}
	if !strings.Contains(testenv.Tail(p.LogPath, 200), "kubesift run done") {
		t.Fatalf("kubesift run did not finish:\n%s", testenv.Tail(p.LogPath, 40))
	}
	writeFindings(t, cfg, "scenario-"+e.run)

	views := kibana.Views(cfg)
	for _, idx := range views {
		_, _, _ = e.es(context.Background(), http.MethodPost, "/"+idx+"/_refresh", nil)
	}
	checked := 0
	for _, d := range kibana.Dashboards() {
		for i := range d.Panels {
			pn := &d.Panels[i]
			n, err := searchBuckets(e, views[pn.View], pn.Search(), len(pn.Buckets), pn.Vis == kibana.Search)
			if err != nil {
				t.Errorf("dashboard %s, panel %s (%s): %v", d.ID, pn.ID, views[pn.View], err)
				continue
			}
			t.Logf("%s/%s: %d", d.ID, pn.ID, n)
			checked++
		}
		for _, c := range d.Controls {
			ctl := kibana.Panel{Vis: kibana.Table, Buckets: []kibana.Agg{kibana.By(c.Field, "", 10)}}
			if _, err := searchBuckets(e, views[c.View], ctl.Search(), 1, false); err != nil {
				t.Errorf("dashboard %s, control %s: %v", d.ID, c.Title, err)
			}
		}
	}
	t.Logf("%d panels return data", checked)
}

// writeFindings writes open, resolved and reopened findings with actors,
// and cluster and namespace scores, through the real FindingsWriter.
func writeFindings(t *testing.T, cfg config.ElasticsearchConfig, cluster string) {
	t.Helper()
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: client, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := elasticsearch.NewFindingsWriter(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 20, 30, 0, 0, time.UTC)
	finding := func(check, cis, ns, name string, state posture.State, rv int) ecs.Finding {
		uid := fmt.Sprintf("uid-%s-%s", ns, name)
		return ecs.Finding{
			Decision: posture.Decision{ID: cluster + "/" + check + "/" + uid, Cluster: cluster, State: state, CheckID: check,
				Title: check, CIS: []string{cis}, CISVersion: "1.9", Severity: rules.SeverityHigh,
				Object:  posture.ObjectRef{Kind: "Pod", Namespace: ns, Name: name, UID: uid},
				Message: check + " on " + name, ResourceVersion: fmt.Sprint(rv),
				Actor: &posture.Actor{User: "system:serviceaccount:shop-dtlm:ci-deployer", AuditID: "audit-" + name}},
			At: at.Add(time.Duration(rv) * time.Second),
		}
	}
	fs := []ecs.Finding{
		finding("privileged-container", "5.2.2", "shop-dtlm", "cart", posture.StateOpen, 100),
		finding("host-pid", "5.2.3", "ops-dtlm", "relay", posture.StateOpen, 101),
		finding("run-as-root", "5.2.7", "payments-dtlm", "ledger", posture.StateOpen, 102),
		finding("run-as-root", "5.2.7", "shop-dtlm", "cart", posture.StateOpen, 103),
		finding("run-as-root", "5.2.7", "shop-dtlm", "cart", posture.StateResolved, 104),
		finding("host-pid", "5.2.3", "ops-dtlm", "relay", posture.StateResolved, 105),
		finding("host-pid", "5.2.3", "ops-dtlm", "relay", posture.StateReopened, 106),
	}
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	wg.Add(len(fs) + 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One at a time: the state document of one finding is versioned, and
	// each transition must land after the one before it.
	for i := range fs {
		if err := fw.Write(ctx, fs[i:i+1], func(f *ecs.Finding, r sink.Result) {
			defer wg.Done()
			if r.Status == sink.Rejected {
				mu.Lock()
				failed = append(failed, f.ID+": "+r.Reason)
				mu.Unlock()
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	score := func(passed, failed int) posture.Score {
		return posture.Score{Passed: passed, Failed: failed, PassedWeight: passed * 3, Weight: (passed + failed) * 3,
			Percent: 100 * float64(passed) / float64(passed+failed)}
	}
	if err := fw.WriteScores(ctx, cluster, score(40, 3), map[string]posture.Score{
		"shop-dtlm": score(10, 1), "ops-dtlm": score(8, 1), "payments-dtlm": score(12, 1),
	}, at.Add(time.Hour), func(r sink.Result) {
		defer wg.Done()
		if r.Status == sink.Rejected {
			mu.Lock()
			failed = append(failed, "scores: "+r.Reason)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(failed) > 0 {
		t.Fatalf("findings rejected: %v", failed)
	}
}

// searchBuckets runs body on index and returns the number of innermost
// non-empty buckets with every metric set (hits for a saved search); zero
// is an error.
func searchBuckets(e *procEnv, index string, body map[string]any, depth int, hits bool) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, resp, err := e.es(ctx, http.MethodPost, "/"+index+"/_search", b)
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("search: %d %v %.500s", code, err, resp)
	}
	var res struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations map[string]any `json:"aggregations"`
	}
	if err := json.Unmarshal(resp, &res); err != nil {
		return 0, err
	}
	n := res.Hits.Total.Value
	if !hits {
		if depth == 0 {
			// A metric panel: the metrics of the whole result.
			if !metricsSet(res.Aggregations) {
				return 0, fmt.Errorf("metrics empty: %.300s", resp)
			}
		} else {
			n = innerBuckets(res.Aggregations, 0, depth)
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("no data: %.300s", resp)
	}
	return n, nil
}

// innerBuckets counts the buckets at depth (b0 > b1 > …) with documents
// and every metric set.
func innerBuckets(aggs map[string]any, level, depth int) int {
	if level == depth {
		if metricsSet(aggs) {
			return 1
		}
		return 0
	}
	agg, _ := aggs[fmt.Sprintf("b%d", level)].(map[string]any)
	buckets, _ := agg["buckets"].([]any)
	n := 0
	for _, b := range buckets {
		bm, _ := b.(map[string]any)
		if c, _ := bm["doc_count"].(float64); c > 0 {
			n += innerBuckets(bm, level+1, depth)
		}
	}
	return n
}

// metricsSet reports whether every mN metric in aggs has a value (a
// top_hits metric: a hit).
func metricsSet(aggs map[string]any) bool {
	for k, v := range aggs {
		if !strings.HasPrefix(k, "m") {
			continue
		}
		m, _ := v.(map[string]any)
		if h, ok := m["hits"].(map[string]any); ok {
			if hs, _ := h["hits"].([]any); len(hs) == 0 {
				return false
			}
			continue
		}
		if m["value"] == nil {
			return false
		}
	}
	return true
}
