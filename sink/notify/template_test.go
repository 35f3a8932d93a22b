package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/rules"
)

func TestTemplate(t *testing.T) {
	n := &Notification{Receiver: "sec", GroupKey: "g", GroupLabels: map[string]string{"rule_id": "r1"}, Count: 3, Total: 3, Seq: 1,
		Time: time.Unix(0, 0).UTC(), Alerts: []rules.Alert{
			{RuleID: "r1", Title: "Privileged pod", Severity: rules.SeverityHigh, Cluster: "prod", Namespace: "a"},
			{RuleID: "r1", Title: "Privileged pod", Severity: rules.SeverityHigh, Cluster: "prod", Namespace: "b"},
		}, ids: []string{"1", "2", "3"}}
	for _, tc := range []struct {
		name, text, want, err string
		resolved              bool
	}{
		{name: "status and counts", text: "{{.Status}} {{.Count}}/{{.Truncated}} {{.Receiver}}", want: "firing 3/1 sec"},
		{name: "resolved", text: "{{.Status}}", want: "resolved", resolved: true},
		{name: "common labels keep shared values only", text: `{{.CommonLabels.cluster}} {{index .CommonLabels "rule_id"}} {{len .CommonLabels}}`, want: "prod r1 6"},
		{name: "missing key is an error", text: "{{.CommonLabels.namespace}}", err: "map has no entry for key"},
		{name: "funcs", text: `{{upper "a"}}{{title "bc"}}{{truncate 4 "abcdef"}}{{default "x" ""}}{{join "," (sortedKeys .GroupLabels)}}`, want: "ABcabc…xrule_id"},
		{name: "range alerts", text: `{{range .Alerts}}{{.Namespace}};{{end}}`, want: "a;b;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := ParseTemplate(tc.name, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			n.Resolved = tc.resolved
			got, err := tpl.Execute(NewTemplateData(n))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ParseTemplate("bad", "{{.Status"); err == nil || !strings.Contains(err.Error(), "template bad") {
		t.Fatalf("parse error = %v", err)
	}
}

func TestTemplateOutputIsBounded(t *testing.T) {
	tpl, err := ParseTemplate("big", `{{range .Alerts}}{{.Message}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", maxTemplateOutput/2+1)
	n := &Notification{Alerts: []rules.Alert{{Message: big}, {Message: big}, {Message: big}}}
	got, err := tpl.Execute(NewTemplateData(n))
	if err != nil || len(got) != maxTemplateOutput {
		t.Fatalf("len %d, %v; want %d", len(got), err, maxTemplateOutput)
	}
}
