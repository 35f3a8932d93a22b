package reporttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// DigestFigures are what a digest of DigestScenario's cluster over the 24
// hours before its end must say.
type DigestFigures struct {
	ScorePercent, ScoreStart               float64
	FindingsOpened, FindingsResolved, Open int64
	// Unused and UnusedOpened count unused-binding findings open now and
	// opened in the window; TopUnused is "kind namespace/name" of each
	// listed, unused the longest first.
	Unused, UnusedOpened int64
	TopUnused            []string
	Alerts               int64
	// Rules are "id=count" of the top rules, most alerts first.
	Rules                  []string
	Warnings               int64
	Reasons                []string // "reason=count", most first
	Audit, Events, Trimmed int64
	// DeadRecords and DeadAlerts are the dead letters counted (0 in a
	// digest made without reading Kafka).
	DeadRecords, DeadAlerts int64
}

// unusedBindingCheck is report.UnusedBindingCheck (this package is
// imported by report's own tests, so it cannot import report).
const unusedBindingCheck = "posture-rbac-unused-binding"

// DigestHostileReason is an Event reason of the scenario: attacker text
// (a reason is free text an Event's author sets).
const DigestHostileReason = "<img src=x onerror=alert(1)>`*[x](https://evil.example)*"

// DigestScenario builds, with the sink/ecs builders the processor uses,
// the documents of a known day of cluster: posture scores before, within
// and after the 24 hours before end, finding transitions and states (of
// a workload check and of the unused-binding check),
// alerts of three rules, Warning and Normal Events, and audit records
// (one with a body over the size policy) — plus documents of another
// cluster and outside the window, which the digest must not count.
func DigestScenario(t testing.TB, cfg config.ElasticsearchConfig, cluster string, end time.Time) ([]sink.Doc, DigestFigures) {
	t.Helper()
	var docs []sink.Doc
	add := func(d sink.Doc, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	small := cfg
	small.MaxBodyBytes = 1024 // the scenario's one large body is left out
	b, err := ecs.New(small)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := ecs.NewFindingDocs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := cluster + "-other"
	at := func(h float64) time.Time { return end.Add(time.Duration(h * float64(time.Hour))) }

	for _, s := range []struct {
		cluster, ns string
		pct         float64
		h           float64
	}{
		{cluster, "", 70, -30}, {cluster, "", 75, -10}, {cluster, "", 80, -1}, {cluster, "", 99, 1},
		{cluster, "shop", 10, -2}, {other, "", 5, -2},
	} {
		add(fd.Score(s.cluster, s.ns, posture.Score{Passed: int(s.pct), Failed: 100 - int(s.pct), Percent: s.pct}, at(s.h)))
	}

	rv := 100
	finding := func(c, check string, obj posture.ObjectRef, state posture.State, h float64) *ecs.Finding {
		rv++
		obj.UID = "uid-" + obj.Name
		return &ecs.Finding{Decision: posture.Decision{ID: c + "/" + check + "/" + obj.UID, Cluster: c, State: state, CheckID: check,
			Title: "Title of " + check, Severity: rules.SeverityHigh, ResourceVersion: fmt.Sprint(rv), Object: obj}, At: at(h)}
	}
	pod := func(c, name string, state posture.State, h float64) *ecs.Finding {
		return finding(c, "privileged", posture.ObjectRef{Kind: "Pod", Namespace: "shop", Name: name}, state, h)
	}
	unused := func(c, kind, ns, name string, state posture.State, h float64) *ecs.Finding {
		return finding(c, unusedBindingCheck, posture.ObjectRef{Kind: kind, Namespace: ns, Name: name}, state, h)
	}
	for _, f := range []*ecs.Finding{
		pod(cluster, "a", posture.StateOpen, -30), // before the window
		pod(cluster, "b", posture.StateOpen, -20),
		pod(cluster, "c", posture.StateOpen, -15),
		pod(cluster, "a", posture.StateResolved, -12),
		pod(cluster, "a", posture.StateReopened, -6),
		pod(cluster, "c", posture.StateResolved, -3),
		pod(cluster, "d", posture.StateOpen, 2), // after it
		pod(other, "x", posture.StateOpen, -5),
		unused(cluster, "ClusterRoleBinding", "", "ci-deploy", posture.StateOpen, -40), // before the window, open still
		unused(cluster, "RoleBinding", "shop", "batch", posture.StateOpen, -20),
		unused(cluster, "RoleBinding", "shop", "old-reader", posture.StateOpen, -5),
		unused(cluster, "RoleBinding", "shop", "batch", posture.StateResolved, -4),
		unused(other, "RoleBinding", "shop", "elsewhere", posture.StateOpen, -5),
	} {
		add(fd.FindingTransition(f))
		add(fd.FindingState(f))
	}

	alert := func(c, rule string, sev rules.Severity, i int, h float64) *rules.Alert {
		return &rules.Alert{ID: fmt.Sprintf("%s/%s/%d", c, rule, i), RuleID: rule, Title: "Title of " + rule, Severity: sev,
			RecordID: fmt.Sprint(i), Source: record.SourceAudit, Cluster: c, Time: at(h), User: "mallory", Message: rule}
	}
	for i := range 5 {
		add(b.Alert(alert(cluster, "pod-exec", rules.SeverityHigh, i, -float64(i+1))))
	}
	for i := range 3 {
		add(b.Alert(alert(cluster, "secret-read", rules.SeverityCritical, i, -float64(i+2))))
	}
	add(b.Alert(alert(cluster, "role-created", rules.SeverityLow, 0, -4)))
	add(b.Alert(alert(cluster, "pod-exec", rules.SeverityHigh, 9, -25)))
	add(b.Alert(alert(other, "pod-exec", rules.SeverityHigh, 0, -4)))

	var lines []string
	event := func(c, reason, typ string, i int, h float64) {
		ts := at(h).UTC().Format(time.RFC3339)
		lines = append(lines, c+"\x00"+fmt.Sprintf(`{"kind":"Event","apiVersion":"v1","metadata":{"name":"e%d","namespace":"shop","uid":"%s-ev-%d","resourceVersion":"%d"},`+
			`"involvedObject":{"kind":"Pod","namespace":"shop","name":"web","uid":"pod-uid"},"reason":%q,"message":"m","type":%q,"count":1,`+
			`"firstTimestamp":%q,"lastTimestamp":%q}`, i, c, i, i+1, reason, typ, ts, ts))
	}
	n := 0
	for _, e := range []struct {
		reason, typ string
		count       int
	}{{"BackOff", "Warning", 4}, {DigestHostileReason, "Warning", 2}, {"Scheduled", "Normal", 3}} {
		for range e.count {
			n++
			event(cluster, e.reason, e.typ, n, -float64(n)/2)
		}
	}
	n++
	event(cluster, "BackOff", "Warning", n, -26)
	n++
	event(other, "BackOff", "Warning", n, -3)
	audit := func(c string, i int, h float64, body string) {
		ts := at(h).UTC().Format(time.RFC3339Nano)
		extra := ""
		if body != "" {
			extra = `"requestObject":{"kind":"ConfigMap","apiVersion":"v1","data":{"x":"` + body + `"}},`
		}
		lines = append(lines, c+"\x00"+fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"%s-audit-%d","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/shop/configmaps","verb":"create","user":{"username":"alice"},`+
			`"objectRef":{"resource":"configmaps","namespace":"shop","name":"cm%d","apiVersion":"v1"},%s"responseStatus":{"code":201},`+
			`"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, c, i, i, extra, ts, ts))
	}
	for i := range 6 {
		body := ""
		if i == 0 {
			body = strings.Repeat("x", 4096)
		}
		audit(cluster, i, -float64(i+1)*3, body)
	}
	audit(cluster, 6, -30, "")
	audit(other, 7, -1, "")
	for _, l := range lines {
		c, js, _ := strings.Cut(l, "\x00")
		recs, errs := record.DecodeAll([]byte(js), "scenario", record.DecodeOptions{Cluster: record.Cluster{Name: c}, Now: func() time.Time { return end }})
		if len(errs) > 0 || len(recs) != 1 {
			t.Fatalf("scenario line %s: %v", js, errs)
		}
		d, err := b.Record(recs[0])
		add(d, err)
		if bytes.Contains(d.Body, []byte(`"body_dropped"`)) != (strings.Contains(js, `"x":"xxxx`)) {
			t.Fatalf("scenario: body_dropped is not where the large body is: %s", d.Body)
		}
	}
	return docs, DigestFigures{
		ScorePercent: 80, ScoreStart: 70, FindingsOpened: 5, FindingsResolved: 3, Open: 5,
		Unused: 2, UnusedOpened: 2, TopUnused: []string{"ClusterRoleBinding /ci-deploy", "RoleBinding shop/old-reader"},
		Alerts: 9, Rules: []string{"pod-exec=5", "secret-read=3", "role-created=1"},
		Warnings: 6, Reasons: []string{"BackOff=4", DigestHostileReason + "=2"},
		Audit: 6, Events: 9, Trimmed: 1,
	}
}

// FiguresOfJSON reads the figures of a digest from its JSON form (what
// `kubesift report --digest -o json` prints for one digest and the webhook
// payload carries), so that each form is checked against DigestFigures
// by its documented field names.
func FiguresOfJSON(t testing.TB, data []byte) DigestFigures {
	t.Helper()
	var d struct {
		Score *struct {
			Percent float64  `json:"percent"`
			Start   *float64 `json:"start_percent"`
		} `json:"posture_score"`
		Opened   int64 `json:"findings_opened"`
		Resolved int64 `json:"findings_resolved"`
		Open     int64 `json:"open_findings"`
		Unused   int64 `json:"unused_bindings"`
		UnusedOp int64 `json:"unused_bindings_opened"`
		Bindings []struct {
			Kind      string `json:"kind"`
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"top_unused_bindings"`
		Alerts int64 `json:"alerts"`
		Rules  []struct {
			ID     string `json:"id"`
			Alerts int64  `json:"alerts"`
		} `json:"top_rules"`
		Warnings int64 `json:"event_warnings"`
		Reasons  []struct {
			Reason   string `json:"reason"`
			Warnings int64  `json:"warnings"`
		} `json:"warnings_by_reason"`
		Audit   int64 `json:"audit_records"`
		Events  int64 `json:"events"`
		Trimmed int64 `json:"records_trimmed"`
		Dead    *struct {
			Records int64 `json:"records"`
			Alerts  int64 `json:"alerts"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("digest JSON: %v\n%s", err, data)
	}
	f := DigestFigures{FindingsOpened: d.Opened, FindingsResolved: d.Resolved, Open: d.Open, Unused: d.Unused, UnusedOpened: d.UnusedOp, Alerts: d.Alerts,
		Warnings: d.Warnings, Audit: d.Audit, Events: d.Events, Trimmed: d.Trimmed, ScoreStart: -1}
	if d.Dead != nil {
		f.DeadRecords, f.DeadAlerts = d.Dead.Records, d.Dead.Alerts
	}
	if d.Score != nil {
		f.ScorePercent = d.Score.Percent
		if d.Score.Start != nil {
			f.ScoreStart = *d.Score.Start
		}
	}
	for _, b := range d.Bindings {
		f.TopUnused = append(f.TopUnused, b.Kind+" "+b.Namespace+"/"+b.Name)
	}
	for _, r := range d.Rules {
		f.Rules = append(f.Rules, fmt.Sprintf("%s=%d", r.ID, r.Alerts))
	}
	for _, r := range d.Reasons {
		f.Reasons = append(f.Reasons, fmt.Sprintf("%s=%d", r.Reason, r.Warnings))
	}
	return f
}
