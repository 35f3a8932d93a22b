package rules

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/testenv"
)

// patchForms rewrite a create/update fixture record into a patch of one
// form that leads to the same object, at the Request audit level (no
// response body): the case where the patch is all a rule has to go on.
var patchForms = []struct {
	name    string
	rewrite func(rec map[string]any, body map[string]any)
}{
	{"json", func(rec, body map[string]any) {
		var ops []any
		jsonPatchOps(withoutTypeMeta(body), "", &ops)
		rec["requestObject"] = ops
	}},
	{"merge", func(rec, body map[string]any) { rec["requestObject"] = withoutTypeMeta(body) }},
	{"strategic", func(rec, body map[string]any) { rec["requestObject"] = withElementOrder(withoutTypeMeta(body)) }},
	{"apply", func(rec, body map[string]any) {
		rec["requestObject"] = body
		rec["requestURI"] = "/apply?fieldManager=fixture&force=true"
	}},
}

// TestPatchFormsCannotEvade replays every fixture of every built-in rule
// that judges the effective object and accepts patches, rewritten as each
// patch form: a fixture that alerts as a create or update must alert as a
// JSON, merge, strategic-merge and apply patch too, and a near miss must
// stay quiet. Request-based rules saw nothing in a JSON patch (an array),
// which is what this guards.
func TestPatchFormsCannotEvade(t *testing.T) {
	set, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	judged := map[string]bool{}
	for _, cr := range set.rules {
		if cr.cond != nil && cr.cond.use&(useEffective|usePatchOps) != 0 && (!cr.keyed[0] || slices.Contains(cr.keys[0], "patch")) {
			judged[cr.ID] = true
		}
	}
	for _, id := range []string{"privileged-container", "sensitive-host-path-mount", "host-network-pod", "dangerous-capabilities-added",
		"role-wildcard-verbs", "role-wildcard-resources", "role-secrets-access", "role-escalate-bind-impersonate", "cluster-admin-binding",
		"binding-to-anonymous", "nodeport-service"} {
		if !judged[id] {
			t.Errorf("rule %s does not judge the effective object of patches", id)
		}
	}
	cases, err := LoadTests(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]int{}
	for _, tc := range cases {
		body, ok := patchableFixture(tc)
		if !judged[tc.Rule] || !ok {
			continue
		}
		for _, form := range patchForms {
			t.Run(tc.Rule+"/"+form.name+"/"+tc.Name, func(t *testing.T) {
				rec := maps.Clone(tc.Records[0])
				rec["verb"] = "patch"
				delete(rec, "responseObject")
				form.rewrite(rec, body)
				pc := TestCase{Rule: tc.Rule, Name: tc.Name + " as a " + form.name + " patch", Records: []map[string]any{rec}, file: tc.file}
				want := tc.Match || (tc.Alerts != nil && *tc.Alerts > 0)
				got := fixtureAlerts(t, eng, &pc) > 0
				if got != want {
					t.Errorf("alerted %v, want %v (the %s fixture %q)", got, want, map[bool]string{true: "matching", false: "near-miss"}[want], tc.Name)
				}
			})
			covered[tc.Rule]++
		}
	}
	for id := range judged {
		if covered[id] == 0 {
			t.Logf("rule %s: no create/update fixture to rewrite as patches", id)
		}
	}
}

// patchableFixture returns the body of a fixture that is one create or
// update with a body, of a kind that can be patched into that state (a
// pod's containers cannot: its spec is immutable after create).
func patchableFixture(tc TestCase) (map[string]any, bool) {
	if len(tc.Records) != 1 {
		return nil, false
	}
	r := tc.Records[0]
	body, _ := r["requestObject"].(map[string]any)
	ref, _ := r["objectRef"].(map[string]any)
	if body == nil || ref == nil || (r["verb"] != "create" && r["verb"] != "update") {
		return nil, false
	}
	return body, ref["resource"] != "pods"
}

// fixtureAlerts evaluates a fixture on eng (shared: each fixture's records
// carry their own audit IDs, so stateful rules keep them apart) and counts
// the alerts of the fixture's rule.
func fixtureAlerts(t *testing.T, eng *Engine, tc *TestCase) int {
	t.Helper()
	recs, err := FixtureRecords(tc)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		for _, a := range eng.Eval(r) {
			if a.RuleID == tc.Rule {
				n++
			}
		}
	}
	return n
}

func withoutTypeMeta(body map[string]any) map[string]any {
	out := maps.Clone(body)
	delete(out, "kind")
	delete(out, "apiVersion")
	return out
}

// jsonPatchOps lists one add per leaf of v, the way a hand-written JSON
// patch spells out a change field by field.
func jsonPatchOps(v any, path string, ops *[]any) {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(t)) {
			jsonPatchOps(t[k], path+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), ops)
		}
		if len(t) == 0 {
			*ops = append(*ops, map[string]any{"op": "add", "path": path, "value": t})
		}
	case []any:
		for i, c := range t {
			jsonPatchOps(c, path+"/"+strconv.Itoa(i), ops)
		}
		if len(t) == 0 {
			*ops = append(*ops, map[string]any{"op": "add", "path": path, "value": t})
		}
	default:
		*ops = append(*ops, map[string]any{"op": "add", "path": path, "value": t})
	}
}

// withElementOrder adds kubectl apply's $setElementOrder directive beside
// every list of named items, as a client-side apply patch carries.
func withElementOrder(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, c := range v {
		switch t := c.(type) {
		case map[string]any:
			out[k] = withElementOrder(t)
		case []any:
			var order []any
			for _, it := range t {
				if m, ok := it.(map[string]any); ok && m["name"] != nil {
					order = append(order, map[string]any{"name": m["name"]})
				}
			}
			if len(order) == len(t) && len(t) > 0 {
				out["$setElementOrder/"+k] = order
			}
			out[k] = c
		default:
			out[k] = c
		}
	}
	return out
}

// TestEffectiveOnlyWhenRead checks that the effective object is worked out
// only for rules that read it: the compiler marks the rules that do, and a
// rule's guard (its terms that read no body) is kept apart so a record the
// guard rejects never has one worked out.
func TestEffectiveOnlyWhenRead(t *testing.T) {
	tests := []struct {
		cond      string
		want      objectUse
		wantGuard bool
	}{
		{`verb == "patch"`, 0, false},
		{`verb == "patch" && request?.spec != nil`, useRequest, true},
		{`verb == "patch" && privileged(effective)`, useEffective, true},
		{`effective_from == "partial"`, useEffective, false},
		{`verb == "patch" && len(patch_ops) > 0`, usePatchOps, true},
		{`verb == "patch" && "*" in rbac_verbs(patch_object(patch_ops))`, usePatchOps, true},
		{`verb == "patch" && len(patch_ops) > 0 && effective != nil`, usePatchOps | useEffective, true},
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			dir := writeRules(t, map[string]string{"r.yaml": fmt.Sprintf("rules:\n  - {id: r, title: t, severity: low, source: audit, condition: %q}\n", tc.cond)})
			set, err := Load(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			cr := set.rules[0]
			if cr.cond.use != tc.want || (cr.cond.pre != nil) != tc.wantGuard {
				t.Errorf("use %b guard %v, want %b %v", cr.cond.use, cr.cond.pre != nil, tc.want, tc.wantGuard)
			}
		})
	}
}

// TestGuardAndRestKeepTheMacros: a condition is split into its guard and
// the rest from its syntax tree. Printed as text and parsed again, a
// macro's conditional under an index loses its parentheses and means
// something else; here the rest must compile and decide as the whole
// condition does.
func TestGuardAndRestKeepTheMacros(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": `
macros:
  - name: labels_of_write
    condition: 'verb == "create" ? request?.metadata?.labels ?? {} : {}'
rules:
  - id: r
    title: t
    severity: low
    source: audit
    condition: resource == "pods" && any(keys(labels_of_write), {labels_of_write[#] == "x"})
`})
	eng, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if cr := eng.Set().rules[0]; cr.cond.pre == nil || cr.cond.rest == nil {
		t.Fatalf("guard %v, rest %v: want both", cr.cond.pre != nil, cr.cond.rest != nil)
	}
	for i, tc := range []struct {
		verb, labels string
		alerts       int
	}{
		{"create", `{"app":"x"}`, 1},
		{"create", `{"app":"y"}`, 0},
		{"update", `{"app":"x"}`, 0},
	} {
		r := auditRec(t, i, t0, tc.verb, "pods", "ns", "p", "alice", `,"requestObject":{"metadata":{"labels":`+tc.labels+`}}`)
		if n := len(eng.Eval(r)); n != tc.alerts {
			t.Errorf("%s %s: %d alerts, want %d", tc.verb, tc.labels, n, tc.alerts)
		}
	}
	if n := eng.Stats()["r"].Errors.Load(); n > 0 {
		t.Errorf("%d evaluation errors", n)
	}
}

// TestPatchOpsAloneLeavesTheResponse checks that a rule reading patch_ops
// but not effective gets the operations of a patch without the response
// body being parsed, and nothing at all for a create.
func TestPatchOpsAloneLeavesTheResponse(t *testing.T) {
	resp := `,"responseObject":{"kind":"ConfigMap","data":{"a":"1","b":"2"}}`
	for _, tc := range []struct {
		name, verb, extra string
		ops               int
	}{
		{"merge patch", "patch", `,"requestObject":{"data":{"a":"1"}}` + resp, 1},
		{"JSON patch", "patch", `,"requestObject":[{"op":"add","path":"/data/b","value":"2"},{"op":"remove","path":"/data/c"}]` + resp, 2},
		{"create", "create", `,"requestObject":{"kind":"ConfigMap","data":{"a":"1"}}` + resp, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuditEnv(auditRec(t, 0, t0, tc.verb, "configmaps", "ns", "cm", "alice", tc.extra))
			defer releaseAuditEnv(e)
			e.withObjects(usePatchOps)
			if len(e.PatchOps) != tc.ops {
				t.Errorf("%d patch ops, want %d: %v", len(e.PatchOps), tc.ops, e.PatchOps)
			}
			if e.Effective != nil || e.EffectiveFrom != "" || e.Response != nil {
				t.Errorf("effective %v (from %q), response %v: the response body was parsed", e.Effective, e.EffectiveFrom, e.Response)
			}
		})
	}
}

// TestEffectiveFields evaluates the new fields on records of each source,
// and counts an unusable patch body in
// kubesift_rules_effective_failures_total without losing the record.
func TestEffectiveFields(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": `
rules:
  - id: r
    title: t
    severity: low
    source: audit
    condition: verb in ["create", "patch"]
    output: '{{ effective_from }}|{{ effective?.spec?.type ?? "-" }}|{{ join(map(patch_ops ?? [], {#.op + " " + #.path}), ",") }}|{{ patch_object(patch_ops)?.spec?.type ?? "-" }}'
`})
	eng, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(eng.Collector())
	tests := []struct {
		name, verb, extra, want string
		failures                float64
	}{
		{"create", "create", `,"requestObject":{"kind":"Service","spec":{"type":"NodePort"}}`, "request|NodePort||-", 0},
		{"JSON patch, Request level", "patch", `,"requestObject":[{"op":"replace","path":"/spec/type","value":"NodePort"}]`,
			"partial|NodePort|replace /spec/type|NodePort", 0},
		{"merge patch, response logged", "patch", `,"requestObject":{"spec":{"type":"NodePort"}},"responseObject":{"kind":"Service","spec":{"type":"NodePort","ports":[]}}`,
			"response|NodePort|set /spec/type|NodePort", 0},
		{"malformed JSON patch", "patch", `,"requestObject":[{"op":"add"}]`, "|-||-", 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.Metric(t, reg, "kubesift_rules_effective_failures_total", "form", "json")
			alerts := eng.Eval(auditRec(t, i, t0, tc.verb, "services", "ns", "web", "alice", tc.extra))
			if len(alerts) != 1 {
				t.Fatalf("%d alerts, want 1", len(alerts))
			}
			if alerts[0].Message != tc.want {
				t.Errorf("output %q, want %q", alerts[0].Message, tc.want)
			}
			if d := testenv.Metric(t, reg, "kubesift_rules_effective_failures_total", "form", "json") - before; d != tc.failures {
				t.Errorf("failures counted %v, want %v", d, tc.failures)
			}
		})
	}
}
