package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// hostile is attacker-controlled text as it reaches a report: a user
// name, a rule message built from a request, an Event reason.
const hostile = `</script><img src=x onerror=alert(1)><svg onload=alert(2)>"'&`

// t0 is the first alert of the fixture.
var t0 = time.Date(2026, 12, 1, 20, 34, 21, 0, time.UTC)

// fixture builds a store's documents with the sink/ecs builders the
// processor uses: the bundled scenario's Events and first audit records,
// alerts of several rules, severities, users and tactics (one of them
// hostile, one without a user), finding states with a newer version of one
// finding, and two clusters' scores.
func fixture(t testing.TB, cfg config.ElasticsearchConfig) []sink.Doc {
	t.Helper()
	b, err := ecs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fixed := func() time.Time { return time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) }
	b.Now = fixed
	var docs []sink.Doc
	add := func(d sink.Doc, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	scenario := filepath.Join(testenv.Root(), "examples", "scenario")
	for _, f := range []struct {
		name  string
		lines int
	}{{"events.ndjson", 0}, {"audit.log", 200}} {
		data, err := os.ReadFile(filepath.Join(scenario, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if f.lines > 0 {
			data = bytes.Join(bytes.SplitN(data, []byte("\n"), f.lines+1)[:f.lines], []byte("\n"))
		}
		recs, errs := record.DecodeAll(data, f.name, record.DecodeOptions{Cluster: record.Cluster{Name: "prod"}, Now: fixed})
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		for _, r := range recs {
			add(b.Record(r))
		}
	}
	alert := func(i int, rule string, sev rules.Severity, user string, tactics ...string) *rules.Alert {
		return &rules.Alert{
			ID: fmt.Sprintf("%s:%d", rule, i), RuleID: rule, Title: "Title of " + rule, Severity: sev,
			Mitre: rules.Mitre{Tactics: tactics}, RecordID: fmt.Sprint(i), Source: record.SourceAudit, Cluster: "prod",
			Time: t0.Add(time.Duration(i) * 7 * time.Second), Message: fmt.Sprintf("%s did %s #%d", user, rule, i),
			User: user, Namespace: "shop", Resource: "pods", Name: fmt.Sprintf("web-%d", i),
		}
	}
	for i := range 40 {
		switch {
		case i%10 == 0:
			add(b.Alert(alert(i, "pod-exec", rules.SeverityHigh, "mallory", "execution")))
		case i%7 == 0:
			a := alert(i, "secret-read", rules.SeverityCritical, hostile, "credential-access", "discovery")
			a.Message = hostile
			add(b.Alert(a))
		case i%3 == 0:
			add(b.Alert(alert(i, "workload-created", rules.SeverityInfo, "")))
		default:
			add(b.Alert(alert(i, "role-created", rules.SeverityLow, fmt.Sprintf("user-%d", i%4), "persistence")))
		}
	}
	fd, err := ecs.NewFindingDocs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fd.Now = fixed
	finding := func(id, check string, sev rules.Severity, state posture.State, rv string) *ecs.Finding {
		return &ecs.Finding{Decision: posture.Decision{
			ID: "prod/" + check + "/" + id, Cluster: "prod", State: state, CheckID: check, Title: "Check " + check + " " + hostile,
			Severity: sev, Object: posture.ObjectRef{Kind: "Pod", Namespace: "shop", Name: id, UID: id}, ResourceVersion: rv,
		}, At: t0}
	}
	for _, f := range []*ecs.Finding{
		finding("a", "privileged", rules.SeverityHigh, posture.StateOpen, "10"),
		finding("b", "privileged", rules.SeverityHigh, posture.StateOpen, "11"),
		finding("c", "host-network", rules.SeverityMedium, posture.StateOpen, "12"),
		finding("d", "host-network", rules.SeverityMedium, posture.StateOpen, "13"),
		finding("d", "host-network", rules.SeverityMedium, posture.StateResolved, "14"), // d's newer state
		finding("e", "run-as-root", rules.SeverityLow, posture.StateReopened, "15"),
	} {
		add(fd.FindingState(f))
	}
	for i, c := range []string{"prod", "staging", "prod"} {
		add(fd.Score(c, "", posture.Score{Passed: 10 + i, Failed: 3, Percent: 70 + float64(i)}, t0.Add(time.Duration(i)*time.Minute)))
		add(fd.Score(c, "shop", posture.Score{Passed: 1, Failed: 1, Percent: 50}, t0.Add(time.Duration(i)*time.Minute)))
	}
	return docs
}

// writeDir writes docs as `kubesift run` does: <index>.ndjson, one body a
// line, a versioned document's newer version after the older.
func writeDir(t testing.TB, dir string, docs []sink.Doc) {
	t.Helper()
	files := map[string]*bytes.Buffer{}
	for _, d := range docs {
		if files[d.Index] == nil {
			files[d.Index] = &bytes.Buffer{}
		}
		files[d.Index].Write(d.Body)
		files[d.Index].WriteByte('\n')
	}
	for idx, b := range files {
		if err := os.WriteFile(filepath.Join(dir, idx+".ndjson"), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dirSummary writes docs to a new folder and reads it back.
func dirSummary(t testing.TB, docs []sink.Doc, w Window) *Summary {
	t.Helper()
	dir := t.TempDir()
	writeDir(t, dir, docs)
	d, err := NewDir(dir, IndicesFrom(config.Default().Sink.Elasticsearch), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Summary(t.Context(), w)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
