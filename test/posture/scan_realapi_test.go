package posture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// knownGaps are the themes kubesift does not report as the fixture expects,
// with the reason; the test logs them instead of failing, and fails when one
// starts to hold (the entry is then stale).
var knownGaps = map[string]string{}

// scanFinding is the part of a `posture scan -o json` line the comparison
// reads.
type scanFinding struct {
	CheckID  string   `json:"check_id"`
	CIS      []string `json:"cis"`
	Severity string   `json:"severity"`
	Object   struct {
		Kind, Namespace, Name, UID string
	} `json:"object"`
}

// themesOf maps a finding to the fixture's themes.
func themesOf(exp expectations, f scanFinding) []string {
	if th, ok := exp.KubesiftChecks[f.CheckID]; ok {
		return []string{th}
	}
	var out []string
	for name, th := range exp.Themes {
		if th.CIS != "" && slices.Contains(f.CIS, th.CIS) && slices.Contains(exp.Scopes[th.Scope], f.Object.Kind) {
			out = append(out, name)
		}
	}
	return out
}

// runScan runs the built kubesift binary's posture scan against the test
// ground and returns its findings, exit code, stderr and duration.
func runScan(t *testing.T, kubeconfig, rulesDir, failOn string) ([]scanFinding, int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Kubesift(t), "posture", "scan", "--kubeconfig", kubeconfig,
		"--rules", rulesDir, "--cluster", "ground", "-o", "json", "--fail-on", failOn)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("posture scan: %v\n%s", err, stderr.String())
	}
	var out []scanFinding
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var f scanFinding
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("posture scan printed %q: %v", line, err)
		}
		out = append(out, f)
	}
	return out, code, stderr.String(), took
}

// TestScanPlantedSetOnRealAPIServer applies the whole planted fixture to the
// test ground's kube-apiserver under a prefix of its own, runs the built
// binary's `posture scan -o json` with the fixture's approved registries,
// and compares the findings on the fixture's objects with expected.yaml:
// every `fire` theme reports its object, no theme outside `fire` and
// `may_fire` does, nothing reports on an object expected.yaml does not
// list or on the built-in look-alikes. It also checks the exit codes
// (3 for --fail-on high and critical: privileged.yaml plants a critical
// finding) and logs which expectations hold.
func TestScanPlantedSetOnRealAPIServer(t *testing.T) {
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	g := newGround(t)
	exp := loadExpectations(t)
	run := runPrefix()
	t.Logf("run prefix %s", run)
	rulesDir := fixtureRulesDir(t, exp)

	sets := loadSets(t, run)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, s := range sets {
		t.Cleanup(func() { g.RemoveAll(t, s.objs) })
		for _, o := range s.objs {
			if _, _, err := g.Apply(ctx, o, false); err != nil {
				t.Fatalf("%s: %s: %v", s.file, keyOf(o), err)
			}
		}
	}

	findings, code, stderr, took := runScan(t, kubeconfig, rulesDir, "high")
	t.Logf("scan: %d findings on the whole ground in %v; %s", len(findings), took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 3 {
		t.Errorf("--fail-on high: exit %d, want 3", code)
	}
	if _, code, _, _ := runScan(t, kubeconfig, rulesDir, "critical"); code != 3 {
		t.Errorf("--fail-on critical: exit %d, want 3 (privileged.yaml plants a critical finding)", code)
	}

	compareWithExpectations(t, exp, run, findings)
}

// compareWithExpectations checks the findings on the run's objects (and the
// preexisting look-alikes) against expected.yaml.
func compareWithExpectations(t *testing.T, exp expectations, run string, findings []scanFinding) {
	expected := map[string]expectation{}
	for _, e := range append(slices.Clone(exp.Objects), exp.Preexisting...) {
		e.Namespace = strings.ReplaceAll(e.Namespace, runToken, run)
		e.Name = strings.ReplaceAll(e.Name, runToken, run)
		expected[e.key()] = e
	}
	fired := map[string]map[string]bool{}
	for _, f := range findings {
		k := objectKey(f.Object.Kind, f.Object.Namespace, f.Object.Name)
		if _, ok := expected[k]; !ok {
			if strings.HasPrefix(f.Object.Namespace, run) || strings.HasPrefix(f.Object.Name, run) {
				t.Errorf("%s: %s reports an object expected.yaml does not list", k, f.CheckID)
			}
			continue
		}
		themes := themesOf(exp, f)
		if len(themes) == 0 {
			t.Logf("%s: %s maps to no theme (not constrained by the fixture)", k, f.CheckID)
		}
		if fired[k] == nil {
			fired[k] = map[string]bool{}
		}
		for _, th := range themes {
			fired[k][th] = true
		}
	}
	held, gaps, broken := 0, 0, 0
	keys := make([]string, 0, len(expected))
	for k := range expected {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := expected[k]
		var problems []string
		for _, th := range e.Fire {
			gap, known := knownGaps[th]
			switch {
			case !fired[k][th] && known:
				gaps++
				t.Logf("%s: known gap, %s does not fire: %s", k, th, gap)
			case !fired[k][th]:
				problems = append(problems, "must fire, did not: "+th)
			case known:
				t.Errorf("%s: %s fires now; remove it from knownGaps", k, th)
			}
		}
		for th := range fired[k] {
			if !slices.Contains(e.Fire, th) && !slices.Contains(e.MayFire, th) {
				problems = append(problems, "must not fire, did: "+th)
			}
		}
		if len(problems) == 0 {
			if !slices.ContainsFunc(e.Fire, func(th string) bool { return knownGaps[th] != "" && !fired[k][th] }) {
				held++
			}
			continue
		}
		broken++
		sort.Strings(problems)
		t.Errorf("%s: %s", k, strings.Join(problems, "; "))
	}
	t.Logf("expectations: %d objects hold, %d do not, %d known gaps", held, broken, gaps)
}
