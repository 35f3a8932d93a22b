package notify

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/kubesift/kubesift/rules"
)

// TemplateData is what a receiver's templates see of one notification.
// Field names follow Alertmanager's template data where the meaning is the
// same (Receiver, Status, GroupLabels, CommonLabels, Alerts), so templates
// written for Alertmanager need few changes.
type TemplateData struct {
	Receiver string
	// Status is "firing", or "resolved" for the notification sent when a
	// group closes (Notification.Resolved).
	Status       string
	GroupKey     string
	GroupLabels  map[string]string
	CommonLabels map[string]string
	Alerts       []rules.Alert
	// Count is how many alerts the notification reports, Truncated how
	// many of them are not in Alerts, Total how many the group has taken.
	Count, Truncated, Total, Seq int
	Time                         time.Time
}

// NewTemplateData builds the data of n. CommonLabels are the single-valued
// labels (see Labels) every alert of n has with the same value.
func NewTemplateData(n *Notification) TemplateData {
	status := "firing"
	if n.Resolved {
		status = "resolved"
	}
	return TemplateData{
		Receiver: n.Receiver, Status: status, GroupKey: n.GroupKey, GroupLabels: n.GroupLabels,
		CommonLabels: alertsCommonLabels(n.Alerts), Alerts: n.Alerts,
		Count: n.Count, Truncated: n.Truncated(), Total: n.Total, Seq: n.Seq, Time: n.Time,
	}
}

func alertsCommonLabels(alerts []rules.Alert) map[string]string {
	out := map[string]string{}
	for i := range alerts {
		l := Labels(&alerts[i])
		if i == 0 {
			for k, v := range l {
				if len(v) == 1 {
					out[k] = v[0]
				}
			}
			continue
		}
		for k, v := range out {
			if got := l[k]; len(got) != 1 || got[0] != v {
				delete(out, k)
			}
		}
	}
	return out
}

// Template is a text template parsed once, when the configuration is
// loaded, so a broken template stops the start-up instead of a delivery.
// A key missing from a map is an error (missingkey=error): a typo in a
// label name shows up as a failed notification, not as "<no value>" in a
// page.
type Template struct {
	t interface {
		Execute(w io.Writer, data any) error
		Name() string
	}
}

// maxTemplateOutput bounds what one execution may produce: a template that
// ranges over a large group must not build an unbounded message.
const maxTemplateOutput = 1 << 20

// ParseTemplate parses text under name (used in errors) with the helper
// functions of TemplateFuncs.
func ParseTemplate(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(TemplateFuncs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return &Template{t: t}, nil
}

// ParseHTMLTemplate is ParseTemplate for an html/template: values are
// escaped for the HTML context they land in, so alert text (chosen by
// whoever made the audited request) cannot add markup or links.
func ParseHTMLTemplate(name, text string) (*Template, error) {
	t, err := htmltemplate.New(name).Option("missingkey=error").Funcs(TemplateFuncs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return &Template{t: t}, nil
}

// Execute renders d. The output is cut at 1 MiB.
func (t *Template) Execute(d TemplateData) (string, error) {
	var b limitedBuffer
	b.max = maxTemplateOutput
	if err := t.t.Execute(&b, d); err != nil && !errors.Is(err, errTemplateOutputFull) {
		return "", fmt.Errorf("template %s: %w", t.t.Name(), err)
	}
	return b.String(), nil
}

// TemplateFuncs are the helper functions every template can call, beside
// text/template's built-ins:
//
//	join sep list        strings.Join
//	upper, lower, title  case (title upper-cases the first letter)
//	truncate n s         s cut to n runes, "…" appended when cut
//	default d v          v, or d when v is empty
//	sortedKeys map       the keys of a label map, sorted
func TemplateFuncs() template.FuncMap {
	return template.FuncMap{
		"join":  func(sep string, l []string) string { return strings.Join(l, sep) },
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"title": func(s string) string {
			if s == "" {
				return s
			}
			r := []rune(s)
			return strings.ToUpper(string(r[0])) + string(r[1:])
		},
		"truncate": truncateRunes,
		"default": func(d, v string) string {
			if v == "" {
				return d
			}
			return v
		},
		"sortedKeys": func(m map[string]string) []string {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return keys
		},
	}
}

// truncateRunes cuts s to n runes, the last being "…" when it was cut.
func truncateRunes(n int, s string) string {
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

var errTemplateOutputFull = fmt.Errorf("template output over %d bytes", maxTemplateOutput)

// limitedBuffer stops a template's output at max bytes.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.Buffer.Write(p[:max(room, 0)])
		return 0, errTemplateOutputFull
	}
	return b.Buffer.Write(p)
}
