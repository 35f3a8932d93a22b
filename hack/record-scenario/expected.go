package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// The files of a recorded scenario, relative to its directory.
const (
	auditFile    = "audit.log"
	eventsFile   = "events.ndjson"
	plantedFile  = "planted-secrets.txt"
	expectedFile = "expected-alerts.tsv"
)

// evalCluster is the cluster name records are stamped with, the default of
// `kubesift rules eval`, so expected-alerts.tsv matches what that command
// prints (stateful rules group by cluster, the name itself is not counted).
const evalCluster = "local"

// alertCount is one line of expected-alerts.tsv.
type alertCount struct {
	Rule     string
	Severity string
	Count    int
}

// decodeScenario decodes the scenario's audit log and Events in the order
// `kubesift rules eval audit.log events.ndjson` reads them. Any rejected
// document is an error: the files are meant to decode cleanly.
func decodeScenario(dir string) ([]*record.Record, error) {
	var all []*record.Record
	for _, name := range []string{auditFile, eventsFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		recs, errs := record.DecodeAll(data, name, record.DecodeOptions{Cluster: record.Cluster{Name: evalCluster}})
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %d documents rejected, first: %w", name, len(errs), errors.Join(errs[:min(3, len(errs))]...))
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("%s: no records", name)
		}
		all = append(all, recs...)
	}
	return all, nil
}

// evaluate runs the built-in rule pack over recs in order and counts alerts
// by rule, sorted by rule id.
func evaluate(recs []*record.Record) ([]alertCount, error) {
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("load built-in rules: %w", err)
	}
	byRule := map[string]*alertCount{}
	for _, r := range recs {
		for _, a := range eng.Eval(r) {
			c := byRule[a.RuleID]
			if c == nil {
				c = &alertCount{Rule: a.RuleID, Severity: a.Severity.String()}
				byRule[a.RuleID] = c
			}
			c.Count++
		}
	}
	out := make([]alertCount, 0, len(byRule))
	for _, c := range byRule {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule < out[j].Rule })
	return out, nil
}

// formatExpected renders expected-alerts.tsv: a header, then one
// rule_id<TAB>severity<TAB>count line per rule that fired.
func formatExpected(counts []alertCount) []byte {
	var b bytes.Buffer
	b.WriteString("rule_id\tseverity\tcount\n")
	for _, c := range counts {
		fmt.Fprintf(&b, "%s\t%s\t%d\n", c.Rule, c.Severity, c.Count)
	}
	return b.Bytes()
}

// parseExpected reads expected-alerts.tsv back.
func parseExpected(data []byte) ([]alertCount, error) {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 0 || lines[0] != "rule_id\tseverity\tcount" {
		return nil, errors.New("missing header line rule_id<TAB>severity<TAB>count")
	}
	var out []alertCount
	for i, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want 3 tab-separated fields, got %d", i+2, len(f))
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: count: %w", i+2, err)
		}
		out = append(out, alertCount{Rule: f[0], Severity: f[1], Count: n})
	}
	return out, nil
}

// computeExpected decodes and evaluates the files in dir and returns the
// expected-alerts.tsv they produce.
func computeExpected(dir string) ([]alertCount, error) {
	recs, err := decodeScenario(dir)
	if err != nil {
		return nil, err
	}
	return evaluate(recs)
}

// readPlanted returns the planted secret values listed in dir.
func readPlanted(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, plantedFile))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// checkRedaction applies the collector's default redaction to every record
// of recs, in place, and reports any planted value that survives in a
// record's object:
// the scenario may carry planted values only where redaction removes them,
// so that `kubesift run` can show none reaches its output.
func checkRedaction(recs []*record.Record, planted []string) error {
	def := config.Default()
	san, err := redact.New(def.Collector.Redaction, def.Collector.Size, 1<<20, nil, nil)
	if err != nil {
		return fmt.Errorf("redaction: %w", err)
	}
	var problems []string
	for _, r := range recs {
		if err := san.Apply(r); err != nil {
			return fmt.Errorf("redact %s: %w", r.ID, err)
		}
		for _, p := range planted {
			if bytes.Contains(r.Object, []byte(p)) {
				problems = append(problems, fmt.Sprintf("record %s still holds planted value %q after redaction", r.ID, p))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}
