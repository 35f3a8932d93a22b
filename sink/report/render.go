package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kubesift/kubesift/rules"
)

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"chart": func(name string, c *barChart, empty, other string) chartArgs {
		return chartArgs{Name: name, Chart: c, Empty: empty, OtherText: other}
	},
	"barEnd": func(w float64) float64 { return labelWidth + w + 6 },
}).Parse(pageText))

// chartArgs are the "bars" template's: one bar chart and its texts.
type chartArgs struct {
	Name, Empty, OtherText string
	Chart                  *barChart
}

// Options are what Render needs beyond the Summary.
type Options struct {
	// Generated stamps the page; zero means now.
	Generated time.Time
}

// Longest strings the page shows: record content can be any length, and
// a table cell or a bar label is read at a glance.
const (
	clipLabel   = 44
	clipMessage = 240
)

// Render writes the page of s to w.
func Render(w io.Writer, s *Summary, o Options) error {
	if o.Generated.IsZero() {
		o.Generated = time.Now()
	}
	if err := page.Execute(w, newView(s, o)); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	return nil
}

// view is the page's data: everything the template shows, already
// formatted and clipped, and the charts' geometry.
type view struct {
	Source, Window, Generated string
	Audit, Events, Alerts     int64
	Severities                []sevTile
	Timeline                  *timelineChart
	Rules, Actors, Reasons    *barChart
	Posture                   *postureView
	TopAlerts                 []alertRow
	Skipped                   int64
	SkippedSamples, Notes     []string
}

type sevTile struct {
	Name  string
	Count int64
}

// severityNames run from the most severe down, as the page lists them.
var severityNames = func() []string {
	out := make([]string, 0, numSeverity)
	for s := rules.SeverityCritical; s >= rules.SeverityInfo; s-- {
		out = append(out, s.String())
	}
	return out
}()

func newView(s *Summary, o Options) *view {
	v := &view{
		Source: clip(s.Source, 200), Window: windowText(s.Window), Generated: o.Generated.UTC().Format(time.RFC3339),
		Audit: s.AuditRecords, Events: s.Events, Alerts: s.Alerts, Skipped: s.Skipped, Notes: s.Notes,
	}
	for _, x := range s.SkippedSamples {
		v.SkippedSamples = append(v.SkippedSamples, clip(x, clipMessage))
	}
	for i, name := range severityNames {
		v.Severities = append(v.Severities, sevTile{Name: name, Count: s.BySeverity[numSeverity-1-i]})
	}
	v.Timeline = newTimelineChart(s.Timeline)
	v.Rules = newBarChart(s.Rules, s.OtherRules, func(r RuleCount) barRow {
		return barRow{Label: r.ID, Title: r.Name, Note: strings.Join(r.Tactics, ", "), Count: r.Count, Sev: sevName(r.Severity)}
	})
	v.Actors = newBarChart(s.Actors, s.OtherActors, func(a ActorCount) barRow {
		return barRow{Label: a.User, Count: a.Count, Sev: sevName(a.Severity)}
	})
	v.Reasons = newBarChart(s.Reasons, s.OtherEvents, func(r ReasonCount) barRow {
		sev := "normal"
		if r.Warnings > 0 {
			sev = "warning"
		}
		return barRow{Label: r.Reason, Title: fmt.Sprintf("%d Warning", r.Warnings), Count: r.Count, Sev: sev}
	})
	v.Posture = newPostureView(s.Posture)
	for _, a := range s.TopAlerts {
		v.TopAlerts = append(v.TopAlerts, alertRow{
			Time: a.Time.UTC().Format("2006-01-02 15:04:05"), Sev: sevName(a.Severity), Rule: clip(a.RuleID, clipLabel),
			RuleName: clip(a.RuleName, clipMessage), Tactics: clip(strings.Join(a.Tactics, ", "), clipMessage),
			Message: clip(a.Message, clipMessage), User: clip(a.User, clipLabel),
			Where: clip(joinNonEmpty(" / ", a.Cluster, a.Namespace, a.Object), clipMessage),
		})
	}
	return v
}

func joinNonEmpty(sep string, parts ...string) string {
	kept := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, sep)
}

type alertRow struct {
	Time, Sev, Rule, RuleName, Tactics, Message, User, Where string
}

// sevName is a severity's name, which is also its CSS class.
func sevName(s rules.Severity) string {
	if severityIndex(s) < 0 {
		return "unknown"
	}
	return s.String()
}

func windowText(w Window) string {
	f := func(t time.Time, open string) string {
		if t.IsZero() {
			return open
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if w.From.IsZero() && w.To.IsZero() {
		return "all documents"
	}
	return f(w.From, "the first document") + " to " + f(w.To, "now")
}

// Chart geometry, in the SVG's own units (the page scales it).
const (
	chartWidth = 900.0
	labelWidth = 330.0
	barHeight  = 18.0
	rowHeight  = 24.0
	plotTop    = 10.0
	plotHeight = 170.0
	plotLeft   = 50.0
	// barSpace is the longest bar: what is left of the width once the
	// label, the count and a short note have their room.
	barSpace = chartWidth - labelWidth - 250
)

type barChart struct {
	Height float64
	Rows   []barRow
	Other  int64
}

type barRow struct {
	// Label is drawn left of the bar, Note right of its count, Title in
	// the tooltip.
	Label, Title, Note, Sev string
	Count                   int64
	Y, TextY, W             float64
}

func newBarChart[T any](xs []T, other int64, row func(T) barRow) *barChart {
	if len(xs) == 0 {
		return nil
	}
	c := &barChart{Other: other, Height: float64(len(xs)) * rowHeight}
	var top int64
	for _, x := range xs {
		top = max(top, row(x).Count)
	}
	for i, x := range xs {
		r := row(x)
		r.Label, r.Title, r.Note = clip(r.Label, clipLabel), clip(r.Title, clipMessage), clip(r.Note, clipMessage)
		r.Y = float64(i)*rowHeight + (rowHeight-barHeight)/2
		r.TextY = float64(i)*rowHeight + rowHeight/2 + 5
		r.W = max(2, barSpace*float64(r.Count)/float64(max(top, 1)))
		c.Rows = append(c.Rows, r)
	}
	return c
}

type timelineChart struct {
	Bars       []timelineBar
	Max        int64
	Width      string
	Ticks      []tick
	PlotBottom float64
	PlotLeft   float64
	PlotRight  float64
	AxisLabelY float64
	MaxLabelY  float64
}

type timelineBar struct {
	Title string
	Rects []stackRect
}

type stackRect struct {
	Sev        string
	X, Y, W, H float64
}

type tick struct {
	X             float64
	Label, Anchor string
}

func newTimelineChart(tl Timeline) *timelineChart {
	if len(tl.Counts) == 0 {
		return nil
	}
	c := &timelineChart{Width: tl.Width.String(), PlotLeft: plotLeft, PlotRight: chartWidth - 10,
		PlotBottom: plotTop + plotHeight, AxisLabelY: plotTop + plotHeight + 18, MaxLabelY: plotTop + 10}
	for _, b := range tl.Counts {
		var sum int64
		for _, n := range b {
			sum += n
		}
		c.Max = max(c.Max, sum)
	}
	if c.Max == 0 {
		return nil
	}
	step := (c.PlotRight - c.PlotLeft) / float64(len(tl.Counts))
	format := "15:04:05"
	if tl.Width >= time.Hour || tl.Width*time.Duration(len(tl.Counts)) > 24*time.Hour {
		format = "2006-01-02 15:04"
	}
	for i, b := range tl.Counts {
		at := tl.Start.Add(time.Duration(i) * tl.Width)
		x := c.PlotLeft + float64(i)*step
		bar := timelineBar{Title: at.UTC().Format("2006-01-02 15:04:05") + " +" + tl.Width.String()}
		y := c.PlotBottom
		for s := 0; s < numSeverity; s++ {
			if b[s] == 0 {
				continue
			}
			h := plotHeight * float64(b[s]) / float64(c.Max)
			y -= h
			bar.Rects = append(bar.Rects, stackRect{Sev: rules.Severity(s + 1).String(), X: x + step*0.1, Y: y, W: step * 0.8, H: h})
			bar.Title += fmt.Sprintf(", %s %d", rules.Severity(s+1), b[s])
		}
		if len(bar.Rects) > 0 {
			c.Bars = append(c.Bars, bar)
		}
		switch {
		case i == 0:
			c.Ticks = append(c.Ticks, tick{X: x, Label: at.UTC().Format(format), Anchor: "start"})
		case i == len(tl.Counts)-1:
			c.Ticks = append(c.Ticks, tick{X: x + step, Label: at.Add(tl.Width).UTC().Format(format), Anchor: "end"})
		case len(tl.Counts) > 4 && i == len(tl.Counts)/2:
			c.Ticks = append(c.Ticks, tick{X: x, Label: at.UTC().Format(format), Anchor: "middle"})
		}
	}
	return c
}

type postureView struct {
	Scores  []scoreRing
	Open    int64
	Total   int64
	Failing *barChart
	Checks  []Check
}

type scoreRing struct {
	Cluster, Percent, Detail string
	Dash                     float64
	Class                    string
}

// ringLength is the circumference of the score ring (r = 40).
const ringLength = 2 * 3.14159265 * 40

func newPostureView(p *Posture) *postureView {
	if p == nil {
		return nil
	}
	v := &postureView{Open: p.Open, Total: p.Findings}
	for _, s := range p.Scores {
		class := "good"
		switch {
		case s.Percent < 50:
			class = "bad"
		case s.Percent < 80:
			class = "fair"
		}
		v.Scores = append(v.Scores, scoreRing{
			Cluster: clip(s.Cluster, clipLabel), Percent: fmt.Sprintf("%.0f%%", s.Percent), Class: class,
			Detail: fmt.Sprintf("%d passed, %d failed, %s", s.Passed, s.Failed, s.At.UTC().Format("2006-01-02 15:04")),
			Dash:   ringLength * min(max(s.Percent, 0), 100) / 100,
		})
	}
	v.Failing = newBarChart(p.Failing, p.OtherFailing, func(c Check) barRow {
		return barRow{Label: c.ID, Title: c.Title, Count: c.Open, Sev: sevName(c.Severity)}
	})
	for _, c := range p.Failing {
		c.Title = clip(c.Title, clipMessage)
		v.Checks = append(v.Checks, c)
	}
	return v
}

// clip shortens s to n runes, marking the cut, and makes it valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
