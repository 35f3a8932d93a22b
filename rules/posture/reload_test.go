package posture

import (
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/kubesift/kubesift/rules"
)

const (
	checksV1 = `
rules:
  - {id: ns-no-np, title: t, severity: medium, source: object, condition: 'kind == "Namespace" && len(network_policies(name)) == 0'}
  - {id: ns-named-bad, title: t, severity: high, source: object, condition: 'kind == "Namespace" && name == "bad"'}
  - {id: pod-bad, title: t, severity: high, source: object, condition: 'kind == "Pod" && name == "bad"'}
`
	checksV2 = `
rules:
  - {id: ns-no-np, title: t, severity: medium, source: object, condition: 'kind == "Namespace" && len(network_policies(name)) == 0'}
  - {id: pod-bad, title: t, severity: high, source: object, condition: 'kind == "Pod" && name == "bad"'}
  - {id: pod-ok, title: t, severity: low, source: object, condition: 'kind == "Pod" && name == "ok"'}
`
)

// transitions lists ds as check/uid:state, sorted.
func transitions(ds []Decision) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.CheckID+"/"+d.Object.UID+":"+string(d.State))
	}
	sort.Strings(out)
	return out
}

// TestSetChecksReloads: swapping the checks (as a rules reload does) judges
// the inventory once with the new set: a removed check resolves its
// findings, a new one opens, unchanged verdicts are silent; the dependency
// index is rebuilt for the new set, and a check that comes back reopens at
// a version after its resolve. A rule file that does not load leaves the
// checks as they were.
func TestSetChecksReloads(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, checksV1)
	re, err := rules.New(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	e := New(re.Set())
	for _, o := range []Object{
		{Kind: "Namespace", Name: "bad", UID: "n1", ResourceVersion: "10"},
		{Kind: "Namespace", Name: "good", UID: "n2", ResourceVersion: "11"},
		{Kind: "Pod", Namespace: "good", Name: "bad", UID: "p1", ResourceVersion: "12"},
		{Kind: "Pod", Namespace: "good", Name: "ok", UID: "p2", ResourceVersion: "13"},
	} {
		apply(t, e, o)
	}
	var resolvedRV string
	steps := []struct {
		name  string
		do    func() []Decision
		want  []string
		check func(ds []Decision)
	}{
		{"a removed check resolves, a new one opens, the rest is silent", func() []Decision {
			writeRules(t, dir, checksV2)
			if err := re.Reload(); err != nil {
				t.Fatal(err)
			}
			return e.SetChecks(re.Set())[cl]
		}, []string{"ns-named-bad/n1:resolved", "pod-ok/p2:open"}, func(ds []Decision) {
			for _, d := range ds {
				if d.CheckID == "ns-named-bad" {
					resolvedRV = d.ResourceVersion
				}
			}
		}},
		{"the dependency index follows the new set", func() []Decision {
			return apply(t, e, Object{Kind: "NetworkPolicy", Namespace: "good", Name: "deny", UID: "np", ResourceVersion: "20"})
		}, []string{"ns-no-np/n2:resolved"}, nil},
		{"a rule file that does not load keeps the checks", func() []Decision {
			writeRules(t, dir, "rules:\n  - {id: broken, source: object, condition: 'kind ==' }\n")
			if err := re.Reload(); err == nil {
				t.Error("a broken rule file reloaded")
			}
			return apply(t, e, Object{Kind: "Pod", Namespace: "good", Name: "ok", UID: "p2", ResourceVersion: "21"})
		}, nil, nil},
		{"a check that comes back reopens after its resolve", func() []Decision {
			writeRules(t, dir, checksV1)
			if err := re.Reload(); err != nil {
				t.Fatal(err)
			}
			return e.SetChecks(re.Set())[cl]
		}, []string{"ns-named-bad/n1:reopened", "pod-ok/p2:resolved"}, func(ds []Decision) {
			for _, d := range ds {
				if d.CheckID == "ns-named-bad" && !rvLess(resolvedRV, d.ResourceVersion) {
					t.Errorf("reopened at %s, not after the resolve at %s", d.ResourceVersion, resolvedRV)
				}
			}
		}},
	}
	for _, s := range steps {
		ds := s.do()
		if got := transitions(ds); !slices.Equal(got, s.want) {
			t.Errorf("%s: transitions %v, want %v", s.name, got, s.want)
		}
		if s.check != nil {
			s.check(ds)
		}
	}
	var open []string
	for _, d := range e.Findings(cl) {
		open = append(open, d.CheckID+"/"+d.Object.UID)
	}
	if want := []string{"ns-named-bad/n1", "ns-no-np/n1", "pod-bad/p1"}; !slices.Equal(open, want) {
		t.Errorf("open findings %v, want %v", open, want)
	}
	if total, _ := e.Score(cl); total.Failed != 3 {
		t.Errorf("score after the reloads: %+v, want 3 failed verdicts", total)
	}
}

// TestSetChecksWhileApplying swaps the checks while changes are applied to
// several clusters (run with -race): afterwards each cluster's findings
// are those of the new set.
func TestSetChecksWhileApplying(t *testing.T) {
	dir := t.TempDir()
	writeRules(t, dir, checksV1)
	v1, err := rules.Load(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	writeRules(t, dir, checksV2)
	v2, err := rules.Load(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	e := New(v1)
	clusters := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for _, c := range clusters {
		wg.Go(func() {
			for i := range 50 {
				o := Object{Kind: "Pod", Namespace: "x", Name: []string{"bad", "ok"}[i%2], UID: "p" + strconv.Itoa(i%2), ResourceVersion: strconv.Itoa(100 + i)}
				if _, err := e.Apply(c, o); err != nil {
					t.Error(err)
				}
			}
		})
	}
	e.SetChecks(v2)
	wg.Wait()
	for _, c := range clusters {
		var got []string
		for _, d := range e.Findings(c) {
			got = append(got, d.CheckID)
		}
		if want := []string{"pod-bad", "pod-ok"}; !slices.Equal(got, want) {
			t.Errorf("cluster %s: open findings %v, want %v", c, got, want)
		}
	}
}
