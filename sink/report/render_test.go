package report

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/report/reporttest"
)

func render(t testing.TB, s *Summary) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, s, Options{Generated: t0}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hostileSummary puts attacker-controlled text in every string a page
// shows.
func hostileSummary() *Summary {
	s := &Summary{Source: hostile, Alerts: 1, Events: 1}
	s.BySeverity[rules.SeverityCritical-1] = 1
	s.Timeline = Timeline{Start: t0, Width: time.Second, Counts: [][numSeverity]int64{{0, 0, 0, 0, 1}}}
	s.Rules = []RuleCount{{ID: hostile, Name: hostile, Severity: rules.SeverityCritical, Tactics: []string{hostile}, Count: 1}}
	s.Actors = []ActorCount{{User: hostile, Severity: rules.SeverityCritical, Count: 1}}
	s.Reasons = []ReasonCount{{Reason: hostile, Count: 1, Warnings: 1}}
	s.Posture = &Posture{Open: 1, Findings: 1, Scores: []Score{{Cluster: hostile, Percent: 40, At: t0}},
		Failing: []Check{{ID: hostile, Title: hostile, Severity: rules.SeverityHigh, Open: 1}}}
	s.TopAlerts = []Alert{{ID: hostile, Time: t0, Severity: rules.SeverityCritical, RuleID: hostile, RuleName: hostile,
		Message: hostile, User: hostile, Cluster: hostile, Namespace: hostile, Object: hostile, Tactics: []string{hostile}}}
	s.Skipped, s.SkippedSamples, s.Notes = 1, []string{hostile}, []string{hostile}
	return s
}

// TestRenderEscapes: no attacker-controlled string becomes markup, in any
// of the contexts the page puts one (text, attribute, SVG title).
func TestRenderEscapes(t *testing.T) {
	page := render(t, hostileSummary())
	for _, bad := range []string{"<img", "<script", "onerror=alert(1)>", "<svg onload"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q unescaped", bad)
		}
	}
	if n := strings.Count(page, "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"); n < 10 {
		t.Errorf("the hostile string appears escaped %d times, want it in every section", n)
	}
}

// TestRenderSections: each section shows its chart when there is data and
// an explicit empty marker when there is none; posture says so when the
// store has none.
func TestRenderSections(t *testing.T) {
	full := render(t, dirSummary(t, fixture(t, config.Default().Sink.Elasticsearch), Window{}))
	empty := render(t, &Summary{})
	charts := []string{"timeline", "rules", "actors", "reasons", "posture-score", "failing-checks", "alerts"}
	for _, c := range charts {
		t.Run(c, func(t *testing.T) {
			if !strings.Contains(full, `data-chart="`+c+`"`) || strings.Contains(full, `data-chart-empty="`+c+`"`) {
				t.Errorf("the fixture's page has no %s chart", c)
			}
		})
	}
	for _, c := range []string{"timeline", "rules", "actors", "reasons", "alerts"} {
		t.Run("empty "+c, func(t *testing.T) {
			if !strings.Contains(empty, `data-chart-empty="`+c+`"`) || strings.Contains(empty, `data-chart="`+c+`"`) {
				t.Errorf("the empty page's %s section is not marked empty", c)
			}
		})
	}
	if !strings.Contains(empty, `data-posture="none"`) || !strings.Contains(empty, "No posture data") {
		t.Error("the empty page does not say it has no posture data")
	}
	if strings.Contains(full, `data-posture="none"`) {
		t.Error("the fixture's page says it has no posture data")
	}
}

// TestRenderSelfContained: the page names no URL and loads nothing: no
// src or href attribute, no url() in its style, no script.
func TestRenderSelfContained(t *testing.T) {
	page := render(t, dirSummary(t, fixture(t, config.Default().Sink.Elasticsearch), Window{}))
	// Only markup counts: record text may well mention a URL, escaped.
	if m := regexp.MustCompile(`(?i)<[^>]*(\ssrc=|\shref=|url\(|https?://)|<script|<link|@import|url\(`).FindString(page); m != "" {
		t.Errorf("page refers outside itself: %q", m)
	}
	if !strings.Contains(page, `Content-Security-Policy" content="default-src 'none'`) {
		t.Error("page has no Content-Security-Policy forbidding loads")
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"ünïcödé-long", 5, "ünïc…"},
		{"bad\xffutf8", 20, "bad\uFFFDutf8"},
	} {
		if got := clip(tc.in, tc.n); got != tc.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestReportInChromium opens the fixture's page and the hostile page in
// the real headless Chromium: no console error, every chart drawn with
// marks, nothing the hostile strings could have injected in the DOM.
func TestReportInChromium(t *testing.T) {
	reporttest.Chromium(t)
	for _, tc := range []struct {
		name string
		s    *Summary
	}{
		{"fixture", dirSummary(t, fixture(t, config.Default().Sink.Elasticsearch), Window{})},
		{"hostile", hostileSummary()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.html")
			if err := os.WriteFile(path, []byte(render(t, tc.s)), 0o600); err != nil {
				t.Fatal(err)
			}
			p := reporttest.Open(t, path)
			t.Logf("loaded in %.1f ms; screenshot %s", p.LoadMillis, p.Screenshot)
			if len(p.Errors) > 0 {
				t.Errorf("console errors: %q", p.Errors)
			}
			for _, c := range []string{"timeline", "rules", "actors", "reasons", "posture-score", "failing-checks", "alerts"} {
				if p.Charts[c] == 0 {
					t.Errorf("chart %s missing or empty (charts %v)", c, p.Charts)
				}
			}
			if len(p.Empty) > 0 {
				t.Errorf("sections marked empty: %q", p.Empty)
			}
			for tag, n := range p.Elements {
				if n > 0 {
					t.Errorf("%d %s elements in the page", n, tag)
				}
			}
		})
	}
}
