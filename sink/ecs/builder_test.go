package ecs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testBuilder(t testing.TB) *Builder {
	t.Helper()
	cfg := config.Default().Sink.Elasticsearch
	cfg.MaxBodyBytes = 8 << 10
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return fixedNow }
	return b
}

func decodeOne(t testing.TB, doc string) *record.Record {
	t.Helper()
	recs, errs := record.DecodeAll([]byte(doc), "test", record.DecodeOptions{
		Cluster: record.Cluster{Name: "prod-eu", UID: "ks-uid"},
		Now:     func() time.Time { return fixedNow },
	})
	if len(errs) > 0 || len(recs) != 1 {
		t.Fatalf("decode: %d records, errors %v", len(recs), errs)
	}
	return recs[0]
}

// field walks a decoded document along a dotted path (keys may contain
// dots themselves only at the last step, e.g. an annotation name).
func field(doc map[string]any, path string) any {
	var cur any = doc
	parts := strings.Split(path, ".")
	for i := 0; i < len(parts); i++ {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok := m[strings.Join(parts[i:], ".")]; ok {
			return v
		}
		cur = m[parts[i]]
	}
	return cur
}

const privilegedPod = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",
"requestURI":"/api/v1/namespaces/default/pods","verb":"create",
"user":{"username":"alice","uid":"u1","groups":["devs","system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":["p"]}},
"impersonatedUser":{"username":"system:admin","groups":["system:masters"]},
"sourceIPs":["10.0.0.7","not-an-ip"],"userAgent":"kubectl/v1.31",
"objectRef":{"resource":"pods","namespace":"default","name":"evil","apiVersion":"v1"},
"responseStatus":{"metadata":{},"code":201},
"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"evil","labels":{"app.kubernetes.io/name":"x","app":"y"},"managedFields":[{"manager":"kubectl"}]},
 "spec":{"hostPID":true,"hostNetwork":"true","volumes":[{"name":"root","hostPath":{"path":"/"}}],
 "containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}},
               {"name":"d","image":"alpine","securityContext":{"privileged":"yes"}}]}},
"requestReceivedTimestamp":"2026-01-01T10:00:00.000001Z","stageTimestamp":"2026-01-01T10:00:00.5Z",
"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC","pod-security.kubernetes.io/enforce-policy":"privileged:latest"}}`

func TestAuditDocument(t *testing.T) {
	b := testBuilder(t)
	r := decodeOne(t, privilegedPod)
	r.Flags = record.Flags{Truncated: true, Redacted: []string{"secret-data"}}
	d, err := b.Record(r)
	if err != nil {
		t.Fatal(err)
	}
	if d.Index != config.DefaultAuditStream || d.ID != "a1:ResponseComplete" {
		t.Fatalf("index %q id %q", d.Index, d.ID)
	}
	var doc map[string]any
	if err := json.Unmarshal(d.Body, &doc); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, d.Body)
	}
	tests := []struct {
		path string
		want any
	}{
		{"@timestamp", "2026-01-01T10:00:00.5Z"},
		{"event.kind", "event"},
		{"event.action", "create"},
		{"event.type", []any{"creation"}},
		{"event.category", []any{"api"}},
		{"event.outcome", "success"},
		{"event.dataset", "kubesift.audit"},
		{"event.id", "a1:ResponseComplete"},
		{"event.ingested", "2026-01-02T03:04:05Z"},
		{"user.name", "alice"},
		{"user.group.name", []any{"devs", "system:authenticated"}},
		{"source.ip", "10.0.0.7"},
		{"user_agent.original", "kubectl/v1.31"},
		{"orchestrator.type", "kubernetes"},
		{"orchestrator.cluster.name", "prod-eu"},
		{"orchestrator.cluster.id", "ks-uid"},
		{"orchestrator.namespace", "default"},
		{"orchestrator.resource.type", "pods"},
		{"orchestrator.resource.name", "evil"},
		{"data_stream.type", "logs"},
		{"data_stream.dataset", "kubesift.audit"},
		{"data_stream.namespace", "default"},
		{"kubernetes.audit.verb", "create"},
		{"kubernetes.audit.objectRef.resource", "pods"},
		{"kubernetes.audit.user.username", "alice"},
		{"kubernetes.audit.user.extra", map[string]any{"authentication.kubernetes.io/pod-name": []any{"p"}}},
		{"kubernetes.audit.impersonatedUser.username", "system:admin"},
		{"kubernetes.audit.sourceIPs", []any{"10.0.0.7", "not-an-ip"}},
		{"kubernetes.audit.responseStatus.code", 201.0},
		{"kubernetes.audit.annotations.authorization_k8s_io/decision", "allow"},
		{"kubernetes.audit.annotations.pod-security_kubernetes_io/enforce-policy", "privileged:latest"},
		{"kubernetes.audit.requestObject.spec.hostPID", true},
		{"kubernetes.audit.requestObject.spec.hostNetwork", "true"},
		{"kubernetes.audit.requestObject.metadata.labels", map[string]any{"app.kubernetes.io/name": "x", "app": "y"}},
		{"kubernetes.audit.requestObject.metadata.managedFields", nil},
		{"kubesift.record.truncated", true},
		{"kubesift.record.redacted", []any{"secret-data"}},
		{"kubesift.record.dropped_fields", []any{"requestObject.spec.containers[1].securityContext.privileged"}},
	}
	for _, tc := range tests {
		if got := field(doc, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	// The privileged container keeps its flag; the bad value alone went.
	cs := field(doc, "kubernetes.audit.requestObject.spec.containers").([]any)
	if len(cs) != 2 || field(cs[0].(map[string]any), "securityContext.privileged") != true ||
		field(cs[1].(map[string]any), "securityContext.privileged") != nil || field(cs[1].(map[string]any), "image") != "alpine" {
		t.Errorf("containers = %v", cs)
	}
}

func TestBodyFitting(t *testing.T) {
	tests := []struct {
		name, body string
		wantOut    string // "" = left out
		dropped    []string
		tooBig     bool
	}{
		{"clean body copied verbatim", `{"spec":{"hostPID":false},"x":{"y":[1,"a"]}}`, `{"spec":{"hostPID":false},"x":{"y":[1,"a"]}}`, nil, false},
		{"object where keyword", `{"spec":{"type":{"a":1}}}`, `{"spec":{}}`, []string{"r.spec.type"}, false},
		{"scalar where object", `{"spec":"x","kind":"Pod"}`, `{"kind":"Pod"}`, []string{"r.spec"}, false},
		{"bad long", `{"spec":{"securityContext":{"runAsUser":"root"}}}`, `{"spec":{"securityContext":{}}}`, []string{"r.spec.securityContext.runAsUser"}, false},
		{"numeric string long kept", `{"spec":{"securityContext":{"runAsUser":"0"}}}`, `{"spec":{"securityContext":{"runAsUser":"0"}}}`, nil, false},
		{"blank key", `{"a":{" ":1,"b":2}}`, `{"a":{"b":2}}`, []string{"r.a. "}, false},
		{"dotted key onto a mapped path", `{"spec.hostPID":"x","a.b":1}`, `{"a.b":1}`, []string{"r.spec.hostPID"}, false},
		{"bad dotted key", `{"a..b":1,"c.":2}`, `{}`, []string{"r.a..b", "r.c."}, false},
		{"JSON patch array", `[{"op":"add","path":"/spec","value":{"a":1}}]`, `[{"op":"add","path":"/spec","value":{"a":1}}]`, nil, false},
		{"array of scalars as object", `["a",{"kind":"Pod"}]`, `[{"kind":"Pod"}]`, []string{"r[0]"}, false},
		{"scalar body", `"hello"`, "", []string{"r"}, false},
		{"flattened labels not an object", `{"metadata":{"labels":"x"}}`, `{"metadata":{}}`, []string{"r.metadata.labels"}, false},
		{"too big", `{"kind":"` + strings.Repeat("x", 200) + `"}`, "", nil, true},
		{"pretty printed is compacted", "{\n \"kind\": \"Pod\"\n}", `{"kind":"Pod"}`, nil, false},
		{"null", `null`, "", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := fitBody([]byte(tc.body), 128, "r")
			if res.tooBig != tc.tooBig {
				t.Fatalf("tooBig = %v", res.tooBig)
			}
			if string(res.raw) != tc.wantOut {
				t.Errorf("out = %s, want %s", res.raw, tc.wantOut)
			}
			got := sortedCopy(res.dropped)
			if !reflect.DeepEqual(got, sortedCopy(tc.dropped)) && !(len(got) == 0 && len(tc.dropped) == 0) {
				t.Errorf("dropped = %q, want %q", got, tc.dropped)
			}
		})
	}
}

func TestBodyTooBigFlagsTheDocument(t *testing.T) {
	b := testBuilder(t)
	r := decodeOne(t, `{"auditID":"big","stage":"ResponseComplete","verb":"create","user":{"username":"u"},
		"requestObject":{"data":"`+strings.Repeat("x", 9<<10)+`"},"responseObject":"not json?"}`)
	d, err := b.Record(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(d.Body, &doc)
	if field(doc, "kubernetes.audit.requestObject") != nil {
		t.Error("oversized body kept")
	}
	got := field(doc, "kubesift.record.body_dropped")
	want := []any{"requestObject: larger than max_body_bytes"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body_dropped = %v, want %v", got, want)
	}
	if field(doc, "kubesift.record.dropped_fields") == nil {
		t.Error("a string response object should be named in dropped_fields")
	}
}

func TestEventDocuments(t *testing.T) {
	b := testBuilder(t)
	core := `{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"ns","uid":"e1","labels":{"a.b/c":"d"}},
		"involvedObject":{"kind":"Pod","namespace":"ns","name":"p","uid":"pu"},"reason":"BackOff","message":"Back-off restarting",
		"source":{"component":"kubelet","host":"node-1"},"firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:05:00Z","count":3,"type":"Warning"}`
	events := `{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"p.1","namespace":"ns","uid":"e1"},
		"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"kubelet","reportingInstance":"node-1","action":"Restart",
		"reason":"BackOff","regarding":{"kind":"Pod","namespace":"ns","name":"p","uid":"pu"},"note":"Back-off restarting","type":"Warning",
		"series":{"count":3,"lastObservedTime":"2026-01-01T00:05:00.000000Z"}}`
	var docs []map[string]any
	for _, in := range []string{core, events} {
		d, err := b.Record(decodeOne(t, in))
		if err != nil {
			t.Fatal(err)
		}
		if d.Index != config.DefaultEventsStream || d.ID != "e1:3" {
			t.Fatalf("index %q id %q", d.Index, d.ID)
		}
		var doc map[string]any
		if err := json.Unmarshal(d.Body, &doc); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc)
	}
	// Both API views land in one shape.
	for _, p := range []string{"kubernetes.event.reason", "kubernetes.event.type", "kubernetes.event.count",
		"kubernetes.event.involved_object.name", "kubernetes.event.involved_object.kind", "kubernetes.event.source.component",
		"kubernetes.event.source.host", "kubernetes.event.message", "kubernetes.event.timestamp.last_occurrence",
		"kubernetes.event.timestamp.first_occurrence", "orchestrator.resource.type", "orchestrator.namespace", "@timestamp", "message", "data_stream.dataset"} {
		a, e := field(docs[0], p), field(docs[1], p)
		if a == nil || !reflect.DeepEqual(a, e) {
			t.Errorf("%s: core %v, events.k8s.io %v", p, a, e)
		}
	}
	if got := field(docs[0], "kubernetes.event.metadata.labels"); !reflect.DeepEqual(got, map[string]any{"a.b/c": "d"}) {
		t.Errorf("labels = %v", got)
	}
	if got := field(docs[0], "orchestrator.resource.type"); got != "pod" {
		t.Errorf("orchestrator.resource.type = %v", got)
	}
}

func TestObjectDocument(t *testing.T) {
	b := testBuilder(t)
	r := &record.Record{Schema: 1, ID: "uid1:5", Source: record.SourceObject, Cluster: record.Cluster{Name: "c"},
		EventTime: fixedNow, ObservedTime: fixedNow,
		Object: []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"n","uid":"uid1","labels":{"x.y":"z"},"creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"hostPID":true,"":1},"status":"weird"}`)}
	d, err := b.Record(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(d.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if d.Index != config.DefaultPostureStream || field(doc, "kubernetes.object.kind") != "Pod" ||
		field(doc, "kubernetes.object.spec.hostPID") != true || field(doc, "kubernetes.object.status") != nil ||
		field(doc, "event.kind") != "state" || field(doc, "orchestrator.resource.type") != "pod" {
		t.Errorf("doc = %s", d.Body)
	}
	r.Object = []byte(`[1]`)
	if _, err := b.Record(r); err == nil || !strings.Contains(err.Error(), "object: not a JSON Kubernetes object") {
		t.Errorf("err = %v", err)
	}
}

func TestRecordErrorsNameTheField(t *testing.T) {
	b := testBuilder(t)
	tests := []struct {
		name string
		r    *record.Record
		want string
	}{
		{"nil", nil, "record: nil"},
		{"no id", &record.Record{Source: record.SourceAudit}, "id: missing"},
		{"audit without view", &record.Record{ID: "x", Source: record.SourceAudit}, "object: audit record without its decoded event"},
		{"event without view", &record.Record{ID: "x", Source: record.SourceEvent, APIVersion: "v9"}, "object: Event record without its decoded Event"},
		{"bad source", &record.Record{ID: "x", Source: "zzz"}, `source: unknown source "zzz"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Record(tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAlertDocument(t *testing.T) {
	b := testBuilder(t)
	a := &rules.Alert{ID: "r1:a1:ResponseComplete", RuleID: "r1", Title: "Privileged pod", Severity: rules.SeverityHigh,
		Mitre: rules.Mitre{Tactics: []string{"privilege-escalation", "made-up"}, Techniques: []string{"T1611"}},
		Tags:  []string{"pod"}, RecordID: "a1:ResponseComplete", Source: record.SourceAudit, Cluster: "prod-eu",
		Time: fixedNow, Message: "alice created evil", GroupKey: "alice", Count: 2, User: "alice", Verb: "create",
		Namespace: "default", Resource: "pods", Name: "evil"}
	d, err := b.Alert(a)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(d.Body, &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want any
	}{
		{"event.kind", "alert"}, {"event.severity", 4.0}, {"event.risk_score", 73.0}, {"event.id", a.ID},
		{"rule.id", "r1"}, {"rule.name", "Privileged pod"},
		{"threat.framework", "MITRE ATT&CK"}, {"threat.tactic.id", []any{"TA0004"}},
		{"threat.tactic.name", []any{"Privilege Escalation", "made-up"}}, {"threat.technique.id", []any{"T1611"}},
		{"tags", []any{"pod"}}, {"message", "alice created evil"}, {"user.name", "alice"},
		{"orchestrator.cluster.name", "prod-eu"}, {"orchestrator.namespace", "default"},
		{"orchestrator.resource.type", "pods"}, {"orchestrator.resource.name", "evil"},
		{"kubesift.alert.severity", "high"}, {"kubesift.alert.record_id", "a1:ResponseComplete"},
		{"kubesift.alert.group_key", "alice"}, {"kubesift.alert.count", 2.0}, {"kubesift.alert.message", "alice created evil"},
		{"kubesift.delivery.state", "pending"},
	}
	for _, tc := range tests {
		if got := field(doc, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	if d.Index != config.DefaultAlertsIndex || d.ID != a.ID {
		t.Errorf("index %q id %q", d.Index, d.ID)
	}
	if _, err := b.Alert(&rules.Alert{ID: "x"}); err == nil || !strings.Contains(err.Error(), "alert.rule_id: missing") {
		t.Errorf("err = %v", err)
	}
}

func TestIntegrationStreamName(t *testing.T) {
	cfg := config.Default().Sink.Elasticsearch
	cfg.Streams.Audit = "logs-kubernetes.audit_logs-prod"
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.Record(decodeOne(t, privilegedPod))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(d.Body, &doc)
	// The prebuilt rules filter on data_stream.dataset / event.dataset.
	if d.Index != "logs-kubernetes.audit_logs-prod" || field(doc, "data_stream.dataset") != "kubernetes.audit_logs" ||
		field(doc, "event.dataset") != "kubernetes.audit_logs" || field(doc, "data_stream.namespace") != "prod" {
		t.Errorf("index %s doc %s", d.Index, d.Body)
	}
	cfg.Streams.Audit = "nope"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "sink.elasticsearch.streams.audit") {
		t.Errorf("err = %v", err)
	}
}

// TestCorpusDocuments builds a document for every record of the shared
// corpus: all build, all are valid JSON and UTF-8.
func TestCorpusDocuments(t *testing.T) {
	dir := testenv.Corpus(t)
	b := testBuilder(t)
	n := 0
	for _, sub := range []string{"elastic-integrations", "falco-k8s-audit"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			recs, _ := record.DecodeAll(data, f, record.DecodeOptions{Cluster: record.Cluster{Name: "c"}})
			for _, r := range recs {
				d, err := b.Record(r)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				if !json.Valid(d.Body) || !utf8.Valid(d.Body) {
					t.Errorf("%s: invalid document", f)
				}
				n++
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d corpus records", n)
	}
}

func TestMappingsCoverDocuments(t *testing.T) {
	// Every leaf a document carries must be mapped (or sit below a
	// flattened/dynamic field): an unmapped field would silently be
	// unsearchable.
	b := testBuilder(t)
	r := decodeOne(t, privilegedPod)
	d, _ := b.Record(r)
	checkMapped(t, d.Body, MergeMappings(BaseMappings(), AuditMappings()))
}

// checkMapped fails for every leaf of body that mapping does not map.
func checkMapped(t *testing.T, body []byte, mapping map[string]any) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, v any, m map[string]any)
	walk = func(prefix string, v any, m map[string]any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		props, _ := m["properties"].(map[string]any)
		for k, val := range obj {
			p := prefix + k
			fm, ok := props[k].(map[string]any)
			if !ok {
				if m["dynamic"] == true || strings.HasPrefix(p, "kubernetes.audit.requestObject.") || strings.HasPrefix(p, "kubernetes.audit.responseObject.") {
					continue // dynamic templates / unmapped body parts by design
				}
				t.Errorf("%s is not mapped", p)
				continue
			}
			if fm["type"] == "flattened" || fm["type"] == "geo_point" {
				continue // leaves, whatever their JSON shape
			}
			if arr, ok := val.([]any); ok {
				for _, e := range arr {
					walk(p+".", e, fm)
				}
				continue
			}
			walk(p+".", val, fm)
		}
	}
	walk("", doc, mapping)
}

// sortedCopy returns s sorted without modifying s.
func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
