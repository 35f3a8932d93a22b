package kibana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/kubesift/kubesift/internal/config"
)

// Saved-object versions the generated objects are written in. Kibana
// migrates an imported object from the version it names to its own, and
// refuses one that names a version newer than it knows; these are the
// formats of Kibana 8.9 (the first with every attribute used here), so
// 8.9 and later import the file.
const (
	coreMigrationVersion = "8.8.0"
	migrateDataView      = "8.0.0"
	migrateSearch        = "8.0.0"
	migrateVisualization = "8.5.0"
	migrateDashboard     = "8.9.0"
	panelVersion         = "8.9.0"
)

// indexRef is the reference name a visualization or saved search uses for
// its data view.
const indexRef = "kibanaSavedObjectMeta.searchSourceJSON.index"

// SavedObject is one line of the NDJSON, in the shape Kibana exports.
type SavedObject struct {
	Attributes           map[string]any `json:"attributes"`
	CoreMigrationVersion string         `json:"coreMigrationVersion"`
	ID                   string         `json:"id"`
	Managed              bool           `json:"managed"`
	References           []Reference    `json:"references"`
	Type                 string         `json:"type"`
	TypeMigrationVersion string         `json:"typeMigrationVersion"`
}

// Reference is a saved object's link to another one.
type Reference struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// Generate returns the NDJSON of every data view, visualization, saved
// search and dashboard for cfg's stream and index names: one object per
// line, data views first, each dashboard after its panels.
func Generate(cfg config.ElasticsearchConfig) ([]byte, error) {
	objs, err := Objects(cfg)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, o := range objs {
		b, err := marshal(o)
		if err != nil {
			return nil, fmt.Errorf("kibana: encode %s %s: %w", o.Type, o.ID, err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes(), nil
}

// Objects returns the saved objects Generate writes.
func Objects(cfg config.ElasticsearchConfig) ([]SavedObject, error) {
	views := Views(cfg)
	var objs []SavedObject
	for _, dv := range dataViews() {
		o, err := dv.object(views[dv.view])
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	seen := map[string]bool{}
	for _, d := range Dashboards() {
		if err := d.validate(seen); err != nil {
			return nil, err
		}
		for i := range d.Panels {
			o, err := d.Panels[i].object()
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
		o, err := d.object()
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// marshal encodes without HTML escaping, so "&" and "<" in titles and
// queries read as written in the file.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// jsonString is v encoded as the JSON-in-a-string Kibana keeps in
// attributes such as visState and panelsJSON.
func jsonString(v any) (string, error) {
	b, err := marshal(v)
	return string(b), err
}

func searchSource(q []Clause, withIndex bool) (string, error) {
	src := map[string]any{"query": map[string]any{"query": KQL(q), "language": "kuery"}, "filter": []any{}}
	if withIndex {
		src["indexRefName"] = indexRef
	}
	return jsonString(src)
}

func (p *Panel) object() (SavedObject, error) {
	src, err := searchSource(p.Query, true)
	if err != nil {
		return SavedObject{}, err
	}
	attrs := map[string]any{
		"title": p.Title, "description": p.Description,
		"kibanaSavedObjectMeta": map[string]any{"searchSourceJSON": src},
	}
	o := SavedObject{
		Attributes: attrs, CoreMigrationVersion: coreMigrationVersion, ID: p.SavedObjectID(),
		References: []Reference{{ID: DataViewID(p.View), Name: indexRef, Type: "index-pattern"}},
	}
	if p.Vis == Search {
		o.Type, o.TypeMigrationVersion = "search", migrateSearch
		attrs["columns"] = p.Columns
		attrs["sort"] = [][]string{{"@timestamp", "desc"}}
		attrs["grid"] = map[string]any{}
		attrs["hideChart"] = false
		attrs["isTextBasedQuery"] = false
		return o, nil
	}
	o.Type, o.TypeMigrationVersion = "visualization", migrateVisualization
	vs, err := jsonString(map[string]any{"title": p.Title, "type": string(p.Vis), "params": p.visParams(), "aggs": p.visAggs()})
	if err != nil {
		return SavedObject{}, err
	}
	attrs["visState"] = vs
	attrs["uiStateJSON"] = "{}"
	attrs["version"] = 1
	return o, nil
}

// visAggs are the panel's aggregations as visState lists them: metrics
// first (ids 1..n), then buckets, with the schema each chart type expects.
func (p *Panel) visAggs() []map[string]any {
	var out []map[string]any
	for i, m := range p.metrics() {
		params := map[string]any{}
		if m.Field != "" {
			params["field"] = m.Field
		}
		if m.Kind == Latest {
			params["aggregate"], params["size"] = "concat", 1
			params["sortField"], params["sortOrder"] = "@timestamp", "desc"
		}
		if m.Label != "" {
			params["customLabel"] = m.Label
		}
		out = append(out, map[string]any{"id": strconv.Itoa(i + 1), "enabled": true, "type": string(m.Kind), "schema": "metric", "params": params})
	}
	n := len(out)
	for i, b := range p.Buckets {
		params := map[string]any{"field": b.Field}
		schema := "bucket"
		switch {
		case b.Kind == DateHistogram:
			schema = "segment"
			params["interval"], params["min_doc_count"] = "auto", 1
			params["useNormalizedEsInterval"], params["scaleMetricValues"] = true, false
			params["drop_partials"], params["extended_bounds"] = false, map[string]any{}
		case p.Vis == Bar || p.Vis == Line:
			schema = "group"
		case p.Vis == Pie:
			schema = "segment"
		}
		if b.Kind == Terms {
			params["size"] = b.size()
			params["order"], params["orderBy"] = "desc", strconv.Itoa(b.OrderBy+1)
			if b.Asc {
				params["order"] = "asc"
			}
			if b.ByKey {
				params["order"], params["orderBy"] = "asc", "_key"
			}
			params["otherBucket"], params["otherBucketLabel"] = false, "Other"
			params["missingBucket"], params["missingBucketLabel"] = false, "Missing"
		}
		if b.Label != "" && b.Kind == Terms {
			params["customLabel"] = b.Label
		}
		out = append(out, map[string]any{"id": strconv.Itoa(n + i + 1), "enabled": true, "type": string(b.Kind), "schema": schema, "params": params})
	}
	return out
}

func (b *Agg) size() int {
	if b.Size > 0 {
		return b.Size
	}
	return 10
}

// visParams are the chart's display settings, complete enough that Kibana
// draws the panel as designed without filling its own defaults.
func (p *Panel) visParams() map[string]any {
	switch p.Vis {
	case Table:
		return map[string]any{"perPage": 10, "showPartialRows": false, "showMetricsAtAllLevels": false, "showTotal": false,
			"totalFunc": "sum", "percentageCol": "", "autoFitRowToContent": false, "row": true}
	case Pie:
		return map[string]any{"type": "pie", "addTooltip": true, "legendDisplay": "show", "legendPosition": "right", "isDonut": true,
			"nestedLegend": false, "distinctColors": false, "truncateLegend": true, "maxLegendLines": 1,
			"palette": map[string]any{"type": "palette", "name": "default"},
			"labels": map[string]any{"show": true, "values": true, "last_level": true, "truncate": 100, "position": "default",
				"valuesFormat": "percent", "percentDecimals": 2}}
	case Metric:
		return map[string]any{"type": "metric", "addTooltip": true, "addLegend": false, "metric": map[string]any{
			"percentageMode": false, "useRanges": false, "colorSchema": "Green to Red", "metricColorMode": "None",
			"colorsRange": []any{map[string]any{"from": 0, "to": 10000}}, "labels": map[string]any{"show": true},
			"invertColors": false, "style": map[string]any{"bgFill": "#000", "bgColor": false, "labelColor": false, "subText": "", "fontSize": 60}}}
	}
	mode, label := "normal", "Count"
	if p.Vis == Bar {
		mode = "stacked"
	}
	if m := p.metrics()[0]; m.Label != "" {
		label = m.Label
	}
	return map[string]any{
		"type": string(p.Vis), "addTooltip": true, "detailedTooltip": true, "legendPosition": "right", "truncateLegend": true,
		"maxLegendLines": 1, "times": []any{}, "addTimeMarker": false, "fittingFunction": "linear", "radiusRatio": 0,
		"palette": map[string]any{"type": "palette", "name": "default"}, "labels": map[string]any{"show": false},
		"grid":          map[string]any{"categoryLines": false},
		"thresholdLine": map[string]any{"show": false, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
		"categoryAxes": []any{map[string]any{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": true,
			"scale": map[string]any{"type": "linear"}, "labels": map[string]any{"show": true, "filter": true, "truncate": 100}, "title": map[string]any{}}},
		"valueAxes": []any{map[string]any{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": true,
			"scale":  map[string]any{"type": "linear", "mode": "normal"},
			"labels": map[string]any{"show": true, "rotate": 0, "filter": false, "truncate": 100}, "title": map[string]any{"text": label}}},
		"seriesParams": []any{map[string]any{"show": true, "type": string(p.Vis), "mode": mode, "data": map[string]any{"label": label, "id": "1"},
			"valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": true, "lineWidth": 2, "showCircles": true, "interpolate": "linear"}},
	}
}

// object is the dashboard: its panels laid out left to right in Kibana's
// 48-column grid, and its controls, each reference named the way Kibana's
// own export names it.
func (d *Dashboard) object() (SavedObject, error) {
	var (
		panels []map[string]any
		refs   []Reference
		x, y   int
		rowH   int
	)
	for i := range d.Panels {
		p := &d.Panels[i]
		w, h := p.W, p.H
		if w == 0 {
			w = 24
		}
		if h == 0 {
			h = 15
		}
		if x+w > 48 {
			x, y, rowH = 0, y+rowH, 0
		}
		typ := "visualization"
		if p.Vis == Search {
			typ = "search"
		}
		panels = append(panels, map[string]any{
			"version": panelVersion, "type": typ, "panelIndex": p.ID, "panelRefName": "panel_" + p.ID,
			"gridData":         map[string]any{"x": x, "y": y, "w": w, "h": h, "i": p.ID},
			"embeddableConfig": map[string]any{"enhancements": map[string]any{}},
		})
		refs = append(refs, Reference{ID: p.SavedObjectID(), Name: p.ID + ":panel_" + p.ID, Type: typ})
		x, rowH = x+w, max(rowH, h)
	}
	controls := map[string]any{}
	for i, c := range d.Controls {
		key := fmt.Sprintf("%s-control-%d", d.ID, i)
		controls[key] = map[string]any{
			"order": i, "width": "medium", "grow": true, "type": "optionsListControl",
			"explicitInput": map[string]any{"id": key, "fieldName": c.Field, "title": c.Title,
				"selectedOptions": []any{}, "enhancements": map[string]any{}},
		}
		refs = append(refs, Reference{ID: DataViewID(c.View), Name: "controlGroup_" + key + ":optionsListDataView", Type: "index-pattern"})
	}
	panelsJSON, err := jsonString(panels)
	if err != nil {
		return SavedObject{}, err
	}
	controlsJSON, err := jsonString(controls)
	if err != nil {
		return SavedObject{}, err
	}
	ignore, err := jsonString(map[string]any{"ignoreFilters": false, "ignoreQuery": false, "ignoreTimerange": false, "ignoreValidations": false})
	if err != nil {
		return SavedObject{}, err
	}
	options, err := jsonString(map[string]any{"useMargins": true, "syncColors": false, "syncCursor": true, "syncTooltips": false, "hidePanelTitles": false})
	if err != nil {
		return SavedObject{}, err
	}
	src, err := searchSource(nil, false)
	if err != nil {
		return SavedObject{}, err
	}
	return SavedObject{
		Attributes: map[string]any{
			"title": d.Title, "description": d.Description, "panelsJSON": panelsJSON, "optionsJSON": options,
			"timeRestore":           false,
			"kibanaSavedObjectMeta": map[string]any{"searchSourceJSON": src},
			// Only the control-group keys Kibana 8.9 knows: a newer key
			// (showApplySelections) could fail its schema on import.
			"controlGroupInput": map[string]any{"controlStyle": "oneLine", "chainingSystem": "HIERARCHICAL",
				"panelsJSON": controlsJSON, "ignoreParentSettingsJSON": ignore},
		},
		CoreMigrationVersion: coreMigrationVersion, ID: d.SavedObjectID(), References: refs,
		Type: "dashboard", TypeMigrationVersion: migrateDashboard,
	}, nil
}
