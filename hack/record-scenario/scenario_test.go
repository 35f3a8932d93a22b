package main

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubesift/kubesift/record"
)

// scenarioDir is the committed scenario, relative to this package.
var scenarioDir = filepath.Join("..", "..", "examples", "scenario")

const rerecord = "re-record (hack/testenv/up.sh && go run ./hack/record-scenario) or update the expected-*.tsv files with go run ./hack/record-scenario --expected-only"

// TestScenarioExpectedAlerts decodes the committed scenario, evaluates the
// built-in rules over it and compares with expected-alerts.tsv, so a rule
// change that alters the scenario's alerts is noticed here.
func TestScenarioExpectedAlerts(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(scenarioDir, expectedFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseExpected(want); err != nil {
		t.Fatalf("%s: %v", expectedFile, err)
	}
	got, err := computeExpected(scenarioDir) // decodeScenario fails on any rejected document
	if err != nil {
		t.Fatal(err)
	}
	if g := formatExpected(got); !bytes.Equal(g, want) {
		t.Errorf("the built-in rules' alerts over examples/scenario differ from %s; %s.\n--- got\n%s--- want\n%s", expectedFile, rerecord, g, want)
	}
	if err := checkStoryRules(got); err != nil {
		t.Errorf("%v\n(%s)", err, rerecord)
	}
}

// TestScenarioRedaction checks that every planted secret value the audit log
// holds is removed by the collector's default redaction.
func TestScenarioRedaction(t *testing.T) {
	planted, err := readPlanted(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(planted) == 0 {
		t.Fatal("no planted values")
	}
	audit, err := os.ReadFile(filepath.Join(scenarioDir, auditFile))
	if err != nil {
		t.Fatal(err)
	}
	in := 0
	for _, p := range planted {
		if bytes.Contains(audit, []byte(p)) {
			in++
		}
	}
	if in == 0 {
		t.Error("the audit log holds none of the planted values: redaction has nothing to prove")
	}
	recs, err := decodeScenario(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRedaction(recs, planted); err != nil {
		t.Error(err)
	}
}

// TestScenarioAlertsAfterRedaction checks that the collector's redaction
// does not change what the rules see: `kubesift run` evaluates redacted
// records and is compared with the same expected-alerts.tsv.
func TestScenarioAlertsAfterRedaction(t *testing.T) {
	recs, err := decodeScenario(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRedaction(recs, nil); err != nil { // redacts in place
		t.Fatal(err)
	}
	got, err := evaluate(recs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(scenarioDir, expectedFile))
	if err != nil {
		t.Fatal(err)
	}
	if g := formatExpected(got); !bytes.Equal(g, want) {
		t.Errorf("alerts over the redacted records differ from %s:\n--- got\n%s--- want\n%s", expectedFile, g, want)
	}
}

// TestScenarioPartitionInterleaving replays the scenario as a Kafka consumer
// may see it — each key's records in order, keys interleaved at random, in
// chunks — and checks that every alert count equals expected-alerts.tsv,
// cluster-admin-then-exec's too, although it joins records of two keys (the
// CI token's binding, the backdoor account's exec). This is what lets
// `kubesift run` compare its alerts with the file although its processor
// reads several partitions.
func TestScenarioPartitionInterleaving(t *testing.T) {
	recs, err := decodeScenario(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	wantBy := countsByRule(t, recs)
	for seed := int64(1); seed <= 6; seed++ {
		parts := map[string][]*record.Record{}
		var keys []string
		for _, r := range recs {
			if _, ok := parts[r.Key]; !ok {
				keys = append(keys, r.Key)
			}
			parts[r.Key] = append(parts[r.Key], r)
		}
		rng := rand.New(rand.NewSource(seed))
		out := make([]*record.Record, 0, len(recs))
		for len(keys) > 0 {
			i := rng.Intn(len(keys))
			p := parts[keys[i]]
			n := min(1+rng.Intn(50), len(p))
			out = append(out, p[:n]...)
			if parts[keys[i]] = p[n:]; len(parts[keys[i]]) == 0 {
				keys = append(keys[:i], keys[i+1:]...)
			}
		}
		gotBy := countsByRule(t, out)
		for rule, n := range wantBy {
			if gotBy[rule] != n {
				t.Errorf("seed %d: %s fired %d times, want %d: its alerts depend on how partitions interleave", seed, rule, gotBy[rule], n)
			}
		}
		for rule := range gotBy {
			if _, ok := wantBy[rule]; !ok {
				t.Errorf("seed %d: %s fired, not in %s", seed, rule, expectedFile)
			}
		}
	}
}

func TestParseExpected(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"header only", "rule_id\tseverity\tcount\n", true},
		{"one rule", "rule_id\tseverity\tcount\npod-exec\tmedium\t3\n", true},
		{"no header", "pod-exec\tmedium\t3\n", false},
		{"bad count", "rule_id\tseverity\tcount\npod-exec\tmedium\tthree\n", false},
		{"two fields", "rule_id\tseverity\tcount\npod-exec\tmedium\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseExpected([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(formatExpected(got), []byte(tc.in)) {
				t.Errorf("round trip: %q", formatExpected(got))
			}
		})
	}
}

func TestReadEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env.kube")
	data := "# comment\nexport KUBESIFT_KUBE_URL=https://127.0.0.1:16443\nKUBESIFT_KUBE_CA=\"/ca.crt\"\n" +
		"export KUBESIFT_KUBE_ADMIN_TOKEN_FILE=/a\nexport KUBESIFT_KUBE_USER_TOKEN_FILE=/u\nexport KUBESIFT_AUDIT_LOG=/log\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := readEnv(p)
	if err != nil {
		t.Fatal(err)
	}
	if env["KUBESIFT_KUBE_CA"] != "/ca.crt" || env["KUBESIFT_KUBE_URL"] != "https://127.0.0.1:16443" {
		t.Errorf("env = %v", env)
	}
	if err := os.WriteFile(p, []byte("export KUBESIFT_KUBE_URL=x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnv(p); err == nil {
		t.Error("missing variables: want an error")
	}
}

// countsByRule evaluates recs with the built-in rules and returns the alert
// count of each rule that fired.
func countsByRule(t *testing.T, recs []*record.Record) map[string]int {
	t.Helper()
	counts, err := evaluate(recs)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for _, c := range counts {
		by[c.Rule] = c.Count
	}
	return by
}

// TestScenarioExpectedFindings judges the committed object snapshot with
// the built-in checks and compares with expected-findings.tsv, so a check
// change that alters the scenario's findings is noticed here; and checks
// that no planted value is in the snapshot.
func TestScenarioExpectedFindings(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(scenarioDir, expectedFindingsFile))
	if err != nil {
		t.Fatal(err)
	}
	rows, total, err := expectedFindings(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	if g := formatFindings(rows, total); !bytes.Equal(g, want) {
		t.Errorf("the built-in checks' findings over %s differ from %s; %s.\n--- got\n%s--- want\n%s", objectsFile, expectedFindingsFile, rerecord, g, want)
	}
	planted, err := readPlanted(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	snapshot, err := os.ReadFile(filepath.Join(scenarioDir, objectsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range planted {
		if bytes.Contains(snapshot, []byte(p)) {
			t.Errorf("planted value %q is in %s", p, objectsFile)
		}
	}
}
