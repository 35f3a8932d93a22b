package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/report/reporttest"
)

// TestDigestFromES (real Elasticsearch): the digest of a known day
// (reporttest.DigestScenario) has its figures — none of the other
// cluster's, none from outside the window — and the clusters found are
// the two of the scenario.
func TestDigestFromES(t *testing.T) {
	end := time.Now().UTC().Truncate(time.Hour)
	es, cfg, want := reporttest.StoreDigestScenario(t, "prod", end)
	src := NewES(es, cfg.Addresses[0], IndicesFrom(cfg))
	if err := src.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := Window{From: end.Add(-24 * time.Hour), To: end}
	d, err := src.Digest(t.Context(), "prod", w)
	if err != nil {
		t.Fatal(err)
	}
	checkFigures(t, d, want)
	names, leftOut, err := src.Clusters(t.Context(), w)
	if err != nil || leftOut != 0 || !reflect.DeepEqual(names, []string{"prod", "prod-other"}) {
		t.Errorf("Clusters = %q, %d, %v", names, leftOut, err)
	}
	empty, err := src.Digest(t.Context(), "nowhere", w)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Score != nil || empty.Alerts != 0 || empty.AuditRecords != 0 || len(empty.Rules) != 0 {
		t.Errorf("a cluster without documents: %+v", empty)
	}
}

// checkFigures compares a digest with the scenario's figures.
func checkFigures(t *testing.T, d *Digest, want reporttest.DigestFigures) {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := reporttest.FiguresOfJSON(t, b); !reflect.DeepEqual(got, want) {
		t.Errorf("digest figures\n got %+v\nwant %+v", got, want)
	}
	if d.OtherRules != 0 || d.OtherWarnings != 0 {
		t.Errorf("other: rules %d, warnings %d", d.OtherRules, d.OtherWarnings)
	}
}

// testDigest has every section filled, hostile text where records put
// text.
func testDigest() *Digest {
	start := 72.5
	return &Digest{
		Cluster: "prod\n" + hostile, From: time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC),
		Score:          &ScoreChange{Percent: 80, Passed: 40, Failed: 10, At: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), Start: &start},
		FindingsOpened: 3, FindingsResolved: 2, OpenFindings: 7,
		UnusedBindings: 3, UnusedBindingsOpened: 1, TopUnused: []DigestBinding{
			{Kind: "ClusterRoleBinding", Name: "ci\ndeploy" + hostile, Since: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)},
			{Kind: "RoleBinding", Namespace: "shop", Name: "reader", Since: time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)},
		},
		Alerts: 12, Rules: []DigestRule{{ID: "pod-exec", Name: "Exec into a pod", Severity: rules.SeverityHigh, Alerts: 10}, {ID: hostile, Severity: rules.SeverityLow, Alerts: 1}},
		OtherRules: 1, Warnings: 5, Reasons: []DigestReason{{Reason: "Back\tOff\r\nforged\x1b[2Jline", Warnings: 4}}, OtherWarnings: 1,
		AuditRecords: 1000, Events: 50, Trimmed: 2,
		DeadLetters: &DeadLetters{Records: 7, Alerts: 1, Reasons: []DeadLetterReason{
			{Source: "audit-webhook", Reason: "body_too_large", Letters: 5}, {Source: "processor", Reason: "es\nrejected" + hostile, Letters: 3},
		}},
	}
}

// TestRenderDigests: each format shows every figure, in the schedule's
// time zone; text keeps one line per figure whatever a reason holds; the
// page escapes record text; JSON round-trips.
func TestRenderDigests(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	d := testDigest()
	tests := []struct {
		format string
		want   []string
		not    []string
	}{
		{DigestText, []string{
			"2026-12-06 08:00 – 2026-12-07 08:00 CET", "80.0% (+7.5 since 72.5%; 40 passed, 10 failed)",
			"3 opened, 2 resolved, 7 open now", "3 now, 1 became unused in the period", "ClusterRoleBinding ci deploy</script><img",
			"since 2026-11-02 10:00 CET", "RoleBinding shop/reader", "since 2026-12-07 00:30 CET", "and 1 more", "pod-exec (Exec into a pod)", "other rules", "Back Off  forged [2Jline",
			"1000 audit records, 50 Events indexed; 2 of them trimmed",
			"7 records, 1 alerts not indexed", "audit-webhook: body_too_large", "processor: es rejected",
		}, []string{"\r", "\t", "\x1b"}},
		{DigestHTML, []string{"default-src 'none'", "&lt;img src=x onerror=alert(1)&gt;", "80.0% (&#43;7.5 since 72.5%", "RoleBinding shop/reader"}, []string{"<img", "<script", "<svg"}},
		{DigestJSON, []string{`"findings_opened": 3`, `"unused_bindings": 3`, `"namespace": "shop"`, `"severity": "high"`, `"start_percent": 72.5`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := RenderDigests(&b, []*Digest{d}, tc.format, berlin); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%q in\n%s", n, out)
				}
			}
			if tc.format == DigestText {
				if lines := strings.Count(out, "\n"); lines != 19 {
					t.Errorf("%d lines, want 19:\n%s", lines, out)
				}
			}
			if tc.format == DigestJSON {
				var back struct{ Digests []*Digest }
				if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Digests) != 1 || !reflect.DeepEqual(back.Digests[0], d) {
					t.Errorf("round trip: %v\n%+v", err, back.Digests)
				}
			}
		})
	}
	if err := RenderDigests(&bytes.Buffer{}, nil, "yaml", nil); err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestDigestDeadLetterLine: a digest made without reading Kafka says so
// rather than 0, and a partial count says "at least".
func TestDigestDeadLetterLine(t *testing.T) {
	for _, tc := range []struct {
		dl   *DeadLetters
		want string
	}{
		{nil, "Dead letters not counted (the dead-letter topic was not read)"},
		{&DeadLetters{}, "Dead letters 0 records, 0 alerts not indexed"},
		{&DeadLetters{Records: 9, Partial: true}, "at least 9 records, 0 alerts not indexed (the topic held more"},
	} {
		d := &Digest{Cluster: "prod", To: time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC), DeadLetters: tc.dl}
		var b bytes.Buffer
		if err := RenderDigests(&b, []*Digest{d}, DigestText, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(b.String()), " "), tc.want) {
			t.Errorf("%+v: no %q in\n%s", tc.dl, tc.want, b.String())
		}
	}
}

// TestDeadLetterTally: counts per cluster and by kind, the top reasons
// most first with the rest as other, a cluster with none at zero, and
// the key bound counting further reasons as other.
func TestDeadLetterTally(t *testing.T) {
	var tl DeadLetterTally
	for i := range DigestTopReasons + 2 {
		for range i + 1 {
			tl.Add("prod", "processor", fmt.Sprintf("r%02d", i), false)
		}
	}
	tl.Add("prod", "notifier", "undecodable_alert", true)
	tl.Add("dev", "audit-webhook", "invalid_json", false)
	got := tl.Of("prod")
	wantRecords := int64((DigestTopReasons + 2) * (DigestTopReasons + 3) / 2)
	if got.Records != wantRecords || got.Alerts != 1 || len(got.Reasons) != DigestTopReasons || got.Partial {
		t.Fatalf("prod: %+v", got)
	}
	if r := got.Reasons[0]; r.Reason != "r11" || r.Letters != 12 {
		t.Errorf("first reason %+v", r)
	}
	var listed int64
	for _, r := range got.Reasons {
		listed += r.Letters
	}
	if listed+got.OtherReasons != got.Records+got.Alerts {
		t.Errorf("listed %d + other %d != %d", listed, got.OtherReasons, got.Records+got.Alerts)
	}
	if none := tl.Of("nowhere"); none == nil || none.Records != 0 || none.Reasons != nil {
		t.Errorf("nowhere: %+v", none)
	}
	var big DeadLetterTally
	for i := range MaxDeadLetterTallyKeys + 5 {
		big.Add("prod", "processor", fmt.Sprint(i), false)
	}
	big.SetPartial()
	if g := big.Of("prod"); g.Records != MaxDeadLetterTallyKeys+5 || g.OtherReasons != MaxDeadLetterTallyKeys+5-DigestTopReasons || !g.Partial {
		t.Errorf("bounded: records %d, other %d, partial %v", g.Records, g.OtherReasons, g.Partial)
	}
}
