package rules

import (
	"strings"
	"testing"

	"github.com/kubesift/kubesift/record"
)

// TestObjectRuleSchema: cis and remediation are validated and belong to
// object rules; cis_version is one per set, the last layer's.
func TestObjectRuleSchema(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		err   string // substring of the load error; "" for success
	}{
		{"ok", map[string]string{"a.yaml": `
cis_version: "1.9"
rules:
  - {id: r, title: t, severity: low, source: object, cis: ["5.1.3"], remediation: fix it, condition: 'kind == "Role"'}`}, ""},
		{"bad cis id", map[string]string{"a.yaml": `
rules:
  - {id: r, title: t, severity: low, source: object, cis: ["5.1.x"], condition: 'kind == "Role"'}`}, `cis[0] "5.1.x" is not a benchmark item`},
		{"cis on an audit rule", map[string]string{"a.yaml": `
rules:
  - {id: r, title: t, severity: low, source: audit, cis: ["5.1.3"], condition: 'verb == "get"'}`}, "cis and remediation belong to source: object rules"},
		{"stateful object rule", map[string]string{"a.yaml": `
rules:
  - {id: r, title: t, severity: low, source: object, condition: 'kind == "Role"', group_by: [name], threshold: {count: 2, window: 1m}}`}, "source: object rules cannot be stateful"},
		{"unknown inventory helper", map[string]string{"a.yaml": `
rules:
  - {id: r, title: t, severity: low, source: object, condition: 'len(network_policy(name)) == 0'}`}, "network_policy"},
		{"inventory helper with a wrong argument", map[string]string{"a.yaml": `
rules:
  - {id: r, title: t, severity: low, source: object, condition: 'len(network_policies(1)) == 0'}`}, "network_policies"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(LoadOptions{NoBuiltin: true, Dirs: []string{writeRules(t, tc.files)}})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	set, err := Load(LoadOptions{NoBuiltin: true, Dirs: []string{
		writeRules(t, map[string]string{"a.yaml": "cis_version: \"1.9\"\n"}),
		writeRules(t, map[string]string{"b.yaml": "cis_version: \"1.10\"\n"}),
		writeRules(t, map[string]string{"c.yaml": "rules: []\n"}),
	}})
	if err != nil || set.CISVersion() != "1.10" {
		t.Errorf("cis_version %q (%v), want the last layer's 1.10", set.CISVersion(), err)
	}
}

// fakeInventory answers every helper with one fixed object.
type fakeInventory struct{ np []any }

func (f fakeInventory) NetworkPolicies(string) []any                 { return f.np }
func (f fakeInventory) ServiceAccount(string, string) map[string]any { return nil }
func (f fakeInventory) SubjectsBoundTo(map[string]any) []string      { return []string{"alice"} }
func (f fakeInventory) EffectiveRules(string) []any                  { return nil }
func (f fakeInventory) RoleRules(map[string]any) []any               { return nil }
func (f fakeInventory) PolicyControls() []string                     { return nil }
func (f fakeInventory) RBACUsage(map[string]any) map[string]any      { return nil }

// TestObjectCheckEval: a check sees the object and the inventory, renders
// its output, honours exceptions; Engine.Eval never runs object rules (they
// need an inventory it does not have).
func TestObjectCheckEval(t *testing.T) {
	dir := writeRules(t, map[string]string{"a.yaml": `
rules:
  - id: open-ns
    title: t
    severity: medium
    source: object
    condition: kind == "Namespace" && len(network_policies(name)) == 0
    output: "{{ name }} open, bound: {{ subjects_bound_to(object) }}"
    exceptions: [{name: sandbox, field: name, values: [sandbox]}]
`})
	set, err := Load(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	c := set.ObjectChecks()[0]
	if k, ok := c.Kinds(); !ok || len(k) != 1 || k[0] != "Namespace" {
		t.Errorf("kinds %v %v, want [Namespace]", k, ok)
	}
	for _, tc := range []struct {
		name    string
		np      []any
		failed  bool
		message string
	}{
		{"shop", nil, true, "shop open, bound: [alice]"},
		{"shop", []any{map[string]any{}}, false, ""},
		{"sandbox", nil, false, ""},
	} {
		env := NewObjectEnv(fakeInventory{np: tc.np})
		env.Reset("c", "Namespace", "", tc.name, "u", map[string]any{"kind": "Namespace"})
		failed, msg, err := c.Eval(env)
		if err != nil || failed != tc.failed || msg != tc.message {
			t.Errorf("%s with %d policies: %v %q %v, want %v %q", tc.name, len(tc.np), failed, msg, err, tc.failed, tc.message)
		}
	}
	if c.Stats().Suppressed.Load() != 1 {
		t.Errorf("suppressed %d, want 1", c.Stats().Suppressed.Load())
	}
	eng, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &record.Record{Schema: 1, ID: "u:1", Source: record.SourceObject, Object: []byte(`{"kind":"Namespace","metadata":{"name":"shop"}}`)}
	if alerts := eng.Eval(rec); len(alerts) != 0 {
		t.Errorf("Eval of an object record: %v, want no alerts", alerts)
	}
}
