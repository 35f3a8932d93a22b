package report

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
)

func TestDirSummary(t *testing.T) {
	docs := fixture(t, config.Default().Sink.Elasticsearch)
	all := dirSummary(t, docs, Window{})
	late := dirSummary(t, docs, Window{From: t0.Add(140 * time.Second)})
	none := dirSummary(t, nil, Window{})

	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"alerts", all.Alerts, int64(40)},
		{"audit records", all.AuditRecords, int64(200)},
		{"events", all.Events, int64(28)},
		{"by severity", all.BySeverity, [numSeverity]int64{11, 20, 0, 4, 5}},
		{"top rule", all.Rules[0], RuleCount{ID: "role-created", Name: "Title of role-created", Severity: rules.SeverityLow, Tactics: []string{"Persistence"}, Count: 20}},
		{"hostile rule's tactics", all.Rules[2].Tactics, []string{"Credential Access", "Discovery"}},
		{"rules listed", len(all.Rules), 4},
		{"other rules", all.OtherRules, int64(0)},
		// workload-created has no user: in the totals, in no actor's row.
		{"actors", len(all.Actors), 6},
		{"top actor", all.Actors[0], ActorCount{User: "user-1", Severity: rules.SeverityLow, Count: 7}},
		{"hostile actor", all.Actors[1], ActorCount{User: hostile, Severity: rules.SeverityCritical, Count: 5}},
		{"other actors", all.OtherActors, int64(0)},
		{"timeline width", all.Timeline.Width, 10 * time.Second},
		{"timeline buckets", len(all.Timeline.Counts), 28},
		{"top alert", all.TopAlerts[0].RuleID + " " + all.TopAlerts[0].Time.Format(time.TimeOnly), "secret-read 20:38:26"},
		{"top alerts", len(all.TopAlerts), 40},
		{"open findings", all.Posture.Open, int64(4)},
		{"findings", all.Posture.Findings, int64(5)},
		{"failing checks", all.Posture.Failing[0], Check{ID: "privileged", Title: "Check privileged " + hostile, Severity: rules.SeverityHigh, Open: 2}},
		{"scores", all.Posture.Scores, []Score{
			{Cluster: "prod", Percent: 72, Passed: 12, Failed: 3, At: t0.Add(2 * time.Minute)},
			{Cluster: "staging", Percent: 71, Passed: 11, Failed: 3, At: t0.Add(time.Minute)},
		}},
		{"window: alerts", late.Alerts, int64(20)},
		{"window: posture is not windowed", late.Posture.Open, int64(4)},
		{"empty: alerts", none.Alerts, int64(0)},
		{"empty: posture", none.Posture == nil, true},
		{"empty: timeline", len(none.Timeline.Counts), 0},
		{"empty: skipped", none.Skipped, int64(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	var sum int64
	for _, b := range all.Timeline.Counts {
		for _, n := range b {
			sum += n
		}
	}
	if sum != all.Alerts {
		t.Errorf("timeline holds %d alerts, want %d", sum, all.Alerts)
	}
	for i := 1; i < len(all.TopAlerts); i++ {
		if before(&all.TopAlerts[i], &all.TopAlerts[i-1]) {
			t.Errorf("top alerts out of order at %d", i)
		}
	}
}

// TestDirSkipsBadLines: a line that is not JSON, is of the wrong shape or
// is over maxLineBytes is skipped, named by file and line, and counted;
// the lines around it are read.
func TestDirSkipsBadLines(t *testing.T) {
	good := `{"@timestamp":"2026-12-01T20:00:00Z","event":{"id":"a","severity":3},"rule":{"id":"r"}}`
	for _, tc := range []struct {
		name, line, reason, sample string
	}{
		{"not json", `{"event":`, "not_json", "kubesift-alerts.ndjson:2: "},
		{"wrong type", `{"event":{"severity":"high"}}`, "not_json", "kubesift-alerts.ndjson:2: "},
		{"too long", `{"message":"` + strings.Repeat("x", maxLineBytes) + `"}`, "too_long", "kubesift-alerts.ndjson:2: line over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := good + "\n" + tc.line + "\n\n" + strings.Replace(good, `"a"`, `"b"`, 1) // no final newline
			if err := os.WriteFile(filepath.Join(dir, "kubesift-alerts.ndjson"), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			d, err := NewDir(dir, IndicesFrom(config.Default().Sink.Elasticsearch), reg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := d.Summary(t.Context(), Window{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Alerts != 2 || s.Skipped != 1 {
				t.Errorf("alerts %d, skipped %d; want 2 and 1", s.Alerts, s.Skipped)
			}
			if len(s.SkippedSamples) != 1 || !strings.HasPrefix(s.SkippedSamples[0], tc.sample) {
				t.Errorf("samples %q, want one starting %q", s.SkippedSamples, tc.sample)
			}
			if n := testenv.Metric(t, reg, "kubesift_report_lines_skipped_total", "index", "kubesift-alerts", "reason", tc.reason); n != 1 {
				t.Errorf("skipped metric = %v, want 1", n)
			}
		})
	}
}

// TestDirBoundsKeys: past maxKeys distinct users, further users' alerts
// are still counted (as other), and the Summary says so.
func TestDirBoundsKeys(t *testing.T) {
	a := newAggregator(Window{})
	for i := range maxKeys + 10 {
		d := &alertDoc{Timestamp: t0}
		d.Event.Severity, d.Rule.ID, d.User.Name = 2, "r", fmt.Sprint("u", i)
		a.alert(d)
	}
	s := a.summary()
	if len(s.Actors) != TopActors || s.OtherActors != int64(maxKeys+10-TopActors) {
		t.Errorf("actors %d, other %d", len(s.Actors), s.OtherActors)
	}
	if len(s.Notes) != 1 || !strings.Contains(s.Notes[0], "actors") {
		t.Errorf("notes %q", s.Notes)
	}
}

// TestHistogramWidth: whatever order the alerts come in, the histogram
// Dir widens as it reads ends on the width Elasticsearch is asked for
// (widthFor of the span), with every alert in it.
func TestHistogramWidth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, span := range []time.Duration{0, 30 * time.Second, 59 * time.Second, 61 * time.Second, 2 * time.Hour, 40 * 24 * time.Hour, 50 * 365 * 24 * time.Hour} {
		t.Run(span.String(), func(t *testing.T) {
			var h histogram
			first, last := t0, t0
			for i := range 500 {
				at := t0.Add(time.Duration(rng.Int64N(int64(span) + 1)))
				if i == 0 {
					at = t0.Add(span) // the span's end first, then the rest
				}
				first, last = minTime(first, at), maxTime(last, at)
				h.add(at, rules.SeverityMedium)
			}
			tl := h.timeline()
			if want := widthLadder[widthFor(first, last)]; tl.Width != want {
				t.Errorf("width %s, want %s", tl.Width, want)
			}
			if len(tl.Counts) > MaxBuckets && tl.Width != widthLadder[len(widthLadder)-1] {
				t.Errorf("%d buckets", len(tl.Counts))
			}
			var n int64
			for _, c := range tl.Counts {
				n += c[rules.SeverityMedium-1]
			}
			if n != 500 {
				t.Errorf("%d alerts in the timeline, want 500", n)
			}
		})
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestNewDirRefusesAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, filepath.Join(t.TempDir(), "missing")} {
		if _, err := NewDir(p, Indices{}, nil); err == nil {
			t.Errorf("NewDir(%s) succeeded", p)
		}
	}
}

// TestRuleTacticsCut: a rule's tactics are cut to the first maxTactics by
// name, whatever order the alerts name them in (Elasticsearch's terms
// aggregation ordered by key gives those).
func TestRuleTacticsCut(t *testing.T) {
	a := newAggregator(Window{})
	for _, names := range [][]string{{"j", "i", "h", "g", "f"}, {"e", "d", "c", "b", "a", "j"}} {
		d := &alertDoc{Timestamp: t0}
		d.Rule.ID, d.Threat.Tactic.Name = "r", names
		a.alert(d)
	}
	if got := a.summary().Rules[0].Tactics; fmt.Sprint(got) != "[a b c d e f g h]" {
		t.Errorf("tactics %q", got)
	}
}

// TestScoresCut: the folder source shows the first maxClusters clusters'
// scores by name, the ones Elasticsearch's terms aggregation returns.
func TestScoresCut(t *testing.T) {
	a := newAggregator(Window{})
	for i := range maxClusters + 5 {
		d := &scoreDoc{Timestamp: t0}
		d.Orchestrator.Cluster.Name = fmt.Sprintf("c%02d", maxClusters+4-i)
		d.Kubesift.PostureScore.Scope = "cluster"
		a.score(d)
	}
	sc := a.summary().Posture.Scores
	if len(sc) != maxClusters || sc[0].Cluster != "c00" || sc[maxClusters-1].Cluster != fmt.Sprintf("c%02d", maxClusters-1) {
		t.Errorf("%d scores, %v", len(sc), sc)
	}
}
