package rules

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/record"
)

func writeRules(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// auditRec builds an audit record; fields: verb resource ns name user [decision] [subresource].
func auditRec(t testing.TB, i int, at time.Time, verb, resource, ns, name, user string, extra string) *record.Record {
	t.Helper()
	js := fmt.Sprintf(`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"id-%d","stage":"ResponseComplete","verb":%q,"user":{"username":%q},"objectRef":{"resource":%q,"namespace":%q,"name":%q},"stageTimestamp":%q%s}`,
		i, verb, user, resource, ns, name, at.Format("2006-01-02T15:04:05.000000Z"), extra)
	recs, errs := record.DecodeAll([]byte(js), "test", record.DecodeOptions{Cluster: record.Cluster{Name: "c"}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return recs[0]
}

func TestStatelessRuleWithMacrosListsAndExceptions(t *testing.T) {
	dir := writeRules(t, map[string]string{
		"a.yaml": `
lists:
  - name: watched_resources
    items: [secrets, configmaps]
macros:
  - name: reads
    condition: verb in ["get", "list"]
  - name: watched_read
    condition: reads && resource in watched_resources
rules:
  - id: read-watched
    title: Watched resource read
    severity: medium
    source: audit
    condition: watched_read && !is_system_user(user)
    output: "{{ user }} read {{ resource }} {{ namespace }}/{{ name }}"
    exceptions:
      - name: trusted-users
        field: user
        values: [backup-bot]
`,
		"b.yaml": `
lists:
  - name: watched_resources
    append: true
    items: [serviceaccounts]
overrides:
  - rule: read-watched
    exceptions:
      - name: trusted-users
        values: [auditor]
`,
	})
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		verb, res, usr string
		want           bool
	}{
		{"matches", "get", "secrets", "alice", true},
		{"appended list item", "list", "serviceaccounts", "alice", true},
		{"other verb", "delete", "secrets", "alice", false},
		{"system user", "get", "secrets", "system:kube-controller-manager", false},
		{"exception from rule", "get", "secrets", "backup-bot", false},
		{"exception appended by override", "get", "configmaps", "auditor", false},
	}
	for i, tc := range tests {
		alerts := e.Eval(auditRec(t, i, t0, tc.verb, tc.res, "ns", "n", tc.usr, ""))
		if got := len(alerts) == 1; got != tc.want {
			t.Errorf("%s: alerts %v", tc.name, alerts)
		}
		if tc.want && len(alerts) == 1 {
			if a := alerts[0]; a.Message != tc.usr+" read "+tc.res+" ns/n" || a.Severity != SeverityMedium || a.ID != "read-watched:id-"+fmt.Sprint(i)+":ResponseComplete" {
				t.Errorf("%s: alert %+v", tc.name, a)
			}
		}
	}
	st := e.Stats()["read-watched"]
	if st.Suppressed.Load() != 2 || st.Matched.Load() != 2 {
		t.Errorf("stats: matched %d suppressed %d", st.Matched.Load(), st.Suppressed.Load())
	}
	// The prefilter kept the delete away from the rule entirely.
	if st.Evaluated.Load() != 5 {
		t.Errorf("evaluated %d, want 5 (the delete is prefiltered)", st.Evaluated.Load())
	}
}

func TestLoadErrorsNameFileRuleAndPosition(t *testing.T) {
	tests := []struct {
		name, rules string
		want        []string
	}{
		{"unknown field", "rules:\n  - id: bad-field\n    title: t\n    severity: low\n    source: audit\n    condition: verbb == \"get\"\n",
			[]string{"a.yaml:2: rule bad-field: condition: unknown name verbb", "(1:1)"}},
		{"type error", "rules:\n  - id: bad-type\n    title: t\n    severity: low\n    source: audit\n    condition: code == \"200\"\n",
			[]string{"a.yaml:2: rule bad-type: condition: invalid operation: == (mismatched types int and string)"}},
		{"not bool", "rules:\n  - id: not-bool\n    title: t\n    severity: low\n    source: audit\n    condition: user\n",
			[]string{"a.yaml:2: rule not-bool: condition: expected bool"}},
		{"unknown yaml key", "rules:\n  - id: x\n    titel: t\n", []string{"a.yaml: yaml: unmarshal errors", "field titel not found"}},
		{"bad severity", "rules:\n  - id: x\n    title: t\n    severity: urgent\n", []string{`severity "urgent" is not one of`}},
		{"bad id and source", "rules:\n  - id: Bad_ID\n    title: t\n    severity: low\n    source: logs\n    condition: true\n",
			[]string{"rule Bad_ID: id must be kebab-case", `source "logs" is not one of`}},
		{"event field on audit rule", "rules:\n  - id: wrong-env\n    title: t\n    severity: low\n    source: audit\n    condition: reason == \"BackOff\"\n",
			[]string{"rule wrong-env: condition: unknown name reason"}},
		{"macro cycle", "macros:\n  - name: a\n    condition: b\n  - name: b\n    condition: a\nrules:\n  - id: cyc\n    title: t\n    severity: low\n    source: audit\n    condition: a\n",
			[]string{"refers to itself"}},
		{"duplicate id", "rules:\n  - {id: d, title: t, severity: low, source: audit, condition: 'true'}\n  - {id: d, title: t, severity: low, source: audit, condition: 'true'}\n",
			[]string{"a.yaml:3: rule d: duplicate rule id (first at a.yaml:2)"}},
		{"override unknown rule", "overrides:\n  - rule: nope\n    enabled: false\n", []string{"a.yaml:2: override of unknown rule \"nope\""}},
		{"stateful without group", "rules:\n  - {id: s, title: t, severity: low, source: audit, condition: 'true', threshold: {count: 3, window: 1m}}\n",
			[]string{"group_by is required"}},
		{"bad output", "rules:\n  - {id: o, title: t, severity: low, source: audit, condition: 'true', output: '{{ nosuch }}'}\n",
			[]string{"rule o: output {{nosuch}}: unknown name nosuch"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRules(t, map[string]string{"a.yaml": tc.rules})
			_, err := Load(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
			if err == nil {
				t.Fatal("loaded a broken rule file")
			}
			msg := strings.ReplaceAll(err.Error(), dir+"/", "")
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\nwant it to contain %q", msg, w)
				}
			}
		})
	}
}

// bindThenExec is a two-step sequence rule, as the built-in
// cluster-admin-then-exec.
const bindThenExec = `  - id: bind-then-exec
    title: Bound to cluster-admin, then exec
    severity: critical
    source: audit
    sequence:
      within: 10m
      steps:
        - condition: verb == "create" && resource == "clusterrolebindings" && get(request, "roleRef.name") == "cluster-admin"
          group_by: [subject_users(request)]
        - condition: verb == "create" && resource == "pods" && subresource == "exec"
          group_by: [user]
    output: "{{ user }} exec {{ name }}"
`

func TestStatefulForms(t *testing.T) {
	dir := writeRules(t, map[string]string{"s.yaml": `
rules:
  - id: forbidden-burst
    title: Burst of forbidden requests
    severity: high
    source: audit
    condition: decision == "forbid"
    group_by: [user]
    threshold: {count: 3, window: 1m}
  - id: many-secrets
    title: One identity read many secrets
    severity: high
    source: audit
    condition: verb == "get" && resource == "secrets"
    group_by: [user]
    distinct: {field: 'namespace + "/" + name', count: 3, window: 5m}
` + bindThenExec + `  - id: first-exec
    title: First exec by a user in 7 days
    severity: low
    source: audit
    condition: resource == "pods" && subresource == "exec"
    group_by: [user]
    new_term: {lookback: 168h}
`})
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	forbid := `,"annotations":{"authorization.k8s.io/decision":"forbid"}`
	binding := `,"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"name":"cluster-admin"},"subjects":[{"kind":"User","name":"mallory"}]}`
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	type step struct {
		at         time.Duration
		verb, res  string
		name, user string
		extra      string
		wantRule   string // "" = no alert
		wantCount  int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"threshold fires on the 3rd within a minute, then starts over", []step{
			{0, "list", "secrets", "", "eve", forbid, "", 0},
			{10 * time.Second, "get", "pods", "", "eve", forbid, "", 0},
			{20 * time.Second, "get", "nodes", "", "eve", forbid, "forbidden-burst", 3},
			{25 * time.Second, "get", "nodes", "", "eve", forbid, "", 0},
		}},
		{"threshold outside the window does not fire", []step{
			{0, "list", "secrets", "", "fay", forbid, "", 0},
			{50 * time.Second, "get", "pods", "", "fay", forbid, "", 0},
			{2 * time.Minute, "get", "nodes", "", "fay", forbid, "", 0},
		}},
		{"distinct counts different secrets only", []step{
			{0, "get", "secrets", "a", "gus", "", "", 0},
			{time.Second, "get", "secrets", "a", "gus", "", "", 0},
			{2 * time.Second, "get", "secrets", "b", "gus", "", "", 0},
			{3 * time.Second, "get", "secrets", "c", "gus", "", "many-secrets", 3},
		}},
		{"sequence: binding for mallory then exec by mallory", []step{
			{0, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
			{time.Minute, "create", "pods", "", "mallory", exec, "bind-then-exec", 2},
		}},
		// Records of different keys come from different partitions, so
		// an exec made before the binding can be read after it.
		{"sequence: an exec older than the binding does not complete it", []step{
			{time.Minute, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
			{0, "create", "pods", "", "mallory", exec, "", 0},
			{2 * time.Minute, "create", "pods", "", "mallory", exec, "bind-then-exec", 2},
		}},
		{"sequence: an exec read before its binding fires when the binding is read", []step{
			{time.Minute, "create", "pods", "", "mallory", exec, "", 0},
			{0, "create", "clusterrolebindings", "x", "admin", binding, "bind-then-exec", 2},
		}},
		{"sequence: of two execs read before the binding, only the first fires", []step{
			{time.Minute, "create", "pods", "", "mallory", exec, "", 0},
			{2 * time.Minute, "create", "pods", "", "mallory", exec, "", 0},
			{0, "create", "clusterrolebindings", "x", "admin", binding, "bind-then-exec", 2},
		}},
		{"sequence: a binding read late, older than the exec that already fired, adds nothing", []step{
			{time.Minute, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
			{2 * time.Minute, "create", "pods", "", "mallory", exec, "bind-then-exec", 2},
			{0, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
		}},
		{"sequence: an exec read early, too long after the binding read late", []step{
			{11 * time.Minute, "create", "pods", "", "mallory", exec, "", 0},
			{0, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
		}},
		{"sequence too slow", []step{
			{0, "create", "clusterrolebindings", "x", "admin", binding, "", 0},
			{11 * time.Minute, "create", "pods", "", "mallory", exec, "", 0},
		}},
	}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t0.Add(time.Duration(ti) * time.Hour)
			for i, s := range tc.steps {
				r := auditRec(t, ti*100+i, base.Add(s.at), s.verb, s.res, "ns", s.name, s.user, s.extra)
				var got []Alert
				for _, a := range e.Eval(r) {
					if a.RuleID != "first-exec" {
						got = append(got, a)
					}
				}
				switch {
				case s.wantRule == "" && len(got) > 0:
					t.Errorf("step %d: unexpected %+v", i, got)
				case s.wantRule != "" && (len(got) != 1 || got[0].RuleID != s.wantRule || got[0].Count != s.wantCount):
					t.Errorf("step %d: got %+v, want %s count %d", i, got, s.wantRule, s.wantCount)
				}
			}
		})
	}
	// new_term: first exec alerts, a second within the lookback does not,
	// one after the lookback does again.
	var fired []bool
	for i, at := range []time.Duration{0, time.Hour, 200 * time.Hour} {
		r := auditRec(t, 9000+i, t0.Add(1000*time.Hour+at), "create", "pods", "ns", "", "nick", exec)
		n := 0
		for _, a := range e.Eval(r) {
			if a.RuleID == "first-exec" {
				n++
			}
		}
		fired = append(fired, n == 1)
	}
	if fmt.Sprint(fired) != "[true false true]" {
		t.Errorf("new_term fired %v, want [true false true]", fired)
	}
}

// TestSequenceOutcomeIndependentOfInterleaving: bindings (keyed by their
// author) and execs (keyed by the exec's user) come from different
// partitions. Whatever order the two streams are merged in, each in its own
// event order, a two-step sequence raises the same alerts (IDs and
// messages) as reading everything in event order.
func TestSequenceOutcomeIndependentOfInterleaving(t *testing.T) {
	dir := writeRules(t, map[string]string{"s.yaml": "rules:\n" + bindThenExec})
	binding := `,"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"name":"cluster-admin"},"subjects":[{"kind":"User","name":"mallory"}]}`
	rng := rand.New(rand.NewSource(1))
	for round := range 200 {
		// A few bindings and execs at random minutes of one hour.
		var binds, execs []*record.Record
		n := 0
		minutes := func(k int) []int {
			ms := make([]int, k)
			for i := range ms {
				ms[i] = rng.Intn(60)
			}
			slices.Sort(ms)
			return ms
		}
		for _, m := range minutes(1 + rng.Intn(4)) {
			n++
			binds = append(binds, auditRec(t, round*100+n, t0.Add(time.Duration(m)*time.Minute), "create", "clusterrolebindings", "", "b", "admin", binding))
		}
		for _, m := range minutes(1 + rng.Intn(6)) {
			n++
			execs = append(execs, auditRec(t, round*100+n, t0.Add(time.Duration(m)*time.Minute+30*time.Second),
				"create", "pods", "ns", fmt.Sprintf("p%d", n), "mallory", `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`))
		}
		eval := func(recs []*record.Record) []string {
			e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range recs {
				for _, a := range e.Eval(r) {
					out = append(out, a.ID+" "+a.Message)
				}
			}
			slices.Sort(out)
			return out
		}
		inOrder := append(append([]*record.Record{}, binds...), execs...)
		slices.SortStableFunc(inOrder, func(a, b *record.Record) int { return a.EventTime.Compare(b.EventTime) })
		want := eval(inOrder)
		for range 5 {
			merged := make([]*record.Record, 0, len(binds)+len(execs))
			bi, ei := 0, 0
			for bi < len(binds) || ei < len(execs) {
				if ei == len(execs) || (bi < len(binds) && rng.Intn(2) == 0) {
					merged = append(merged, binds[bi])
					bi++
				} else {
					merged = append(merged, execs[ei])
					ei++
				}
			}
			if got := eval(merged); !slices.Equal(got, want) {
				t.Fatalf("round %d: interleaved %v, in event order %v", round, got, want)
			}
		}
	}
}

// TestSequenceOfThreeSteps: longer sequences advance step by step in the
// order records are read; a step older than the sequence's start does not
// advance it, and an excepted last step does not complete it.
func TestSequenceOfThreeSteps(t *testing.T) {
	dir := writeRules(t, map[string]string{"s.yaml": `
rules:
  - id: list-get-delete
    title: List, get, then delete secrets
    severity: high
    source: audit
    sequence:
      within: 5m
      steps:
        - condition: verb == "list" && resource == "secrets"
          group_by: [user]
        - condition: verb == "get" && resource == "secrets"
          group_by: [user]
        - condition: verb == "delete" && resource == "secrets"
          group_by: [user]
    exceptions:
      - name: cleanup-job
        field: name
        values: [scratch]
`})
	type step struct {
		at   time.Duration
		verb string
		name string
	}
	tests := []struct {
		name  string
		steps []step
		fires []bool
	}{
		{"in order", []step{{0, "list", "a"}, {time.Minute, "get", "a"}, {2 * time.Minute, "delete", "a"}}, []bool{false, false, true}},
		{"a step skipped", []step{{0, "list", "a"}, {2 * time.Minute, "delete", "a"}}, []bool{false, false}},
		{"too slow", []step{{0, "list", "a"}, {time.Minute, "get", "a"}, {6 * time.Minute, "delete", "a"}}, []bool{false, false, false}},
		{"a middle step older than the start", []step{{time.Minute, "list", "a"}, {0, "get", "a"}, {2 * time.Minute, "delete", "a"}}, []bool{false, false, false}},
		{"an excepted last step does not complete it; the next one does", []step{
			{0, "list", "a"}, {time.Minute, "get", "a"}, {2 * time.Minute, "delete", "scratch"}, {3 * time.Minute, "delete", "b"},
		}, []bool{false, false, false, true}},
	}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tc.steps {
				r := auditRec(t, ti*100+i, t0.Add(st.at), st.verb, "secrets", "ns", st.name, "eve", "")
				got := e.Eval(r)
				if fired := len(got) == 1 && got[0].RuleID == "list-get-delete" && got[0].Count == 3; fired != tc.fires[i] || len(got) > 1 {
					t.Errorf("step %d: alerts %+v, want fired=%v", i, got, tc.fires[i])
				}
			}
		})
	}
}

func TestBoundedGroups(t *testing.T) {
	dir := writeRules(t, map[string]string{"s.yaml": `
rules:
  - {id: burst, title: t, severity: low, source: audit, condition: 'true', group_by: [user], threshold: {count: 2, window: 1h}}
`})
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}, MaxGroups: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		e.Eval(auditRec(t, i, t0.Add(time.Duration(i)*time.Second), "get", "pods", "ns", "n", fmt.Sprintf("u%d", i), ""))
	}
	cr := e.Set().rules[0]
	if g := cr.state.groups(); g != 10 {
		t.Errorf("groups = %d, want the cap 10", g)
	}
	if ev := cr.state.evictions(); ev != 90 {
		t.Errorf("evictions = %d, want 90", ev)
	}
}

func TestReloadKeepsOldSetOnError(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": "rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == \"get\"'}\n"})
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb =='}\n"), 0o644)
	if err := e.Reload(); err == nil {
		t.Fatal("bad reload accepted")
	}
	if len(e.Eval(auditRec(t, 1, t0, "get", "pods", "ns", "n", "u", ""))) != 1 {
		t.Error("old rule set not in force after a bad reload")
	}
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == \"list\"'}\n"), 0o644)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(e.Eval(auditRec(t, 2, t0, "get", "pods", "ns", "n", "u", ""))) != 0 {
		t.Error("new rule set not in force after a good reload")
	}
}
