package rules

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestWatchReloadsAndSurvivesBadFiles simulates a ConfigMap mount: the rule
// file is replaced by swapping a ..data symlink, first with a good change,
// then with a broken file, which must leave the last good set in force.
func TestWatchReloadsAndSurvivesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(gen, content string) {
		d := filepath.Join(dir, "..gen"+gen)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "r.yaml"), []byte(content), 0o644)
		tmp := filepath.Join(dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink("..gen"+gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == \"get\"'}\n")
	if err := os.Symlink("..data/r.yaml", filepath.Join(dir, "r.yaml")); err != nil {
		t.Fatal(err)
	}
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Watch(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { results <- err })

	next := func() error {
		select {
		case err := <-results:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("no reload within 30s of a rule file change")
			return nil
		}
	}
	alerts := func(verb string) int { return len(e.Eval(auditRec(t, 1, t0, verb, "pods", "ns", "n", "u", ""))) }
	write("2", "rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == \"list\"'}\n")
	if err := next(); err != nil {
		t.Fatalf("good reload failed: %v", err)
	}
	if alerts("list") != 1 || alerts("get") != 0 {
		t.Fatal("reload did not take effect")
	}
	write("3", "rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == '}\n")
	if err := next(); err == nil || !strings.Contains(err.Error(), "rule r1: condition") {
		t.Fatalf("bad reload: %v", err)
	}
	if alerts("list") != 1 {
		t.Fatal("a bad reload replaced the rules in force")
	}
}

func TestCollector(t *testing.T) {
	dir := writeRules(t, map[string]string{"r.yaml": "rules:\n  - {id: r1, title: t, severity: low, source: audit, condition: 'verb == \"get\"'}\n"})
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	e.Eval(auditRec(t, 1, t0, "get", "pods", "ns", "n", "u", ""))
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.Collector())
	want := `
# HELP kubesift_rule_matched_total Alerts a rule raised (shadow rules count here too).
# TYPE kubesift_rule_matched_total counter
kubesift_rule_matched_total{rule="r1",severity="low",source="audit"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubesift_rule_matched_total"); err != nil {
		t.Error(err)
	}
}
