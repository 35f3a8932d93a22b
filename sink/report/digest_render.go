package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// Digest formats, as `kubesift report --digest -o` names them.
const (
	DigestText = "text"
	DigestJSON = "json"
	DigestHTML = "html"
)

// RenderDigests writes ds in format (DigestText, DigestJSON or
// DigestHTML), times in loc (nil: UTC). Rule names and Event reasons come
// from records: the text clips them and replaces control characters, the
// page escapes them with html/template, JSON encodes them.
func RenderDigests(w io.Writer, ds []*Digest, format string, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	var err error
	switch format {
	case DigestText:
		for i, d := range ds {
			if i > 0 {
				if _, err = io.WriteString(w, "\n"); err != nil {
					break
				}
			}
			if err = digestText(w, d, loc); err != nil {
				break
			}
		}
	case DigestJSON:
		if ds == nil {
			ds = []*Digest{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(map[string]any{"digests": ds})
	case DigestHTML:
		err = digestPage.Execute(w, digestPageView{Digests: digestViews(ds, loc)})
	default:
		return fmt.Errorf("report: digest format %q is not text, json or html", format)
	}
	if err != nil {
		return fmt.Errorf("report: digest: %w", err)
	}
	return nil
}

// DigestTitle is a digest's one-line title ("kubesift digest: prod,
// 2026-12-06 08:00 – 2026-12-07 08:00 CET").
func DigestTitle(d *Digest, loc *time.Location) string {
	return "kubesift digest: " + oneLine(clip(d.Cluster, clipLabel)) + ", " + period(d, loc)
}

func period(d *Digest, loc *time.Location) string {
	const layout = "2006-01-02 15:04"
	from := "the beginning"
	if !d.From.IsZero() {
		from = d.From.In(loc).Format(layout)
	}
	return from + " – " + d.To.In(loc).Format(layout+" MST")
}

// digestText writes d as plain text, one figure a line.
func digestText(w io.Writer, d *Digest, loc *time.Location) error {
	v := newDigestView(d, loc)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n\n", v.Title)
	fmt.Fprintf(tw, "Posture score\t%s\n", v.Score)
	fmt.Fprintf(tw, "Findings\t%d opened, %d resolved, %d open now\n", d.FindingsOpened, d.FindingsResolved, d.OpenFindings)
	fmt.Fprintf(tw, "Unused bindings\t%s\n", v.Unused)
	for _, b := range v.Bindings {
		fmt.Fprintf(tw, "  %s\t%s\n", b.Label, b.Since)
	}
	fmt.Fprintf(tw, "Alerts\t%d\n", d.Alerts)
	for _, r := range v.Rules {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", r.Label, r.Severity, r.Count)
	}
	fmt.Fprintf(tw, "Event warnings\t%d\n", d.Warnings)
	for _, r := range v.Reasons {
		fmt.Fprintf(tw, "  %s\t\t%d\n", r.Label, r.Count)
	}
	fmt.Fprintf(tw, "Records\t%s\n", v.Records)
	fmt.Fprintf(tw, "Dead letters\t%s\n", v.Dropped)
	for _, r := range v.DropReasons {
		fmt.Fprintf(tw, "  %s\t\t%d\n", r.Label, r.Count)
	}
	return tw.Flush()
}

// digestView is a digest formatted for the text and the page.
type digestView struct {
	Title, Score, Records, Unused, Dropped string
	Rules, Reasons, DropReasons            []digestRow
	Bindings                               []bindingRow
	D                                      *Digest
}

type bindingRow struct{ Label, Since string }

type digestRow struct {
	Label, Severity string
	Count           int64
}

func newDigestView(d *Digest, loc *time.Location) digestView {
	v := digestView{Title: DigestTitle(d, loc), Score: "no posture score", D: d}
	if s := d.Score; s != nil {
		v.Score = fmt.Sprintf("%.1f%% (%d passed, %d failed)", s.Percent, s.Passed, s.Failed)
		if s.Start != nil {
			v.Score = fmt.Sprintf("%.1f%% (%+.1f since %.1f%%; %d passed, %d failed)", s.Percent, s.Change(), *s.Start, s.Passed, s.Failed)
		}
	}
	v.Unused = fmt.Sprintf("%d now, %d became unused in the period", d.UnusedBindings, d.UnusedBindingsOpened)
	for _, b := range d.TopUnused {
		label := b.Name
		if b.Namespace != "" {
			label = b.Namespace + "/" + b.Name
		}
		v.Bindings = append(v.Bindings, bindingRow{Label: oneLine(clip(b.Kind+" "+label, clipLabel)), Since: "since " + b.Since.In(loc).Format("2006-01-02 15:04 MST")})
	}
	if more := d.UnusedBindings - int64(len(d.TopUnused)); more > 0 {
		v.Bindings = append(v.Bindings, bindingRow{Label: fmt.Sprintf("and %d more", more)})
	}
	for _, r := range d.Rules {
		label := r.ID
		if r.Name != "" && r.Name != r.ID {
			label += " (" + r.Name + ")"
		}
		v.Rules = append(v.Rules, digestRow{Label: oneLine(clip(label, clipLabel)), Severity: r.Severity.String(), Count: r.Alerts})
	}
	if d.OtherRules > 0 {
		v.Rules = append(v.Rules, digestRow{Label: "other rules", Count: d.OtherRules})
	}
	for _, r := range d.Reasons {
		v.Reasons = append(v.Reasons, digestRow{Label: oneLine(clip(r.Reason, clipLabel)), Count: r.Warnings})
	}
	if d.OtherWarnings > 0 {
		v.Reasons = append(v.Reasons, digestRow{Label: "other reasons", Count: d.OtherWarnings})
	}
	v.Records = fmt.Sprintf("%d audit records, %d Events indexed; %d of them trimmed", d.AuditRecords, d.Events, d.Trimmed)
	v.Dropped, v.DropReasons = deadLetterRows(d.DeadLetters)
	return v
}

// deadLetterRows is the dead-letter line and its reasons.
func deadLetterRows(dl *DeadLetters) (string, []digestRow) {
	if dl == nil {
		return "not counted (the dead-letter topic was not read)", nil
	}
	line := fmt.Sprintf("%d records, %d alerts not indexed", dl.Records, dl.Alerts)
	if dl.Partial {
		line = "at least " + line + " (the topic held more than one reading takes)"
	}
	rows := make([]digestRow, 0, len(dl.Reasons)+1)
	for _, r := range dl.Reasons {
		rows = append(rows, digestRow{Label: oneLine(clip(r.Source+": "+r.Reason, clipLabel)), Count: r.Letters})
	}
	if dl.OtherReasons > 0 {
		rows = append(rows, digestRow{Label: "other reasons", Count: dl.OtherReasons})
	}
	return line, rows
}

func digestViews(ds []*Digest, loc *time.Location) []digestView {
	out := make([]digestView, 0, len(ds))
	for _, d := range ds {
		out = append(out, newDigestView(d, loc))
	}
	return out
}

// oneLine replaces control characters by spaces: a line break or a tab
// in a reason would forge lines or columns of the text, and an escape
// sequence would reach the terminal that prints it.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

type digestPageView struct{ Digests []digestView }

// digestPage is self-contained like report.html: inline CSS, no script,
// nothing fetched (its CSP forbids both).
var digestPage = template.Must(template.New("digest").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>kubesift digest</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;color:#1d2330;margin:16px}
section{border:1px solid #d5d9e0;border-radius:6px;padding:8px 16px;margin:0 0 16px;max-width:760px}
h2{font-size:16px}td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}td.n{text-align:right}
</style></head><body>
{{ range .Digests }}<section>
<h2>{{ .Title }}</h2>
<table>
<tr><th>Posture score</th><td colspan="2">{{ .Score }}</td></tr>
<tr><th>Findings</th><td colspan="2">{{ .D.FindingsOpened }} opened, {{ .D.FindingsResolved }} resolved, {{ .D.OpenFindings }} open now</td></tr>
<tr><th>Unused bindings</th><td colspan="2">{{ .Unused }}</td></tr>
{{ range .Bindings }}<tr><td>{{ .Label }}</td><td colspan="2">{{ .Since }}</td></tr>
{{ end }}<tr><th>Alerts</th><td colspan="2">{{ .D.Alerts }}</td></tr>
{{ range .Rules }}<tr><td>{{ .Label }}</td><td>{{ .Severity }}</td><td class="n">{{ .Count }}</td></tr>
{{ end }}<tr><th>Event warnings</th><td colspan="2">{{ .D.Warnings }}</td></tr>
{{ range .Reasons }}<tr><td>{{ .Label }}</td><td></td><td class="n">{{ .Count }}</td></tr>
{{ end }}<tr><th>Records</th><td colspan="2">{{ .Records }}</td></tr>
<tr><th>Dead letters</th><td colspan="2">{{ .Dropped }}</td></tr>
{{ range .DropReasons }}<tr><td>{{ .Label }}</td><td></td><td class="n">{{ .Count }}</td></tr>
{{ end }}</table>
</section>
{{ else }}<p>No cluster had documents in the period.</p>
{{ end }}</body></html>
`))
