package notify

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// TestMutesEverything: the guardrail refuses a matcher set that matches
// every alert by the matchers' semantics, not by their spelling, and
// accepts sets that leave some alert out.
func TestMutesEverything(t *testing.T) {
	for _, tc := range []struct {
		matchers []string
		all      bool
	}{
		// Regexes that match every value of a label every alert has.
		{[]string{`rule_id=~.*`}, true},
		{[]string{`rule_id=~.+`}, true},
		{[]string{`rule_id=~"(?s).*"`}, true},
		{[]string{`rule_id=~".*|x"`}, true},
		{[]string{`rule_id=~"x|.*"`}, true},
		{[]string{`rule_id=~"[\\s\\S]*"`}, true},
		{[]string{`rule_id=~"[\\s\\S]+"`}, true},
		{[]string{`rule_id=~"(.*)"`}, true},
		{[]string{`rule_id=~".{0,}"`}, true},
		{[]string{`rule_id=~"(?i).*"`}, true},
		{[]string{`rule_id=~"(?:.+)?"`}, true},
		{[]string{`alertname=~.+`}, true},
		{[]string{`cluster=~.+`}, true},
		{[]string{`title=~"(?s).+"`}, true},
		// != and !~ of what no alert has.
		{[]string{`rule_id!=""`}, true},
		{[]string{`title!=`}, true},
		{[]string{`rule_id!~"x{0}"`}, true}, // matches only "", which rule_id never is
		{[]string{`rule_id!~"[^\\s\\S]"`}, true},
		{[]string{`tag!~"[^\\s\\S]"`}, true},
		{[]string{`namespace!~"[^\\s\\S]+"`}, true},
		// Closed label sets.
		{[]string{`severity=~"info|low|medium|high|critical"`}, true},
		{[]string{`severity=~".*"`}, true},
		{[]string{`severity!=urgent`}, true},
		{[]string{`severity!~""`}, true},
		{[]string{`source=~"audit|event|object|"`}, true},
		// Optional labels: absent is "", which .* matches.
		{[]string{`namespace=~.*`}, true},
		{[]string{`tag=~"(?s).*"`}, true},
		{[]string{`user=~".*"`}, true},
		// Every matcher of the set must match every alert, and does.
		{[]string{`rule_id=~.+`, `severity!=urgent`}, true},
		{[]string{`rule_id=~.*`, `namespace=~.*`, `tag=~.*`}, true},

		// Sets that leave some alert out are accepted.
		{[]string{`rule_id=~exec-.*`}, false},
		{[]string{`cluster=prod`}, false},
		{[]string{`rule_id=k8s-privileged-pod`}, false},
		{[]string{`rule_id=~"[a-z].*"`}, false},
		{[]string{`rule_id=~"(?i)[a-z0-9-]+"`}, false},
		{[]string{`rule_id!~exec-.*`}, false},
		{[]string{`rule_id!~"exec-in-pod-with-a-long-name"`}, false},
		{[]string{`rule_id!=k8s-privileged-pod`}, false},
		{[]string{`namespace=~.+`}, false}, // only namespaced alerts
		{[]string{`namespace=`}, false},    // only cluster-scoped alerts
		{[]string{`namespace!=""`}, false},
		{[]string{`namespace!~"x{0}"`}, false},
		{[]string{`severity=~"high|critical"`}, false},
		{[]string{`severity!=critical`}, false},
		{[]string{`source=~"audit|event|object"`}, false}, // not the deadman alert
		{[]string{`tag!~"a|b"`}, false},
		{[]string{`tag=~.+`}, false},
		{[]string{`rule_id=~.*`, `cluster=prod`}, false},
		{[]string{`rule_id=~.+`, `namespace=~.+`}, false},
	} {
		t.Run(strings.Join(tc.matchers, ","), func(t *testing.T) {
			ms, err := match.ParseAll(tc.matchers)
			if err != nil {
				t.Fatal(err)
			}
			err = MutesEverything(ms)
			if (err != nil) != tc.all {
				t.Fatalf("MutesEverything = %v, want refusal %v", err, tc.all)
			}
			if err != nil && (!strings.Contains(err.Error(), ms[0].String()) || !strings.Contains(err.Error(), "--force")) {
				t.Errorf("refusal %q does not name the matchers and how to force", err)
			}
		})
	}
}

// TestAlertLabelDomains: the domains the guardrail assumes hold for the
// labels Labels gives real alerts — required labels present and not empty,
// closed ones within their set.
func TestAlertLabelDomains(t *testing.T) {
	pod := notifytest.PrivilegedPod(0, "web")
	deadman := rules.Alert{ID: "kubesift-deadman:prod", RuleID: "kubesift-deadman", Title: "No records", Severity: rules.SeverityHigh,
		Cluster: "prod", Tags: []string{"deadman"}, Time: time.Now()}
	for _, a := range []rules.Alert{pod, deadman} {
		l := Labels(&a)
		for name, d := range alertLabelDomains {
			vals := l[name]
			if len(vals) == 0 {
				vals = []string{""}
			}
			for _, v := range vals {
				if d.Values != nil && !slices.Contains(d.Values, v) {
					t.Errorf("%s: %s=%q is not in %q", a.RuleID, name, v, d.Values)
				}
				if d.Values == nil && d.Required && v == "" {
					t.Errorf("%s: required label %s is empty", a.RuleID, name)
				}
			}
		}
	}
}
