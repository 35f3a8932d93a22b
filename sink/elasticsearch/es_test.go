package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// realES returns a client for the test ground's Elasticsearch and a
// configuration whose streams and alerts index are unique to this test
// (test name + time), deleted again at the end. The shared component
// templates are left: every run writes identical content to them.
func realES(t testing.TB) (*Client, config.ElasticsearchConfig) {
	t.Helper()
	testenv.Short(t)
	u := testenv.ElasticsearchURL(t)
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{u}
	ns := nonAlnum.ReplaceAllString(strings.ToLower(t.Name()), "")
	if len(ns) > 40 {
		ns = ns[:40]
	}
	ns += fmt.Sprint(time.Now().UnixNano())
	cfg.Streams = config.ESStreamsConfig{
		Audit: "logs-kstest.audit-" + ns, Events: "logs-kstest.events-" + ns, Posture: "logs-kstest.posture-" + ns,
	}
	cfg.AlertsIndex = "kstest-alerts-" + ns
	cfg.Findings = config.ESFindingsConfig{
		Index: "kstest-findings-" + ns, TransitionsStream: "logs-kstest.transitions-" + ns, ScoresStream: "metrics-kstest.scores-" + ns,
		UsageIndex: "kstest-usage-" + ns,
	}
	cfg.ILM.Policy = "kstest-" + ns
	es, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanup(es, cfg) })
	return es, cfg
}

// realESSetUp is realES after Setup made its streams and indices, with the
// ECS builder of its configuration.
func realESSetUp(t testing.TB) (*Client, config.ElasticsearchConfig, *ecs.Builder) {
	t.Helper()
	es, cfg := realES(t)
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	b, err := ecs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return es, cfg, b
}

func cleanup(es *Client, cfg config.ElasticsearchConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []string{cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream} {
		Call(ctx, es, http.MethodDelete, "/_data_stream/"+s, nil)
		Call(ctx, es, http.MethodDelete, "/_index_template/"+IndexTemplateName(s), nil)
	}
	for _, idx := range []string{cfg.AlertsIndex, cfg.Findings.Index, cfg.Findings.UsageIndex} {
		Call(ctx, es, http.MethodDelete, "/"+idx, nil)
		Call(ctx, es, http.MethodDelete, "/_index_template/"+IndexTemplateName(idx), nil)
	}
	Call(ctx, es, http.MethodDelete, "/_ilm/policy/"+cfg.ILM.Policy, nil)
}

// getJSON GETs path and decodes the answer; non-2xx fails the test.
func getJSON(t testing.TB, es *Client, path string) map[string]any {
	t.Helper()
	return requestJSON(t, es, http.MethodGet, path, nil)
}

// requestJSON sends a request and decodes the answer; non-2xx fails the
// test.
func requestJSON(t testing.TB, es *Client, method, path string, reqBody []byte) map[string]any {
	t.Helper()
	status, body, _, err := Call(context.Background(), es, method, path, reqBody)
	if err != nil || status/100 != 2 {
		t.Fatalf("%s %s: %d %v %s", method, path, status, err, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func count(t testing.TB, es *Client, index string) int {
	t.Helper()
	if st, b, _, err := Call(context.Background(), es, http.MethodPost, "/"+index+"/_refresh", nil); err != nil || st/100 != 2 {
		t.Fatalf("refresh %s: %d %v %s", index, st, err, b)
	}
	return int(getJSON(t, es, "/"+index+"/_count")["count"].(float64))
}

func TestSetupIsIdempotent(t *testing.T) {
	es, cfg := realES(t)
	ctx := context.Background()
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	snapshot := func() string {
		var parts []string
		for _, c := range []string{ComponentECS, ComponentAudit, ComponentEvents, ComponentPosture, ComponentAlerts, ComponentFindings, ComponentScores} {
			parts = append(parts, fmt.Sprint(getJSON(t, es, "/_component_template/"+url.PathEscape(c))))
		}
		for _, s := range []string{cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.AlertsIndex,
			cfg.Findings.Index, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream} {
			parts = append(parts, fmt.Sprint(getJSON(t, es, "/_index_template/"+IndexTemplateName(s))))
			parts = append(parts, mappingOf(t, es, s))
		}
		return strings.Join(parts, "\n")
	}
	if err := Setup(ctx, es, cfg, log); err != nil {
		t.Fatal(err)
	}
	first := snapshot()
	if err := Setup(ctx, es, cfg, log); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	if second := snapshot(); second != first {
		t.Errorf("second setup changed templates or mappings:\nfirst:  %.2000s\nsecond: %.2000s", first, second)
	}
	// The streams exist as data streams, the alerts index as an index.
	for _, s := range []string{cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream} {
		ds := getJSON(t, es, "/_data_stream/"+s)["data_streams"].([]any)
		if len(ds) != 1 {
			t.Errorf("data stream %s: %v", s, ds)
		}
	}
	for _, idx := range []string{cfg.AlertsIndex, cfg.Findings.Index, cfg.Findings.UsageIndex} {
		if _, ok := getJSON(t, es, "/"+idx)[idx]; !ok {
			t.Errorf("index %s missing", idx)
		}
	}
	// The test ground has no ILM: one clear warning per run, not an error.
	if n := strings.Count(logs.String(), "no index lifecycle management"); n != 2 {
		t.Errorf("ILM warnings: %d, want one per setup run; logs:\n%s", n, logs.String())
	}
}

// mappingOf returns the mapping of an index or of a data stream's write
// index, without the backing index's name.
func mappingOf(t testing.TB, es *Client, index string) string {
	t.Helper()
	m := getJSON(t, es, "/"+index+"/_mapping")
	var out []string
	for _, v := range m {
		out = append(out, fmt.Sprint(v))
	}
	return strings.Join(out, "|")
}

func TestSetupNamesTheRefusedTemplate(t *testing.T) {
	es, cfg := realES(t)
	// An index pattern Elasticsearch refuses: the error names the template.
	cfg.Streams.Audit = "logs-bad.audit-x,y"
	err := Setup(context.Background(), es, cfg, nil)
	var se *sink.StatusError
	if !errors.As(err, &se) || se.StatusCode/100 != 4 || !strings.Contains(err.Error(), "index template kubesift-logs-bad.audit-x,y") {
		t.Fatalf("err = %v", err)
	}
}

// recordsOf decodes every record of the shared corpus and the rules
// benchmark log.
func corpusRecords(t testing.TB) []*record.Record {
	t.Helper()
	dir := testenv.Corpus(t)
	opts := record.DecodeOptions{Cluster: record.Cluster{Name: "corpus", UID: "corpus-uid"}}
	var recs []*record.Record
	for _, sub := range []string{"elastic-integrations", "falco-k8s-audit"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rs, _ := record.DecodeAll(data, f, opts)
			recs = append(recs, rs...)
		}
	}
	return append(recs, benchRecords(t)...)
}

// benchRecords decodes rules/testdata/bench-audit.log.gz.
func benchRecords(t testing.TB) []*record.Record {
	t.Helper()
	d := record.NewDecoder(bytes.NewReader(testenv.BenchAuditLog(t)), "bench-audit.log", record.DecodeOptions{Cluster: record.Cluster{Name: "bench", UID: "bench-uid"}})
	var recs []*record.Record
	for {
		r, err := d.Next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
}

// writeAll writes docs with a Writer and returns their results by ID.
func writeAll(t testing.TB, es *Client, cfg config.ElasticsearchConfig, docs []sink.Doc) map[string]sink.Result {
	t.Helper()
	w, err := NewWriter(WriterOptions{Client: es, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	res := map[string]sink.Result{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, d := range docs {
		id := d.ID
		if err := w.Add(ctx, d, func(r sink.Result) {
			mu.Lock()
			defer mu.Unlock()
			if _, twice := res[id]; twice {
				t.Errorf("done twice for %s", id)
			}
			res[id] = r
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return res
}

func buildDocs(t testing.TB, b *ecs.Builder, recs []*record.Record) []sink.Doc {
	t.Helper()
	seen := map[string]bool{}
	var docs []sink.Doc
	for _, r := range recs {
		if seen[r.ID] { // the corpus repeats some audit IDs across files
			continue
		}
		seen[r.ID] = true
		d, err := b.Record(r)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		docs = append(docs, d)
	}
	return docs
}

// TestIndexCorpus writes documents of every corpus and benchmark record:
// zero rejections, an exact _count, and a second write of the same IDs is
// all Duplicate with the count unchanged.
func TestIndexCorpus(t *testing.T) {
	es, cfg, b := realESSetUp(t)
	docs := buildDocs(t, b, append(corpusRecords(t), syntheticRecords(t)...))
	perIndex := map[string]int{}
	for _, d := range docs {
		perIndex[d.Index]++
	}
	res := writeAll(t, es, cfg, docs)
	if len(res) != len(docs) {
		t.Fatalf("%d results for %d documents", len(res), len(docs))
	}
	for id, r := range res {
		if r.Status != sink.Indexed {
			t.Errorf("%s: %v %s", id, r.Status, r.Reason)
		}
	}
	for idx, n := range perIndex {
		if got := count(t, es, idx); got != n {
			t.Errorf("_count %s = %d, want %d", idx, got, n)
		}
	}
	again := writeAll(t, es, cfg, docs[:200])
	for id, r := range again {
		if r.Status != sink.Duplicate {
			t.Errorf("re-write %s: %v, want Duplicate", id, r.Status)
		}
	}
	for idx, n := range perIndex {
		if got := count(t, es, idx); got != n {
			t.Errorf("after re-delivery: _count %s = %d, want %d", idx, got, n)
		}
	}
	t.Logf("indexed %d documents (%v)", len(docs), perIndex)
}

// TestMappingConflictRejected sends a document that conflicts with the
// mapping in the same bulk as good ones: it alone is Rejected, with the
// reason, and the others are indexed.
func TestMappingConflictRejected(t *testing.T) {
	es, cfg := realES(t)
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := ecs.New(cfg)
	docs := buildDocs(t, b, benchRecords(t)[:50])
	bad := docs[10]
	// source.ip is an ip field.
	bad.Body = bytes.Replace(bad.Body, []byte(`"@timestamp":`), []byte(`"source":{"ip":"not-an-ip"},"@timestamp":`), 1)
	docs[10] = bad
	res := writeAll(t, es, cfg, docs)
	for _, d := range docs {
		r := res[d.ID]
		if d.ID == bad.ID {
			if r.Status != sink.Rejected || !strings.Contains(r.Reason, "source.ip") || !strings.Contains(r.Reason, "parsing_exception") {
				t.Errorf("conflicting document: %+v", r)
			}
			if strings.Contains(r.Reason, "not-an-ip") {
				t.Errorf("reason carries document content: %s", r.Reason)
			}
			continue
		}
		if r.Status != sink.Indexed {
			t.Errorf("%s: %+v", d.ID, r)
		}
	}
	if got := count(t, es, cfg.Streams.Audit); got != len(docs)-1 {
		t.Errorf("_count = %d, want %d", got, len(docs)-1)
	}
	t.Logf("rejected with: %s", res[bad.ID].Reason)
}

// TestPrebuiltRuleFields writes into logs-kubernetes.audit_logs-<ns>, as a
// user who wants Elastic's prebuilt rules does, and checks that every field
// those rules read exists in the mapping with the expected type.
func TestPrebuiltRuleFields(t *testing.T) {
	es, cfg := realES(t)
	_, _, ns, _ := config.StreamName(cfg.Streams.Audit)
	cfg.Streams.Audit = "logs-kubernetes.audit_logs-" + ns
	t.Cleanup(func() { cleanup(es, cfg) })
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := ecs.New(cfg)
	docs := buildDocs(t, b, corpusRecords(t))
	res := writeAll(t, es, cfg, docs)
	for id, r := range res {
		if r.Status != sink.Indexed {
			t.Errorf("%s: %v %s", id, r.Status, r.Reason)
		}
	}
	want := readFieldList(t)
	for _, f := range want {
		got := fieldType(t, es, cfg.Streams.Audit, f.name)
		if got != f.typ {
			t.Errorf("%s: mapped as %q, want %q", f.name, got, f.typ)
		}
	}
	// The rules filter on the dataset the stream name gives.
	q := `{"query":{"bool":{"filter":[{"term":{"data_stream.dataset":"kubernetes.audit_logs"}},
		{"term":{"kubernetes.audit.annotations.authorization_k8s_io/decision":"allow"}},
		{"term":{"kubernetes.audit.objectRef.resource":"pods"}},{"term":{"kubernetes.audit.verb":"create"}},
		{"term":{"kubernetes.audit.requestObject.spec.containers.securityContext.privileged":true}}]}}}`
	count(t, es, cfg.Streams.Audit)
	st, body, _, err := Call(context.Background(), es, http.MethodPost, "/"+cfg.Streams.Audit+"/_count", []byte(q))
	if err != nil || st != 200 {
		t.Fatalf("count query: %d %v %s", st, err, body)
	}
	var c struct{ Count int }
	json.Unmarshal(body, &c)
	if c.Count == 0 {
		t.Error("the privileged-pod rule's query matches nothing in the corpus (falco's create_nginx_pod_privileged has one)")
	}
	t.Logf("%d fields checked; privileged pod query matched %d documents", len(want), c.Count)
}

type wantField struct{ name, typ string }

func readFieldList(t testing.TB) []wantField {
	t.Helper()
	data, err := os.ReadFile("testdata/prebuilt_rule_fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []wantField
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			t.Fatalf("bad line %q", line)
		}
		out = append(out, wantField{f[0], f[1]})
	}
	if len(out) < 40 {
		t.Fatalf("only %d fields in the list", len(out))
	}
	return out
}

// fieldType asks Elasticsearch for the mapping of one field.
func fieldType(t testing.TB, es *Client, index, field string) string {
	t.Helper()
	m := getJSON(t, es, "/"+index+"/_mapping/field/"+url.PathEscape(field))
	for _, idx := range m {
		fm, _ := idx.(map[string]any)["mappings"].(map[string]any)[field].(map[string]any)
		if fm == nil {
			continue
		}
		for _, leaf := range fm["mapping"].(map[string]any) {
			return fmt.Sprint(leaf.(map[string]any)["type"])
		}
	}
	return "<missing>"
}

// TestAlertsIndex writes alert documents into the alerts index (a plain
// index): indexed once, a re-delivered alert is Duplicate, and the delivery
// state is a keyword the notifier can update.
func TestAlertsIndex(t *testing.T) {
	es, cfg := realES(t)
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := ecs.New(cfg)
	var docs []sink.Doc
	for i := range 5 {
		d, err := b.Alert(testAlert(i))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	for _, r := range writeAll(t, es, cfg, docs) {
		if r.Status != sink.Indexed {
			t.Errorf("%+v", r)
		}
	}
	for _, r := range writeAll(t, es, cfg, docs[:2]) {
		if r.Status != sink.Duplicate {
			t.Errorf("re-delivered alert: %+v", r)
		}
	}
	if got := count(t, es, cfg.AlertsIndex); got != 5 {
		t.Errorf("_count = %d", got)
	}
	for f, typ := range map[string]string{"kubesift.delivery.state": "keyword", "event.severity": "long", "rule.id": "keyword",
		"threat.tactic.id": "keyword", "kubesift.alert.group_key": "keyword", "@timestamp": "date"} {
		if got := fieldType(t, es, cfg.AlertsIndex, f); got != typ {
			t.Errorf("%s: %s, want %s", f, got, typ)
		}
	}
	// The notifier updates the delivery state in place: a plain index
	// allows it.
	upd := `{"doc":{"kubesift":{"delivery":{"state":"delivered"}}}}`
	st, body, _, err := Call(context.Background(), es, http.MethodPost, "/"+cfg.AlertsIndex+"/_update/"+url.PathEscape(docs[0].ID), []byte(upd))
	if err != nil || st != 200 {
		t.Errorf("update delivery state: %d %v %s", st, err, body)
	}
}

func testAlert(i int) *rules.Alert {
	return &rules.Alert{ID: fmt.Sprintf("rule-%d:rec-%d", i, i), RuleID: fmt.Sprintf("rule-%d", i), Title: "t",
		Severity: rules.SeverityHigh, Mitre: rules.Mitre{Tactics: []string{"execution"}, Techniques: []string{"T1609"}},
		RecordID: fmt.Sprintf("rec-%d", i), Source: record.SourceAudit, Cluster: "c", Time: time.Now(), Message: "m", User: "u"}
}

// syntheticRecords are Events of both APIs and objects, with the shapes
// that trouble mappings: dotted label names, kind-specific specs, a status
// that is not an object.
func syntheticRecords(t testing.TB) []*record.Record {
	t.Helper()
	var in []string
	for i := range 60 {
		if i%2 == 0 {
			in = append(in, fmt.Sprintf(`{"kind":"Event","apiVersion":"v1","metadata":{"name":"p%d.1","namespace":"ns","uid":"core-%d","labels":{"app.kubernetes.io/name":"x"},"annotations":{"a.b/c":"d"},"creationTimestamp":"2026-01-01T00:00:00Z"},
				"involvedObject":{"kind":"Pod","namespace":"ns","name":"p%d","uid":"pu%d","fieldPath":"spec.containers{c}"},"reason":"BackOff","message":"Back-off restarting failed container",
				"source":{"component":"kubelet","host":"node-1"},"firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:05:00Z","count":%d,"type":"Warning"}`, i, i, i, i, i+1))
		} else {
			in = append(in, fmt.Sprintf(`{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"p%d.2","namespace":"ns","uid":"ev-%d"},
				"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"kubelet","reportingInstance":"node-1","action":"Pulling","reason":"Pulling",
				"regarding":{"kind":"Pod","namespace":"ns","name":"p%d","uid":"pu%d"},"related":{"kind":"Node","name":"node-1"},"note":"Pulling image","type":"Normal",
				"series":{"count":%d,"lastObservedTime":"2026-01-01T00:05:00.000000Z"}}`, i, i, i, i, i+1))
		}
	}
	recs, errs := record.DecodeAll([]byte(strings.Join(in, "\n")), "synthetic", record.DecodeOptions{Cluster: record.Cluster{Name: "syn"}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	objects := []string{
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"n","uid":"o1","resourceVersion":"5","labels":{"a.b":"c","a":"d"}},"spec":{"hostPID":true,"containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true}}]},"status":{"phase":"Running"}}`,
		`{"kind":"Service","apiVersion":"v1","metadata":{"name":"s","namespace":"n","uid":"o2","resourceVersion":"6"},"spec":{"type":"NodePort","ports":[{"port":80}]},"status":"odd"}`,
		`{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r","uid":"o3","resourceVersion":"7"},"rules":[{"verbs":["*"],"resources":["*"]}]}`,
	}
	for i, o := range objects {
		recs = append(recs, &record.Record{Schema: 1, ID: fmt.Sprintf("o%d:1", i+1), Source: record.SourceObject, APIVersion: "v1",
			Cluster: record.Cluster{Name: "syn"}, EventTime: time.Now().UTC(), ObservedTime: time.Now().UTC(), Object: []byte(o)})
	}
	return recs
}
