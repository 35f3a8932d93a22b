package kibana

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

const committedFile = "deployments/kibana/kubesift.ndjson"

func defaultObjects(t *testing.T) []SavedObject {
	t.Helper()
	objs, err := Objects(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestCommittedFileIsCurrent: deployments/kibana/kubesift.ndjson is what
// the spec generates now, so a changed panel or a renamed field cannot ship
// in code without reaching the file (make kibana regenerates it).
func TestCommittedFileIsCurrent(t *testing.T) {
	want, err := Generate(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(testenv.Root(), committedFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < min(len(gl), len(wl)); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("%s is stale from line %d (run `make kibana`):\ncommitted: %.300s\ngenerated: %.300s", committedFile, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s is stale: %d lines, %d generated (run `make kibana`)", committedFile, len(gl), len(wl))
	}
}

// TestIDsStableAcrossConfigs: generating twice gives the same bytes, and
// renamed streams change only the data views' titles, never an id, so a
// second import replaces the same objects.
func TestIDsStableAcrossConfigs(t *testing.T) {
	cfg := config.Default().Sink.Elasticsearch
	a, _ := Generate(cfg)
	b, _ := Generate(cfg)
	if !bytes.Equal(a, b) {
		t.Fatal("two generations differ")
	}
	renamed := cfg
	renamed.Streams.Audit = "logs-kubernetes.audit_logs-prod"
	renamed.AlertsIndex = "prod-alerts"
	objs, _ := Objects(cfg)
	robjs, err := Objects(renamed)
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string]string{}
	for i, o := range objs {
		if robjs[i].ID != o.ID {
			t.Fatalf("object %d: id %s became %s", i, o.ID, robjs[i].ID)
		}
		if o.Type == "index-pattern" {
			titles[o.ID] = robjs[i].Attributes["title"].(string)
		}
	}
	for id, want := range map[string]string{
		"kubesift-audit":   "logs-kubernetes.audit_logs-prod",
		"kubesift-records": "logs-kubernetes.audit_logs-prod,logs-kubesift.events-default",
		"kubesift-alerts":  "prod-alerts",
		"kubesift-events":  "logs-kubesift.events-default",
	} {
		if titles[id] != want {
			t.Errorf("data view %s: title %q, want %q", id, titles[id], want)
		}
	}
}

// exportKeys are the top-level keys of an object in a Kibana 8.x export
// (created_at/updated_at aside: they would change the file on every
// generation, and import does not need them).
var exportKeys = []string{"attributes", "coreMigrationVersion", "id", "managed", "references", "type", "typeMigrationVersion"}

// stringAttrs are the attributes Kibana keeps as JSON inside a string, per
// type; each must parse.
var stringAttrs = map[string][]string{
	"index-pattern": {"fieldFormatMap", "fields", "fieldAttrs", "runtimeFieldMap", "sourceFilters", "typeMeta"},
	"visualization": {"visState", "uiStateJSON", "kibanaSavedObjectMeta.searchSourceJSON"},
	"search":        {"kibanaSavedObjectMeta.searchSourceJSON"},
	"dashboard": {"panelsJSON", "optionsJSON", "kibanaSavedObjectMeta.searchSourceJSON",
		"controlGroupInput.panelsJSON", "controlGroupInput.ignoreParentSettingsJSON"},
}

func attr(attrs map[string]any, path string) (string, bool) {
	var cur any = attrs
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		cur = m[k]
	}
	s, ok := cur.(string)
	return s, ok
}

// TestExportShape reads the committed file line by line as Kibana's import
// does: every line one object with the keys of an export, a known type and
// migration version, titles, and the stringified attributes parseable.
func TestExportShape(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.Root(), committedFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	types := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		var o map[string]any
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		var keys []string
		for k := range o {
			keys = append(keys, k)
		}
		if !sameSet(keys, exportKeys) {
			t.Errorf("line %d: keys %v, want %v", n, keys, exportKeys)
		}
		typ, _ := o["type"].(string)
		types[typ]++
		attrs, _ := o["attributes"].(map[string]any)
		if s, _ := attrs["title"].(string); s == "" {
			t.Errorf("line %d (%s %v): no title", n, typ, o["id"])
		}
		paths, ok := stringAttrs[typ]
		if !ok {
			t.Errorf("line %d: type %q", n, typ)
		}
		for _, p := range paths {
			s, ok := attr(attrs, p)
			if !ok || !json.Valid([]byte(s)) {
				t.Errorf("line %d (%s %v): %s is not JSON in a string", n, typ, o["id"], p)
			}
		}
		if typ == "visualization" || typ == "dashboard" {
			if s, _ := attrs["description"].(string); s == "" {
				t.Errorf("line %d (%s %v): no description", n, typ, o["id"])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if types["dashboard"] != 5 || types["index-pattern"] != 8 || types["search"] < 4 {
		t.Errorf("object types %v: want 5 dashboards, 8 data views and the saved searches", types)
	}
}

func sameSet(a, b []string) bool {
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	if len(m) != len(b) {
		return false
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// TestReferencesResolve: every reference names an object of the file by
// type and id, every name a visualization, search or dashboard uses inside
// its stringified attributes (indexRefName, panelRefName, a control's data
// view) has its reference, and ids are unique.
func TestReferencesResolve(t *testing.T) {
	objs := defaultObjects(t)
	have := map[string]bool{}
	for _, o := range objs {
		k := o.Type + "/" + o.ID
		if have[k] {
			t.Fatalf("%s twice", k)
		}
		have[k] = true
	}
	for _, o := range objs {
		names := map[string]bool{}
		for _, r := range o.References {
			if !have[r.Type+"/"+r.ID] {
				t.Errorf("%s %s: reference %s to missing %s %s", o.Type, o.ID, r.Name, r.Type, r.ID)
			}
			names[r.Name] = true
		}
		for _, want := range usedRefNames(t, o) {
			if !names[want] {
				t.Errorf("%s %s: uses reference %q, which it does not have", o.Type, o.ID, want)
			}
		}
	}
}

// usedRefNames are the reference names o's attributes use.
func usedRefNames(t *testing.T, o SavedObject) []string {
	t.Helper()
	var out []string
	if src, ok := attr(o.Attributes, "kibanaSavedObjectMeta.searchSourceJSON"); ok {
		var s struct {
			IndexRefName string `json:"indexRefName"`
		}
		_ = json.Unmarshal([]byte(src), &s)
		if s.IndexRefName != "" {
			out = append(out, s.IndexRefName)
		}
	}
	if o.Type != "dashboard" {
		return out
	}
	pj, _ := attr(o.Attributes, "panelsJSON")
	var panels []struct {
		PanelIndex, PanelRefName string
	}
	if err := json.Unmarshal([]byte(pj), &panels); err != nil {
		t.Fatal(err)
	}
	for _, p := range panels {
		out = append(out, p.PanelIndex+":"+p.PanelRefName)
	}
	cj, _ := attr(o.Attributes, "controlGroupInput.panelsJSON")
	var controls map[string]any
	if err := json.Unmarshal([]byte(cj), &controls); err != nil {
		t.Fatal(err)
	}
	if len(controls) != 3 {
		t.Errorf("dashboard %s: %d controls, want cluster, namespace and user", o.ID, len(controls))
	}
	for k := range controls {
		out = append(out, "controlGroup_"+k+":optionsListDataView")
	}
	return out
}

// TestDashboardLayout: panels lie inside the 48-column grid and never
// overlap.
func TestDashboardLayout(t *testing.T) {
	for _, o := range defaultObjects(t) {
		if o.Type != "dashboard" {
			continue
		}
		pj, _ := attr(o.Attributes, "panelsJSON")
		var panels []struct {
			GridData   struct{ X, Y, W, H int } `json:"gridData"`
			PanelIndex string
		}
		if err := json.Unmarshal([]byte(pj), &panels); err != nil {
			t.Fatal(err)
		}
		for i, a := range panels {
			g := a.GridData
			if g.X < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 48 {
				t.Errorf("%s: panel %s outside the grid: %+v", o.ID, a.PanelIndex, g)
			}
			for _, b := range panels[i+1:] {
				h := b.GridData
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("%s: panels %s and %s overlap", o.ID, a.PanelIndex, b.PanelIndex)
				}
			}
		}
	}
}

func TestKQL(t *testing.T) {
	for _, c := range []struct {
		name string
		q    []Clause
		want string
	}{
		{"empty", nil, ""},
		{"one value", []Clause{Is("a.b", "x")}, `a.b : "x"`},
		{"values", []Clause{Is("v", "get", "list")}, `v : ("get" or "list")`},
		{"quoted", []Clause{Is("m", `say "hi" \o/`)}, `m : "say \"hi\" \\o/"`},
		{"and exists", []Clause{Is("a", "1"), Has("b")}, `a : "1" and b : *`},
		{"phrase", []Clause{Phrase("msg", "pull image")}, `msg : "pull image"`},
		{"any", []Clause{AnyOf(Is("r", "x", "y"), Phrase("m", "z"))}, `(r : ("x" or "y") or m : "z")`},
		{"not", []Clause{Not(Is("u", "system:anonymous"))}, `not u : "system:anonymous"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := KQL(c.q); got != c.want {
				t.Errorf("KQL = %s, want %s", got, c.want)
			}
		})
	}
}

// TestSearchTranslation: the Elasticsearch search of a panel nests its
// buckets in order with the metrics at every level, and orders terms the
// way the visState does.
func TestSearchTranslation(t *testing.T) {
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, c := range []struct {
		name string
		p    Panel
		want string
	}{
		{"count by terms", Panel{Vis: Table, Buckets: []Agg{By("f", "", 3)}},
			`{"aggs":{"b0":{"terms":{"field":"f","order":{"_count":"desc"},"size":3}}},"query":{"match_all":{}},"size":0,"track_total_hits":true}`},
		{"over time split", Panel{Vis: Bar, Query: []Clause{Is("t", "Warning")}, Buckets: []Agg{OverTime(), By("r", "", 0)}},
			`{"aggs":{"b0":{"aggs":{"b1":{"terms":{"field":"r","order":{"_count":"desc"},"size":10}}},"date_histogram":{"field":"@timestamp","fixed_interval":"1h","min_doc_count":1}}},"query":{"bool":{"filter":[{"bool":{"minimum_should_match":1,"should":[{"match_phrase":{"t":"Warning"}}]}}]}},"size":0,"track_total_hits":true}`},
		{"ordered by max asc", Panel{Vis: Table, Metrics: []Agg{MaxOf("@timestamp", "")}, Buckets: []Agg{{Kind: Terms, Field: "c", Asc: true}}},
			`{"aggs":{"b0":{"aggs":{"m0":{"max":{"field":"@timestamp"}}},"terms":{"field":"c","order":{"m0":"asc"},"size":10}}},"query":{"match_all":{}},"size":0,"track_total_hits":true}`},
		{"latest by key", Panel{Vis: Table, Metrics: []Agg{LatestOf("p", "")}, Buckets: []Agg{{Kind: Terms, Field: "n", ByKey: true}}},
			`{"aggs":{"b0":{"aggs":{"m0":{"top_hits":{"_source":false,"docvalue_fields":["p"],"size":1,"sort":[{"@timestamp":"desc"}]}}},"terms":{"field":"n","order":{"_key":"asc"},"size":10}}},"query":{"match_all":{}},"size":0,"track_total_hits":true}`},
		{"metric", Panel{Vis: Metric, Metrics: []Agg{CountOf(), DistinctOf("r", "")}},
			`{"aggs":{"m1":{"cardinality":{"field":"r"}}},"query":{"match_all":{}},"size":0,"track_total_hits":true}`},
		{"saved search", Panel{Vis: Search, Query: []Clause{Not(Has("x"))}},
			`{"query":{"bool":{"filter":[{"bool":{"must_not":[{"exists":{"field":"x"}}]}}]}},"size":10,"sort":[{"@timestamp":"desc"}],"track_total_hits":true}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := js(c.p.Search()); got != c.want {
				t.Errorf("Search =\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// TestVisAggsMatchSearch: the visState of every panel lists the same
// fields, kinds and order as its Elasticsearch search, so what the test
// ground checks is what Kibana draws.
func TestVisAggsMatchSearch(t *testing.T) {
	for _, d := range Dashboards() {
		for i := range d.Panels {
			p := &d.Panels[i]
			if p.Vis == Search {
				continue
			}
			aggs := p.visAggs()
			var kinds, wantKinds []string
			for _, a := range aggs {
				f, _ := a["params"].(map[string]any)["field"].(string)
				kinds = append(kinds, a["type"].(string)+" "+f)
			}
			for _, a := range append(p.metrics(), p.Buckets...) {
				wantKinds = append(wantKinds, string(a.Kind)+" "+a.Field)
			}
			if !reflect.DeepEqual(kinds, wantKinds) {
				t.Errorf("%s: visState aggs %v, spec %v", p.ID, kinds, wantKinds)
			}
		}
	}
}

// TestDocsListEveryPanel: docs/kibana.md names every dashboard and panel
// with its description, so the documentation follows the spec.
func TestDocsListEveryPanel(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "kibana.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, d := range Dashboards() {
		if !strings.Contains(doc, "### "+d.Title+"\n") {
			t.Errorf("docs/kibana.md has no section %q", d.Title)
		}
		for _, p := range d.Panels {
			if !strings.Contains(doc, "| "+p.Title+" | "+DataViewID(p.View)+" | "+p.Description) {
				t.Errorf("docs/kibana.md does not list panel %q of %s with its data view and description", p.Title, d.ID)
			}
		}
	}
}
