package kibana

import (
	"fmt"
	"regexp"
)

// dataView is one data view: its name and the field formats that help
// reading it (severity colours, links to the record in Discover).
type dataView struct {
	view    View
	name    string
	formats map[string]any
	// links format fields as links to Discover (field -> where it points).
	links map[string]link
}

// link points to the documents of view whose field equals the value.
type link struct {
	view  View
	field string
}

// Severity colours, the same in alerts and findings: Elastic's palette for
// risk (critical red to info grey).
var severityColors = []struct{ value, background string }{
	{"critical", "#BD271E"}, {"high", "#E7664C"}, {"medium", "#D6BF57"}, {"low", "#54B399"}, {"info", "#98A2B3"},
}

func severityFormat() map[string]any {
	colors := make([]any, 0, len(severityColors))
	for _, c := range severityColors {
		colors = append(colors, map[string]any{"range": "-Infinity:Infinity", "regex": "^" + regexp.QuoteMeta(c.value) + "$",
			"text": "#FFFFFF", "background": c.background})
	}
	return map[string]any{"id": "color", "params": map[string]any{"fieldType": "string", "colors": colors}}
}

// discoverLink formats a field as a link to Discover on data view v
// showing the documents whose field matches the value. Kibana URL-encodes
// {{value}}; the relative path gets Kibana's base path and space.
func discoverLink(l link) map[string]any {
	url := fmt.Sprintf("/app/discover#/?_g=(time:(from:now-90d,to:now))&_a=(index:'%s',query:(language:kuery,query:'%s:\"{{value}}\"'))",
		DataViewID(l.view), l.field)
	return map[string]any{"id": "url", "params": map[string]any{"type": "a", "urlTemplate": url, "labelTemplate": "{{value}}", "openLinkInCurrentTab": true}}
}

// objectName is the audit field of the object a request touched: links
// from an object's name open its audit trail (objects of that name in any
// namespace).
const objectName = "kubernetes.audit.objectRef.name"

func dataViews() []dataView {
	return []dataView{
		{view: ViewAudit, name: "kubesift audit"},
		{view: ViewEvents, name: "kubesift Events",
			links: map[string]link{"kubernetes.event.involved_object.name": {ViewAudit, objectName}}},
		{view: ViewRecords, name: "kubesift records (audit and Events)"},
		{view: ViewAlerts, name: "kubesift alerts",
			formats: map[string]any{"kubesift.alert.severity": severityFormat()},
			links: map[string]link{"kubesift.alert.record_id": {ViewRecords, "event.id"},
				"orchestrator.resource.name": {ViewAudit, "orchestrator.resource.name"}}},
		{view: ViewFindings, name: "kubesift findings",
			formats: map[string]any{"kubesift.finding.severity": severityFormat()},
			links: map[string]link{"kubesift.finding.actor.audit_id": {ViewAudit, "kubernetes.audit.auditID"},
				"kubesift.finding.object.name": {ViewAudit, objectName}}},
		{view: ViewTransitions, name: "kubesift finding transitions",
			formats: map[string]any{"kubesift.finding.severity": severityFormat()},
			links: map[string]link{"kubesift.finding.actor.audit_id": {ViewAudit, "kubernetes.audit.auditID"},
				"kubesift.finding.object.name": {ViewAudit, objectName}}},
		{view: ViewScores, name: "kubesift posture scores", formats: map[string]any{
			"kubesift.posture_score.percent": map[string]any{"id": "number", "params": map[string]any{"pattern": "0.0"}},
		}},
		{view: ViewObjects, name: "kubesift object snapshots"},
	}
}

// object is the data view's saved object. allowNoIndex lets the import
// succeed before the first document (or before `setup es`).
func (dv *dataView) object(pattern string) (SavedObject, error) {
	if pattern == "" {
		return SavedObject{}, fmt.Errorf("kibana: data view %s: no index pattern in the configuration", dv.view)
	}
	formats := map[string]any{}
	for f, v := range dv.formats {
		formats[f] = v
	}
	for f, l := range dv.links {
		formats[f] = discoverLink(l)
	}
	fm, err := jsonString(formats)
	if err != nil {
		return SavedObject{}, err
	}
	return SavedObject{
		Attributes: map[string]any{
			"title": pattern, "name": dv.name, "timeFieldName": "@timestamp", "allowNoIndex": true,
			"fieldFormatMap": fm, "fields": "[]", "fieldAttrs": "{}", "runtimeFieldMap": "{}", "sourceFilters": "[]", "typeMeta": "{}",
		},
		CoreMigrationVersion: coreMigrationVersion, ID: DataViewID(dv.view), References: []Reference{},
		Type: "index-pattern", TypeMigrationVersion: migrateDataView,
	}, nil
}
