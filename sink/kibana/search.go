package kibana

import (
	"strconv"
)

// Search returns the Elasticsearch search equivalent to what Kibana asks
// for the panel: the query (the clauses, as KQL compiles them: a quoted
// value is a match_phrase, which on a keyword field is an exact match), the
// bucket aggregations nested in the panel's order with the metrics at
// every level (terms order by them), and for a saved search the newest
// documents. The date histogram uses a fixed hourly interval where Kibana
// picks one from the time range. Bucket aggregations are named b0, b1, …,
// metrics m0, m1, ….
func (p *Panel) Search() map[string]any {
	body := map[string]any{"query": QueryDSL(p.Query), "track_total_hits": true}
	if p.Vis == Search {
		body["size"] = 10
		body["sort"] = []any{map[string]any{"@timestamp": "desc"}}
		return body
	}
	body["size"] = 0
	metrics := map[string]any{}
	for i, m := range p.metrics() {
		if m.Kind != Count {
			metrics["m"+strconv.Itoa(i)] = metricDSL(m)
		}
	}
	var aggs map[string]any
	if len(metrics) > 0 {
		aggs = metrics
	}
	for i := len(p.Buckets) - 1; i >= 0; i-- {
		b := p.Buckets[i]
		a := map[string]any{}
		switch b.Kind {
		case DateHistogram:
			a["date_histogram"] = map[string]any{"field": b.Field, "fixed_interval": "1h", "min_doc_count": 1}
		case Terms:
			t := map[string]any{"field": b.Field, "size": b.size()}
			dir := "desc"
			if b.Asc {
				dir = "asc"
			}
			switch m := p.metrics()[b.OrderBy]; {
			case b.ByKey:
				t["order"] = map[string]any{"_key": "asc"}
			case m.Kind == Count:
				t["order"] = map[string]any{"_count": dir}
			default:
				t["order"] = map[string]any{"m" + strconv.Itoa(b.OrderBy): dir}
			}
			a["terms"] = t
		}
		sub := map[string]any{}
		for k, v := range metrics {
			sub[k] = v
		}
		for k, v := range aggs {
			sub[k] = v
		}
		if len(sub) > 0 {
			a["aggs"] = sub
		}
		aggs = map[string]any{"b" + strconv.Itoa(i): a}
	}
	if aggs != nil {
		body["aggs"] = aggs
	}
	return body
}

func metricDSL(m Agg) map[string]any {
	if m.Kind == Latest {
		return map[string]any{"top_hits": map[string]any{"size": 1, "sort": []any{map[string]any{"@timestamp": "desc"}},
			"_source": false, "docvalue_fields": []string{m.Field}}}
	}
	return map[string]any{string(m.Kind): map[string]any{"field": m.Field}}
}

// QueryDSL is the Elasticsearch query of the clauses: a bool filter of
// each (match_all without clauses).
func QueryDSL(q []Clause) map[string]any {
	if len(q) == 0 {
		return map[string]any{"match_all": map[string]any{}}
	}
	fs := make([]any, len(q))
	for i, c := range q {
		fs[i] = clauseDSL(c)
	}
	return map[string]any{"bool": map[string]any{"filter": fs}}
}

func clauseDSL(c Clause) map[string]any {
	var q map[string]any
	switch {
	case len(c.Any) > 0:
		alts := make([]any, len(c.Any))
		for i, a := range c.Any {
			alts[i] = clauseDSL(a)
		}
		q = map[string]any{"bool": map[string]any{"should": alts, "minimum_should_match": 1}}
	case c.Exists:
		q = map[string]any{"exists": map[string]any{"field": c.Field}}
	case c.Phrase != "":
		q = map[string]any{"match_phrase": map[string]any{c.Field: c.Phrase}}
	default:
		alts := make([]any, len(c.Values))
		for i, v := range c.Values {
			alts[i] = map[string]any{"match_phrase": map[string]any{c.Field: v}}
		}
		q = map[string]any{"bool": map[string]any{"should": alts, "minimum_should_match": 1}}
	}
	if c.Not {
		return map[string]any{"bool": map[string]any{"must_not": []any{q}}}
	}
	return q
}

// FieldUse is a field the spec names and how.
type FieldUse struct {
	View  View
	Field string
	// Aggregated: a terms, metric or control reads it, so the mapping
	// must give it doc values (keyword, numeric, date, ip, boolean).
	Aggregated bool
	// Where names the panel, control or data view that uses it.
	Where string
}

// Fields lists every field a data view format, panel or control names.
func Fields() []FieldUse {
	var out []FieldUse
	for _, dv := range dataViews() {
		where := "data view " + DataViewID(dv.view)
		for f := range dv.formats {
			out = append(out, FieldUse{View: dv.view, Field: f, Where: where})
		}
		for f, l := range dv.links {
			out = append(out, FieldUse{View: dv.view, Field: f, Where: where},
				FieldUse{View: l.view, Field: l.field, Where: where + " (link target)"})
		}
	}
	for _, d := range Dashboards() {
		for _, c := range d.Controls {
			out = append(out, FieldUse{View: c.View, Field: c.Field, Aggregated: true, Where: "control " + c.Title + " of " + d.ID})
		}
		for i := range d.Panels {
			p := &d.Panels[i]
			where := "panel " + p.ID
			var clause func(c Clause)
			clause = func(c Clause) {
				for _, a := range c.Any {
					clause(a)
				}
				if c.Field != "" {
					out = append(out, FieldUse{View: p.View, Field: c.Field, Where: where})
				}
			}
			for _, c := range p.Query {
				clause(c)
			}
			for _, a := range append(p.metrics(), p.Buckets...) {
				if a.Field != "" {
					out = append(out, FieldUse{View: p.View, Field: a.Field, Aggregated: true, Where: where})
				}
			}
			for _, c := range p.Columns {
				out = append(out, FieldUse{View: p.View, Field: c, Where: where})
			}
		}
	}
	return out
}
