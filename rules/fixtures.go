package rules

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

// TestFile holds rule fixtures: records that must or must not raise a rule's
// alert. Fixtures live in a tests/ directory next to the rule files (the
// built-in pack's are embedded too), so `kubesift rules test DIR` checks a
// user's own rules the same way the pack is checked.
type TestFile struct {
	Tests []TestCase `yaml:"tests"`
}

// TestCase is one fixture. Records are audit events or Kubernetes Events in
// YAML; missing auditID, stage, apiVersion/kind and timestamps are filled in
// (timestamps one second apart), so fixtures show only what matters.
type TestCase struct {
	Rule    string           `yaml:"rule"`
	Name    string           `yaml:"name"`
	Match   bool             `yaml:"match"`  // the rule must alert at least once
	Alerts  *int             `yaml:"alerts"` // exact number of alerts, if set
	Records []map[string]any `yaml:"records"`
	// Network stands in for processor.network: the records' origin is
	// resolved with these cluster networks and lists.
	Network *FixtureNetwork `yaml:"network"`
	file    string
}

// FixtureNetwork is a fixture's processor.network: cluster CIDRs, and
// lists by name, each a list of CIDRs or addresses.
type FixtureNetwork struct {
	ClusterCIDRs []string            `yaml:"cluster_cidrs"`
	Lists        map[string][]string `yaml:"lists"`
}

// resolver is the netorigin.Resolver of n.
func (n *FixtureNetwork) resolver() (*netorigin.Resolver, error) {
	var o netorigin.Options
	for _, c := range n.ClusterCIDRs {
		p, err := netorigin.ParseNetwork(c)
		if err != nil {
			return nil, fmt.Errorf("network.cluster_cidrs: %w", err)
		}
		o.ClusterCIDRs = append(o.ClusterCIDRs, p)
	}
	names := make([]string, 0, len(n.Lists))
	for name := range n.Lists {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := netorigin.ListSpec{Name: name}
		for _, c := range n.Lists[name] {
			p, err := netorigin.ParseNetwork(c)
			if err != nil {
				return nil, fmt.Errorf("network.lists.%s: %w", name, err)
			}
			spec.Networks = append(spec.Networks, p)
		}
		o.Lists = append(o.Lists, spec)
	}
	return netorigin.New(o)
}

// TestResult is the outcome of one fixture.
type TestResult struct {
	Rule, Name, File string
	Passed           bool
	Detail           string
	Duration         time.Duration
}

// LoadTests reads fixtures from the built-in pack (unless noBuiltin) and from
// tests/ below each directory.
func LoadTests(opts LoadOptions) ([]TestCase, error) {
	var cases []TestCase
	read := func(name string, data []byte) error {
		var tf TestFile
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&tf); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for i := range tf.Tests {
			tf.Tests[i].file = name
			cases = append(cases, tf.Tests[i])
		}
		return nil
	}
	if !opts.NoBuiltin {
		names, _ := fs.Glob(builtinFS, "builtin/tests/*.yaml")
		sort.Strings(names)
		for _, n := range names {
			data, _ := builtinFS.ReadFile(n)
			if err := read(n, data); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range opts.Dirs {
		st, err := os.Stat(d)
		if err != nil || !st.IsDir() {
			continue
		}
		files, _ := ruleFiles(filepath.Join(d, "tests"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if err := read(f, data); err != nil {
				return nil, err
			}
		}
	}
	return cases, nil
}

// fixtureBase is the event time of a fixture's first record.
var fixtureBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// FixtureRecords turns a fixture's records into Records, their origin
// resolved as the processor does when the fixture has a network section.
func FixtureRecords(tc *TestCase) ([]*record.Record, error) {
	var res *netorigin.Resolver
	if tc.Network != nil {
		var err error
		if res, err = tc.Network.resolver(); err != nil {
			return nil, fmt.Errorf("%s: test %q: %w", tc.file, tc.Name, err)
		}
	}
	var out []*record.Record
	for i, m := range tc.Records {
		m = fillFixture(m, i, tc.Name)
		js, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("records[%d]: %w", i, err)
		}
		recs, errs := record.DecodeAll(js, fmt.Sprintf("%s: test %q records[%d]", tc.file, tc.Name, i),
			record.DecodeOptions{Cluster: record.Cluster{Name: "fixture"}, Now: func() time.Time { return fixtureBase }})
		if len(errs) > 0 {
			return nil, errs[0]
		}
		for _, r := range recs {
			if res != nil && r.Audit != nil {
				r.Origin = res.LookupSources(r.Audit.SourceIPs)
			}
		}
		out = append(out, recs...)
	}
	return out, nil
}

func fillFixture(m map[string]any, i int, name string) map[string]any {
	c := make(map[string]any, len(m)+6)
	for k, v := range m {
		c[k] = v
	}
	at := fixtureBase.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000000Z")
	_, involved := c["involvedObject"]
	_, regarding := c["regarding"]
	if involved || regarding {
		if c["kind"] == nil {
			c["kind"] = "Event"
		}
		if c["apiVersion"] == nil {
			c["apiVersion"] = "v1"
			if regarding {
				c["apiVersion"] = "events.k8s.io/v1"
			}
		}
		md, _ := c["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
		}
		if md["uid"] == nil {
			md["uid"] = fmt.Sprintf("fixture-%s-%d", slug(name), i)
		}
		c["metadata"] = md
		if involved && c["lastTimestamp"] == nil && c["eventTime"] == nil {
			c["lastTimestamp"] = fixtureBase.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		}
		if regarding && c["eventTime"] == nil {
			c["eventTime"] = at
		}
		return c
	}
	if c["kind"] == nil {
		c["kind"] = "Event"
	}
	if c["apiVersion"] == nil {
		c["apiVersion"] = record.APIAuditV1
	}
	if c["auditID"] == nil {
		c["auditID"] = fmt.Sprintf("fixture-%s-%d", slug(name), i)
	}
	if c["stage"] == nil {
		c["stage"] = "ResponseComplete"
	}
	if c["stageTimestamp"] == nil {
		c["stageTimestamp"] = at
	}
	if c["requestReceivedTimestamp"] == nil {
		c["requestReceivedTimestamp"] = c["stageTimestamp"]
	}
	return c
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// RunTests runs fixtures against the rules loaded with opts. Each case gets
// fresh stateful windows, so cases do not leak into each other.
func RunTests(opts LoadOptions, cases []TestCase) ([]TestResult, error) {
	e, err := New(opts)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, r := range e.Set().rules {
		known[r.ID] = true
	}
	var results []TestResult
	for i := range cases {
		tc := &cases[i]
		start := time.Now()
		res := TestResult{Rule: tc.Rule, Name: tc.Name, File: tc.file}
		switch {
		case !known[tc.Rule]:
			res.Detail = fmt.Sprintf("unknown or disabled rule %q", tc.Rule)
		default:
			e.resetState()
			res.Passed, res.Detail = runCase(e, tc)
		}
		res.Duration = time.Since(start)
		results = append(results, res)
	}
	return results, nil
}

func runCase(e *Engine, tc *TestCase) (bool, string) {
	recs, err := FixtureRecords(tc)
	if err != nil {
		return false, err.Error()
	}
	stats := e.Stats()[tc.Rule]
	errsBefore := stats.Errors.Load()
	n := 0
	for _, r := range recs {
		for _, a := range e.Eval(r) {
			if a.RuleID == tc.Rule {
				n++
			}
		}
	}
	switch {
	case stats.Errors.Load() != errsBefore:
		// A condition that fails at run time counts as no match; a fixture
		// must not pass because its rule crashed.
		return false, fmt.Sprintf("%d evaluation error(s) in the rule", stats.Errors.Load()-errsBefore)
	case tc.Alerts != nil && n != *tc.Alerts:
		return false, fmt.Sprintf("%d alert(s), want %d", n, *tc.Alerts)
	case tc.Alerts == nil && tc.Match && n == 0:
		return false, "no alert, want a match"
	case tc.Alerts == nil && !tc.Match && n > 0:
		return false, fmt.Sprintf("%d alert(s), want none", n)
	}
	return true, ""
}
