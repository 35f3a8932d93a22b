package kibana

import (
	"fmt"
	"strings"

	"github.com/kubesift/kubesift/internal/config"
)

// View names one of kubesift's data views; its index pattern comes from the
// configuration (Views).
type View string

// The data views. Records spans the audit and Events streams, so one panel
// (and one Discover link) covers both sources.
const (
	ViewAudit       View = "audit"
	ViewEvents      View = "events"
	ViewRecords     View = "records"
	ViewAlerts      View = "alerts"
	ViewFindings    View = "findings"
	ViewTransitions View = "finding-transitions"
	ViewScores      View = "posture-scores"
	ViewObjects     View = "objects"
)

// DataViewID is the saved-object id of a data view.
func DataViewID(v View) string { return "kubesift-" + string(v) }

// Clause is one condition of a panel's query; a Query holds when all of
// its clauses hold. Exactly one of Values, Phrase, Exists and Any is set.
type Clause struct {
	// Field is the field the clause tests (unused with Any).
	Field string
	// Values: the field equals one of them (keyword fields).
	Values []string
	// Phrase: the (text) field contains the words in this order.
	Phrase string
	// Exists: the field has a value.
	Exists bool
	// Any: at least one of these clauses holds.
	Any []Clause
	// Not negates the clause.
	Not bool
}

// Is is a clause that field equals one of values.
func Is(field string, values ...string) Clause { return Clause{Field: field, Values: values} }

// Has is a clause that field has a value.
func Has(field string) Clause { return Clause{Field: field, Exists: true} }

// Phrase is a clause that the text field contains phrase.
func Phrase(field, phrase string) Clause { return Clause{Field: field, Phrase: phrase} }

// AnyOf is a clause that one of cs holds.
func AnyOf(cs ...Clause) Clause { return Clause{Any: cs} }

// Not negates c.
func Not(c Clause) Clause { c.Not = !c.Not; return c }

// AggKind is an aggregation both Kibana's aggregation-based visualizations
// and Elasticsearch know under the same name.
type AggKind string

// Metric aggregations (Count needs no field) and bucket aggregations.
const (
	Count       AggKind = "count"
	Max         AggKind = "max"
	Avg         AggKind = "avg"
	Cardinality AggKind = "cardinality"
	// Latest is the field's value in the newest document of the bucket
	// (Kibana's "Top hit" sorted by @timestamp).
	Latest        AggKind = "top_hits"
	Terms         AggKind = "terms"
	DateHistogram AggKind = "date_histogram"
)

// Agg is one aggregation of a panel.
type Agg struct {
	Kind  AggKind
	Field string
	// Label is the column or axis title Kibana shows (empty: its default).
	Label string
	// Size is the number of terms buckets (default 10).
	Size int
	// OrderBy is the index of the panel's metric a terms aggregation is
	// ordered by (default 0, the first); Asc orders ascending, so the
	// least recent or least frequent come first.
	OrderBy int
	Asc     bool
	// ByKey orders terms by their value instead (a metric such as Latest
	// cannot order buckets).
	ByKey bool
}

// Metric aggregations.
func CountOf() Agg                     { return Agg{Kind: Count} }
func MaxOf(field, label string) Agg    { return Agg{Kind: Max, Field: field, Label: label} }
func AvgOf(field, label string) Agg    { return Agg{Kind: Avg, Field: field, Label: label} }
func LatestOf(field, label string) Agg { return Agg{Kind: Latest, Field: field, Label: label} }
func DistinctOf(field, label string) Agg {
	return Agg{Kind: Cardinality, Field: field, Label: label}
}

// By is a terms aggregation of field with size buckets.
func By(field, label string, size int) Agg {
	return Agg{Kind: Terms, Field: field, Label: label, Size: size}
}

// OverTime is the date histogram of @timestamp.
func OverTime() Agg { return Agg{Kind: DateHistogram, Field: "@timestamp", Label: "@timestamp"} }

// VisKind is how a panel draws its aggregations.
type VisKind string

// Bar and Line take OverTime as the first bucket and an optional terms
// split; Pie and Table take terms buckets; Metric takes none; Search is a
// saved search (Columns) rather than a visualization.
const (
	Bar    VisKind = "histogram"
	Line   VisKind = "line"
	Pie    VisKind = "pie"
	Table  VisKind = "table"
	Metric VisKind = "metric"
	Search VisKind = "search"
)

// Panel is one visualization or saved search of a dashboard.
type Panel struct {
	// ID is unique in the spec; the saved object's id is "kubesift-"+ID.
	ID          string
	Title       string
	Description string
	View        View
	Query       []Clause
	Vis         VisKind
	// Metrics default to one Count.
	Metrics []Agg
	Buckets []Agg
	// Columns are a saved search's columns.
	Columns []string
	// W and H are the panel's size in the dashboard's 48-column grid
	// (defaults 24 and 15).
	W, H int
}

// SavedObjectID is the id of the panel's visualization or saved search.
func (p *Panel) SavedObjectID() string { return "kubesift-" + p.ID }

// metrics returns the panel's metrics, Count when none are set.
func (p *Panel) metrics() []Agg {
	if len(p.Metrics) == 0 {
		return []Agg{CountOf()}
	}
	return p.Metrics
}

// Control is an options-list control of a dashboard: a filter on Field
// with its values read from View.
type Control struct {
	Field, Title string
	View         View
}

// Dashboard is one dashboard of the spec.
type Dashboard struct {
	ID, Title, Description string
	Controls               []Control
	Panels                 []Panel
}

// SavedObjectID is the dashboard's saved-object id.
func (d *Dashboard) SavedObjectID() string { return "kubesift-dashboard-" + d.ID }

// Views returns the index pattern of each data view for cfg: the stream
// and index names `kubesift setup es` installs.
func Views(cfg config.ElasticsearchConfig) map[View]string {
	return map[View]string{
		ViewAudit:       cfg.Streams.Audit,
		ViewEvents:      cfg.Streams.Events,
		ViewRecords:     cfg.Streams.Audit + "," + cfg.Streams.Events,
		ViewAlerts:      cfg.AlertsIndex,
		ViewFindings:    cfg.Findings.Index,
		ViewTransitions: cfg.Findings.TransitionsStream,
		ViewScores:      cfg.Findings.ScoresStream,
		ViewObjects:     cfg.Streams.Posture,
	}
}

// KQL renders a query in Kibana's query language. Values are quoted, so a
// value is matched as written (KQL wildcards and keywords have no effect).
func KQL(q []Clause) string {
	parts := make([]string, 0, len(q))
	for _, c := range q {
		parts = append(parts, clauseKQL(c))
	}
	return strings.Join(parts, " and ")
}

func clauseKQL(c Clause) string {
	var s string
	switch {
	case len(c.Any) > 0:
		alts := make([]string, len(c.Any))
		for i, a := range c.Any {
			alts[i] = clauseKQL(a)
		}
		s = "(" + strings.Join(alts, " or ") + ")"
	case c.Exists:
		s = c.Field + " : *"
	case c.Phrase != "":
		s = c.Field + " : " + kqlQuote(c.Phrase)
	case len(c.Values) == 1:
		s = c.Field + " : " + kqlQuote(c.Values[0])
	default:
		vs := make([]string, len(c.Values))
		for i, v := range c.Values {
			vs[i] = kqlQuote(v)
		}
		s = c.Field + " : (" + strings.Join(vs, " or ") + ")"
	}
	if c.Not {
		return "not " + s
	}
	return s
}

// kqlQuote quotes a KQL value; inside quotes only \ and " need escaping.
func kqlQuote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// validate checks what the generator relies on, naming the dashboard and
// panel at fault.
func (d *Dashboard) validate(seen map[string]bool) error {
	for i := range d.Panels {
		p := &d.Panels[i]
		where := fmt.Sprintf("kibana: dashboard %s: panel %q", d.ID, p.ID)
		if p.ID == "" || seen[p.ID] {
			return fmt.Errorf("%s: missing or repeated id", where)
		}
		seen[p.ID] = true
		if p.Description == "" {
			return fmt.Errorf("%s: no description", where)
		}
		switch p.Vis {
		case Bar, Line:
			if len(p.Buckets) == 0 || p.Buckets[0].Kind != DateHistogram || len(p.Buckets) > 2 {
				return fmt.Errorf("%s: a %s chart takes OverTime and at most one split", where, p.Vis)
			}
		case Pie, Table:
			if len(p.Buckets) == 0 {
				return fmt.Errorf("%s: a %s needs terms buckets", where, p.Vis)
			}
		case Metric:
			if len(p.Buckets) > 0 {
				return fmt.Errorf("%s: a metric takes no buckets", where)
			}
		case Search:
			if len(p.Columns) == 0 {
				return fmt.Errorf("%s: a saved search needs columns", where)
			}
		default:
			return fmt.Errorf("%s: unknown vis %q", where, p.Vis)
		}
		for _, b := range p.Buckets {
			if b.Kind != Terms || b.ByKey {
				continue
			}
			if b.OrderBy >= len(p.metrics()) || p.metrics()[b.OrderBy].Kind == Latest {
				return fmt.Errorf("%s: terms %s cannot be ordered by metric %d", where, b.Field, b.OrderBy)
			}
		}
	}
	return nil
}
