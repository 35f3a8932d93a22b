package elasticsearch

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

func finding(cluster, uid string, state posture.State, rv string) ecs.Finding {
	return ecs.Finding{Decision: posture.Decision{
		ID: cluster + "/posture-host-pid/" + uid, Cluster: cluster, State: state, CheckID: "posture-host-pid",
		Title: "Pod shares the host's PID namespace", CIS: []string{"5.2.3"}, CISVersion: "1.10",
		Severity: rules.SeverityHigh, Object: posture.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web-" + uid, UID: uid},
		Message: "Deployment shop/web sets hostPID", Remediation: "Remove hostPID from the pod spec.", ResourceVersion: rv,
	}}
}

// findingResults records the done of each finding by its transition _id.
type findingResults struct {
	mu sync.Mutex
	m  map[string]sink.Result
}

func (r *findingResults) done(t testing.TB) func(f *ecs.Finding, res sink.Result) {
	return func(f *ecs.Finding, res sink.Result) {
		r.mu.Lock()
		defer r.mu.Unlock()
		id := ecs.TransitionID(&f.Decision)
		if _, twice := r.m[id]; twice {
			t.Errorf("done twice for %s", id)
		}
		r.m[id] = res
	}
}

func (r *findingResults) get(id string) (sink.Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.m[id]
	return res, ok
}

func TestFindingsWriterOutcomes(t *testing.T) {
	// Each finding's two documents are answered by the suffix of the
	// finding's uid: "ok", "late" (state 409: a newer state won), "replay"
	// (both 409), "busy" (state 429 once), "bad" (transition 400).
	var mu sync.Mutex
	seen := map[string]int{}
	f := &fakeES{answer: func(_ int, ids []string) (int, []string) {
		mu.Lock()
		defer mu.Unlock()
		items := make([]string, len(ids))
		for i, id := range ids {
			seen[id]++
			transition := strings.Count(id, "/") > 2
			items[i] = itemJSON(201, "")
			switch {
			case strings.HasSuffix(id, "/late") || (strings.Contains(id, "/replay") && !transition):
				items[i] = itemJSON(409, "version_conflict_engine_exception")
			case strings.Contains(id, "/replay"):
				items[i] = itemJSON(409, "version_conflict_engine_exception")
			case strings.HasSuffix(id, "/busy") && seen[id] == 1:
				items[i] = itemJSON(429, "es_rejected_execution_exception")
			case strings.Contains(id, "/bad/"):
				items[i] = itemJSON(400, "mapper_parsing_exception")
			}
		}
		return 200, items
	}}
	w, reg := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.Workers = 1 })
	fw, err := NewFindingsWriter(w, config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	invalid := finding("c", "invalid", posture.StateOpen, "not-a-revision")
	fs := []ecs.Finding{
		finding("c", "ok", posture.StateOpen, "10"), finding("c", "late", posture.StateOpen, "11"),
		finding("c", "replay", posture.StateResolved, "12"), finding("c", "busy", posture.StateReopened, "13"),
		finding("c", "bad", posture.StateOpen, "14"), invalid,
	}
	res := &findingResults{m: map[string]sink.Result{}}
	ctx := context.Background()
	if err := fw.Write(ctx, fs, res.done(t)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uid    string
		want   sink.Status
		reason string
	}{
		{"ok", sink.Indexed, ""},
		{"late", sink.Indexed, ""}, // the transition is history; the state kept the newer one
		{"replay", sink.Duplicate, ""},
		{"busy", sink.Indexed, ""},
		{"bad", sink.Rejected, "transition: mapper_parsing_exception"},
		{"invalid", sink.Rejected, "observed_resource_version"},
	}
	for _, tc := range tests {
		var d *ecs.Finding
		for i := range fs {
			if fs[i].Object.UID == tc.uid {
				d = &fs[i]
			}
		}
		got, ok := res.get(ecs.TransitionID(&d.Decision))
		if !ok || got.Status != tc.want || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: %+v (done %v), want %v with %q", tc.uid, got, ok, tc.want, tc.reason)
		}
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kubesift_sink_es_docs_version_conflict_total", nil, 2}, // late and replay states
		{"kubesift_sink_es_docs_duplicate_total", nil, 1},        // the replayed transition
		{"kubesift_sink_es_docs_rejected_total", []string{"reason", "mapper_parsing_exception"}, 1},
		{"kubesift_sink_es_docs_rejected_total", []string{"reason", "invalid_finding"}, 1},
		{"kubesift_sink_es_retries_total", []string{"scope", "item"}, 1},
	} {
		if got := testenv.Metric(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	for _, ids := range f.requests() {
		for _, id := range ids {
			if strings.Contains(id, "invalid") {
				t.Errorf("invalid finding sent: %s", id)
			}
		}
	}
}

func TestFindingsWriterWholeRequestStatuses(t *testing.T) {
	// The one status classifier decides: 429 and 5xx are retried until
	// they pass, 400 is final and the finding Rejected (never nil on a
	// non-2xx).
	tests := []struct {
		name   string
		status int
		want   sink.Status
	}{
		{"429 retried", http.StatusTooManyRequests, sink.Indexed},
		{"503 retried", http.StatusServiceUnavailable, sink.Indexed},
		{"400 rejected", http.StatusBadRequest, sink.Rejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeES{answer: func(n int, ids []string) (int, []string) {
				if n == 1 || tc.status == http.StatusBadRequest {
					return tc.status, nil
				}
				return allCreated(n, ids)
			}}
			w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.Workers = 1 })
			fw, err := NewFindingsWriter(w, config.Default().Sink.Elasticsearch)
			if err != nil {
				t.Fatal(err)
			}
			res := &findingResults{m: map[string]sink.Result{}}
			fs := []ecs.Finding{finding("c", "u1", posture.StateOpen, "10")}
			if err := fw.Write(context.Background(), fs, res.done(t)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, ok := res.get(ecs.TransitionID(&fs[0].Decision))
			if !ok || got.Status != tc.want {
				t.Errorf("%+v (done %v), want %v", got, ok, tc.want)
			}
			if tc.want == sink.Rejected && !strings.Contains(got.Reason, "HTTP 400") {
				t.Errorf("reason %q does not name the status", got.Reason)
			}
		})
	}
}

func TestFindingsWriterClosedWriter(t *testing.T) {
	w, _ := testWriter(t, &fakeES{answer: allCreated}, nil)
	fw, err := NewFindingsWriter(w, config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	called := false
	err = fw.Write(context.Background(), []ecs.Finding{finding("c", "u1", posture.StateOpen, "10")},
		func(*ecs.Finding, sink.Result) { called = true })
	if err != ErrClosed || called {
		t.Errorf("Write after Close: %v, done called %v", err, called)
	}
}

func TestAppendItemVersioned(t *testing.T) {
	tests := []struct {
		name string
		doc  sink.Doc
		want string
	}{
		{"create", sink.Doc{Index: "i", ID: "a", Body: []byte(`{}`)}, `{"create":{"_index":"i","_id":"a"}}`},
		{"external version", sink.Doc{Index: "i", ID: "c/k/u", Body: []byte(`{}`), Version: 25},
			`{"index":{"_index":"i","_id":"c/k/u","version":25,"version_type":"external"}}`},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		appendItem(&buf, tc.doc)
		if got, _, _ := strings.Cut(buf.String(), "\n"); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// realFindings runs Setup with the findings index and streams unique to
// this test (realES) on the test ground's Elasticsearch and returns a
// FindingsWriter on them.
func realFindings(t *testing.T) (*Client, *FindingsWriter, config.ElasticsearchConfig) {
	t.Helper()
	es, cfg := realES(t)
	cfg.FlushInterval = 50 * time.Millisecond
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(WriterOptions{Client: es, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	fw, err := NewFindingsWriter(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return es, fw, cfg
}

// writeFindings writes fs and returns their results in order, once all are
// done.
func writeFindings(t *testing.T, fw *FindingsWriter, fs ...ecs.Finding) []sink.Result {
	t.Helper()
	got := make(chan [2]any, len(fs))
	if err := fw.Write(context.Background(), fs, func(f *ecs.Finding, r sink.Result) { got <- [2]any{f, r} }); err != nil {
		t.Fatal(err)
	}
	out := make([]sink.Result, len(fs))
	timeout := time.After(time.Minute)
	for range fs {
		select {
		case g := <-got:
			f := g[0].(*ecs.Finding)
			for i := range fs {
				if &fs[i] == f {
					out[i] = g[1].(sink.Result)
				}
			}
		case <-timeout:
			t.Fatal("findings not done within a minute")
		}
	}
	return out
}

// stateOf returns the stored state document of a finding and its _version.
func stateOf(t *testing.T, es *Client, index, id string) (string, string, float64) {
	t.Helper()
	doc := getJSON(t, es, "/"+index+"/_doc/"+url.PathEscape(id))
	f := doc["_source"].(map[string]any)["kubesift"].(map[string]any)["finding"].(map[string]any)
	return f["state"].(string), f["observed_resource_version"].(string), doc["_version"].(float64)
}

// TestFindingsVersioningOnRealElasticsearch: a late write never regresses a
// newer state, a resolve by delete (same resourceVersion as its open) wins,
// and a replay of every decision adds no document.
func TestFindingsVersioningOnRealElasticsearch(t *testing.T) {
	es, fw, cfg := realFindings(t)
	tests := []struct {
		name      string
		uid       string
		sequence  []ecs.Finding // written one after another
		wantState string
		wantRV    string
		wantVer   float64
	}{
		{"late open after resolve", "late", []ecs.Finding{
			finding("c", "late", posture.StateOpen, "10"), finding("c", "late", posture.StateResolved, "12"),
			finding("c", "late", posture.StateOpen, "11"),
		}, "resolved", "12", 25},
		{"resolve by delete carries the open's resourceVersion", "deleted", []ecs.Finding{
			finding("c", "deleted", posture.StateOpen, "20"), finding("c", "deleted", posture.StateResolved, "20"),
			finding("c", "deleted", posture.StateOpen, "20"),
		}, "resolved", "20", 41},
		{"reopen after resolve", "reopened", []ecs.Finding{
			finding("c", "reopened", posture.StateOpen, "30"), finding("c", "reopened", posture.StateResolved, "31"),
			finding("c", "reopened", posture.StateReopened, "35"),
		}, "reopened", "35", 70},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, f := range tc.sequence {
				r := writeFindings(t, fw, f)[0]
				if r.Status == sink.Rejected {
					t.Fatalf("step %d: %+v", i, r)
				}
			}
			id := tc.sequence[0].ID
			st, rv, ver := stateOf(t, es, cfg.Findings.Index, id)
			if st != tc.wantState || rv != tc.wantRV || ver != tc.wantVer {
				t.Errorf("state %s at %s, _version %v; want %s at %s, %v", st, rv, ver, tc.wantState, tc.wantRV, tc.wantVer)
			}
			// A restart replays every decision: nothing changes, and every
			// finding is done as a Duplicate.
			for _, r := range writeFindings(t, fw, tc.sequence...) {
				if r.Status != sink.Duplicate {
					t.Errorf("replay: %+v", r)
				}
			}
			if st2, rv2, ver2 := stateOf(t, es, cfg.Findings.Index, id); st2 != st || rv2 != rv || ver2 != ver {
				t.Errorf("replay changed the state: %s %s %v", st2, rv2, ver2)
			}
		})
	}
	if n := count(t, es, cfg.Findings.Index); n != len(tests) {
		t.Errorf("%d state documents, want one per finding (%d)", n, len(tests))
	}
	// Transitions are history: each distinct (state, resourceVersion) of
	// every sequence once, the late one included, none twice after the
	// replay: 3 + 2 (the third step of "deleted" repeats its first) + 3.
	if n := count(t, es, cfg.Findings.TransitionsStream); n != 8 {
		t.Errorf("%d transition documents, want 8", n)
	}
}

// postJSON POSTs body to path and decodes the answer; non-2xx fails the test.
func postJSON(t *testing.T, es *Client, path, body string) map[string]any {
	t.Helper()
	return requestJSON(t, es, http.MethodPost, path, []byte(body))
}

// TestFindingsFieldsOnRealElasticsearch: every mapped field has the type
// Kibana will need, and the aggregations and searches dashboards will run
// work on the state index, the transitions stream and the scores stream.
func TestFindingsFieldsOnRealElasticsearch(t *testing.T) {
	es, fw, cfg := realFindings(t)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var fs []ecs.Finding
	for i, c := range []struct {
		sev   rules.Severity
		cis   []string
		state posture.State
	}{
		{rules.SeverityCritical, []string{"5.2.2"}, posture.StateOpen},
		{rules.SeverityHigh, []string{"5.2.3"}, posture.StateOpen},
		{rules.SeverityHigh, []string{"5.2.3", "5.2.4"}, posture.StateResolved},
		{rules.SeverityLow, []string{"5.7.4"}, posture.StateReopened},
	} {
		f := finding("prod", fmt.Sprintf("u%d", i), c.state, fmt.Sprint(100+i))
		f.Severity, f.CIS, f.At = c.sev, c.cis, base.Add(time.Duration(i)*time.Hour)
		f.Actor = &ecs.Actor{User: "alice", Groups: []string{"devs"}, UserAgent: "kubectl/v1.31", SourceIP: "10.0.0.7", AuditID: fmt.Sprint("a", i)}
		fs = append(fs, f)
	}
	for _, r := range writeFindings(t, fw, fs...) {
		if r.Status != sink.Indexed {
			t.Fatalf("%+v", r)
		}
	}
	total := posture.Score{Passed: 90, Failed: 10, PassedWeight: 300, Weight: 360, Percent: 83.3}
	scoreDone := make(chan sink.Result, 1)
	if err := fw.WriteScores(context.Background(), "prod", total, map[string]posture.Score{
		"shop": {Passed: 9, Failed: 1, PassedWeight: 30, Weight: 36, Percent: 83.3}, "web": {Percent: 100},
	}, base, func(r sink.Result) { scoreDone <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-scoreDone:
		if r.Status != sink.Indexed {
			t.Fatalf("scores: %+v", r)
		}
	case <-time.After(time.Minute):
		t.Fatal("scores not done within a minute")
	}

	findingFields := map[string]string{
		"kubesift.finding.id": "keyword", "kubesift.finding.state": "keyword", "kubesift.finding.check_id": "keyword",
		"kubesift.finding.cis": "keyword", "kubesift.finding.cis_version": "keyword", "kubesift.finding.severity": "keyword",
		"kubesift.finding.object.kind": "keyword", "kubesift.finding.object.namespace": "keyword",
		"kubesift.finding.object.name": "keyword", "kubesift.finding.object.uid": "keyword",
		"kubesift.finding.title": "text", "kubesift.finding.message": "text", "kubesift.finding.message.keyword": "keyword",
		"kubesift.finding.remediation": "text", "kubesift.finding.observed_resource_version": "keyword",
		"kubesift.finding.version": "long", "kubesift.finding.first_seen": "date", "kubesift.finding.opened_at": "date",
		"kubesift.finding.resolved_at": "date", "kubesift.finding.last_transition_at": "date",
		"kubesift.finding.actor.user": "keyword", "kubesift.finding.actor.groups": "keyword",
		"kubesift.finding.actor.user_agent": "keyword", "kubesift.finding.actor.source_ip": "ip",
		"kubesift.finding.actor.audit_id": "keyword", "kubesift.finding.actor.pre_existing": "boolean",
		"kubesift.finding.mitre.tactics": "keyword", "orchestrator.cluster.name": "keyword", "@timestamp": "date",
	}
	scores := map[string]string{
		"kubesift.posture_score.scope": "keyword", "kubesift.posture_score.percent": "float",
		"kubesift.posture_score.weight": "long", "kubesift.posture_score.failed": "long",
		"orchestrator.namespace": "keyword", "@timestamp": "date",
	}
	for index, fields := range map[string]map[string]string{
		cfg.Findings.Index: findingFields, cfg.Findings.TransitionsStream: findingFields, cfg.Findings.ScoresStream: scores,
	} {
		for f, typ := range fields {
			if got := fieldType(t, es, index, f); got != typ {
				t.Errorf("%s %s: %s, want %s", index, f, got, typ)
			}
		}
	}

	count(t, es, cfg.Findings.Index) // refreshes
	count(t, es, cfg.Findings.TransitionsStream)
	count(t, es, cfg.Findings.ScoresStream)
	terms := func(index, field string) map[string]float64 {
		a := postJSON(t, es, "/"+index+"/_search", `{"size":0,"aggs":{"a":{"terms":{"field":"`+field+`"}}}}`)
		out := map[string]float64{}
		for _, b := range a["aggregations"].(map[string]any)["a"].(map[string]any)["buckets"].([]any) {
			bm := b.(map[string]any)
			out[fmt.Sprint(bm["key"])] = bm["doc_count"].(float64)
		}
		return out
	}
	aggs := []struct {
		index, field string
		want         map[string]float64
	}{
		{cfg.Findings.Index, "kubesift.finding.severity", map[string]float64{"critical": 1, "high": 2, "low": 1}},
		{cfg.Findings.Index, "kubesift.finding.cis", map[string]float64{"5.2.2": 1, "5.2.3": 2, "5.2.4": 1, "5.7.4": 1}},
		{cfg.Findings.Index, "kubesift.finding.state", map[string]float64{"open": 2, "resolved": 1, "reopened": 1}},
		{cfg.Findings.Index, "kubesift.finding.object.kind", map[string]float64{"Deployment": 4}},
		{cfg.Findings.Index, "kubesift.finding.actor.user", map[string]float64{"alice": 4}},
		{cfg.Findings.TransitionsStream, "kubesift.finding.check_id", map[string]float64{"posture-host-pid": 4}},
		{cfg.Findings.ScoresStream, "kubesift.posture_score.scope", map[string]float64{"cluster": 1, "namespace": 2}},
	}
	for _, a := range aggs {
		if got := terms(a.index, a.field); fmt.Sprint(got) != fmt.Sprint(a.want) {
			t.Errorf("terms %s on %s: %v, want %v", a.field, a.index, got, a.want)
		}
	}
	// Transitions per hour, as a timeline would draw them.
	h := postJSON(t, es, "/"+cfg.Findings.TransitionsStream+"/_search",
		`{"size":0,"aggs":{"h":{"date_histogram":{"field":"@timestamp","fixed_interval":"1h"}}}}`)
	if b := h["aggregations"].(map[string]any)["h"].(map[string]any)["buckets"].([]any); len(b) != 4 {
		t.Errorf("date histogram: %v", b)
	}
	searches := []struct {
		index, query string
		want         float64
	}{
		{cfg.Findings.Index, `{"match":{"kubesift.finding.remediation":"hostPID"}}`, 4},
		{cfg.Findings.Index, `{"match":{"kubesift.finding.message":"sets"}}`, 4},
		{cfg.Findings.Index, `{"range":{"kubesift.finding.opened_at":{"gte":"2026-03-01T11:00:00Z"}}}`, 2}, // u1 open, u3 reopened
		{cfg.Findings.Index, `{"exists":{"field":"kubesift.finding.resolved_at"}}`, 1},
		{cfg.Findings.Index, `{"term":{"kubesift.finding.actor.source_ip":"10.0.0.0/8"}}`, 4},
		{cfg.Findings.ScoresStream, `{"range":{"kubesift.posture_score.percent":{"lt":90}}}`, 2},
	}
	for _, s := range searches {
		r := postJSON(t, es, "/"+s.index+"/_search", `{"size":0,"track_total_hits":true,"query":`+s.query+`}`)
		if got := r["hits"].(map[string]any)["total"].(map[string]any)["value"].(float64); got != s.want {
			t.Errorf("%s on %s: %v hits, want %v", s.query, s.index, got, s.want)
		}
	}
}
