package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

const sampleAuditPath = "sample/audit.log"

// evalCounts is what `kubesift rules eval` raises on files, by rule: the
// expected alerts of a run over them.
func evalCounts(t *testing.T, files ...string) map[string]int {
	t.Helper()
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs, errs := record.DecodeAll(data, f, record.DecodeOptions{Cluster: record.Cluster{Name: "local"}})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, r := range recs {
			for _, a := range eng.Eval(r) {
				out[a.RuleID]++
			}
		}
	}
	return out
}

// consoleLine matches an alert line of the console receiver.
var consoleLine = regexp.MustCompile(`^\d\d:\d\d:\d\d  (CRITICAL|HIGH|MEDIUM|LOW|INFO)\s+(\S+)\s`)
var moreLine = regexp.MustCompile(`^\s+\+(\d+) more  (\S+)$`)

// printedCounts counts the alerts the console printed, by rule.
func printedCounts(out string) map[string]int {
	got := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if m := consoleLine.FindStringSubmatch(l); m != nil {
			got[m[2]]++
		} else if m := moreLine.FindStringSubmatch(l); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			got[m[2]] += n
		}
	}
	return got
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func lineCount(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// sampleWithBadFirstLine writes the sample audit log behind one
// undecodable line ("oops", line 1) and returns the file.
func sampleWithBadFirstLine(t *testing.T, name string) string {
	t.Helper()
	sample, err := os.ReadFile(sampleAuditPath)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, append([]byte("{\"kind\":\"Event\",\"auditID\": oops\n"), sample...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runForTest(t *testing.T, ctx context.Context, out string, paths ...string) (string, error) {
	t.Helper()
	cfg := config.Default()
	var stdout, stderr testenv.Buffer
	o := &runOptions{paths: paths, out: out, progress: "never", stdout: &stdout, stderr: &stderr}
	err := runAll(ctx, &cfg, o, slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if t.Failed() || err != nil {
		t.Logf("stderr:\n%s", stderr.String())
	}
	return stdout.String(), err
}

// TestRunSample runs the whole pipeline on the embedded broker over the
// sample audit log: the console prints exactly the alerts `rules eval`
// raises, the NDJSON files hold every record and alert, and a second run
// into the same directory stores nothing twice.
func TestRunSample(t *testing.T) {
	want := evalCounts(t, sampleAuditPath)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdout, err := runForTest(t, ctx, out, sampleAuditPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := printedCounts(stdout); !sameCounts(got, want) {
		t.Fatalf("printed alerts %v, want %v\n%s", got, want, stdout)
	}
	total := 0
	for _, n := range want {
		total += n
	}
	for _, s := range []string{"kubesift run done", "files         40", fmt.Sprintf("kubesift-alerts              %d", total)} {
		if !strings.Contains(stdout, s) {
			t.Errorf("summary lacks %q:\n%s", s, stdout)
		}
	}
	d := config.Default().Sink.Elasticsearch
	auditFile, alertsFile := filepath.Join(out, d.Streams.Audit+".ndjson"), filepath.Join(out, d.AlertsIndex+".ndjson")
	if n := lineCount(t, auditFile); n != 40 {
		t.Errorf("%s: %d lines, want 40", auditFile, n)
	}
	if n := lineCount(t, alertsFile); n != total {
		t.Errorf("%s: %d lines, want %d", alertsFile, n, total)
	}

	// Again into the same directory: the same documents by ID, none added.
	if _, err := runForTest(t, ctx, out, sampleAuditPath); err != nil {
		t.Fatal(err)
	}
	if n := lineCount(t, auditFile); n != 40 {
		t.Errorf("after a second run %s has %d lines, want 40", auditFile, n)
	}
	if n := lineCount(t, alertsFile); n != total {
		t.Errorf("after a second run %s has %d lines, want %d", alertsFile, n, total)
	}
}

func TestRunBadInvocations(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		mod   func(*runOptions)
		want  string
	}{
		{name: "nothing to read", want: "nothing to read"},
		{name: "missing file", paths: []string{"no/such/audit.log"}, want: "no/such/audit.log"},
		{name: "bad progress", paths: []string{sampleAuditPath}, mod: func(o *runOptions) { o.progress = "sometimes" }, want: "--progress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			var b testenv.Buffer
			o := &runOptions{paths: tc.paths, out: t.TempDir(), progress: "never", stdout: &b, stderr: &b}
			if tc.mod != nil {
				tc.mod(o)
			}
			err := runAll(context.Background(), &cfg, o, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestRunCancelled: cancelling mid-run (what Ctrl-C does) returns within
// 5 s, says it was interrupted, and leaves only whole documents.
func TestRunCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 200,000 lines")
	}
	big := testenv.RepeatAuditLog(t, sampleAuditPath, 5000) // 200,000 lines
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once documents are being written (or after the wait, so
		// the run still ends if they never are; the test then fails on
		// what was written).
		_ = testenv.Await(2*time.Minute, func() error {
			st, err := os.Stat(filepath.Join(out, config.Default().Sink.Elasticsearch.Streams.Audit+".ndjson"))
			if err != nil || st.Size() <= 1<<20 {
				return errors.New("not yet")
			}
			return nil
		})
		cancel()
	}()
	var cancelled time.Time
	go func() { <-ctx.Done(); cancelled = time.Now() }()
	stdout, err := runForTest(t, ctx, out, big)
	took := time.Since(cancelled)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 130 {
		t.Fatalf("err = %v, want the interrupted exit (130)", err)
	}
	t.Logf("returned %v after the cancel", took)
	if took > 5*time.Second {
		t.Fatalf("returned %v after the cancel, want <= 5s", took)
	}
	if !strings.Contains(stdout, "kubesift run interrupted") {
		t.Errorf("no interrupted summary:\n%s", stdout)
	}
	// Every line is a whole JSON document (nothing torn by the shutdown).
	f, err := os.Open(filepath.Join(out, config.Default().Sink.Elasticsearch.Streams.Audit+".ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	n := 0
	for sc.Scan() {
		n++
		if b := sc.Bytes(); len(b) == 0 || b[0] != '{' || b[len(b)-1] != '}' {
			t.Fatalf("line %d is not a whole document", n)
		}
	}
	if n == 0 || n >= 200000 {
		t.Fatalf("%d documents: the cancel came too late to test anything", n)
	}
}

// TestRunProgressLine: --progress=always prints the progress line (records
// read, published, indexed, alerts) even when stderr is not a terminal.
func TestRunProgressLine(t *testing.T) {
	cfg := config.Default()
	var stdout, stderr testenv.Buffer
	o := &runOptions{paths: []string{sampleAuditPath}, out: t.TempDir(), progress: "always", stdout: &stdout, stderr: &stderr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runAll(ctx, &cfg, o, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range evalCounts(t, sampleAuditPath) {
		total += n
	}
	want := fmt.Sprintf("read 40 · published 40 · indexed 40 · alerts %d", total)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr lacks %q:\n%s", want, stderr.String())
	}
}

// TestReadmeMainJob runs the README's main-job command in-process (the
// integration test TestRunReadmeQuickstart runs it in a clean checkout):
// the console prints exactly the scenario's expected alerts: the rules'
// (expected-alerts.tsv) and the posture consumer's, one per open finding
// at or above processor.posture.alert_severity (expected-findings.tsv).
func TestReadmeMainJob(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\ngo run ./cmd/kubesift run examples/scenario\n") {
		t.Fatal("README's main-job command changed; update this test")
	}
	tsv, err := os.ReadFile("../../examples/scenario/expected-alerts.tsv")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(tsv)), "\n")[1:] {
		var rule, sev string
		var n int
		if _, err := fmt.Sscanf(l, "%s\t%s\t%d", &rule, &sev, &n); err != nil {
			t.Fatalf("expected-alerts.tsv: %q: %v", l, err)
		}
		want[rule] = n
	}
	for check, n := range postureAlertCounts(t, config.Default().Processor.Posture.AlertSeverity) {
		want[check] += n
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdout, err := runForTest(t, ctx, t.TempDir(), "../../examples/scenario")
	if err != nil {
		t.Fatal(err)
	}
	if got := printedCounts(stdout); !sameCounts(got, want) {
		t.Fatalf("printed alerts %v\nwant (expected-alerts.tsv) %v", got, want)
	}
}

// TestRunConfiguredReceiverAndDeadLetters: alerts go to the configured
// receivers beside the console (here a webhook taking the high ones), and
// an undecodable line ends in <out>/dead-letters.ndjson with its headers
// while the rest of the file is processed.
func TestRunConfiguredReceiverAndDeadLetters(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(alertsReceiver(func(path string, alerts []rules.Alert) {
		mu.Lock()
		for _, a := range alerts {
			if path == "/security" {
				got[a.RuleID]++
			}
		}
		mu.Unlock()
	}))
	defer srv.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
notify:
  route:
    receiver: others
    group_by: [cluster, rule_id]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 1h
    routes:
      - {matchers: ['severity="high"'], receiver: security}
  receivers:
    - name: security
      webhook_configs: [{url: %q}]
    - name: others
      webhook_configs: [{url: %q}]
`, srv.URL+"/security", srv.URL+"/others")), "run.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	in := sampleWithBadFirstLine(t, "with-bad-line.log")
	out := t.TempDir()
	var stdout, stderr testenv.Buffer
	o := &runOptions{paths: []string{in}, out: out, progress: "never", stdout: &stdout, stderr: &stderr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runAll(ctx, cfg, o, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	mu.Lock()
	want := map[string]int{"cluster-admin-binding": 1, "privileged-container": 1}
	if !sameCounts(got, want) {
		t.Errorf("webhook received %v, want %v", got, want)
	}
	mu.Unlock()
	if printed := printedCounts(stdout.String()); len(printed) < 5 {
		t.Errorf("the console no longer prints every alert beside the receivers: %v", printed)
	}
	// The bad line is a dead letter with where it came from; the 40 good
	// records are indexed.
	b, err := os.ReadFile(filepath.Join(out, "dead-letters.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var dl pipeline.DeadLetterLine
	if err := json.Unmarshal(bytes.TrimSpace(b), &dl); err != nil {
		t.Fatalf("dead-letters.ndjson: %v\n%s", err, b)
	}
	if dl.Headers["kubesift-dlq-line"] != "1" || !strings.HasSuffix(dl.Headers["kubesift-dlq-origin"], "with-bad-line.log") || !strings.Contains(dl.Value, "oops") {
		t.Errorf("dead letter %+v", dl)
	}
	if n := lineCount(t, filepath.Join(out, config.Default().Sink.Elasticsearch.Streams.Audit+".ndjson")); n != 40 {
		t.Errorf("%d audit documents, want the 40 good lines", n)
	}
	if !strings.Contains(stdout.String(), "dead letters  1") {
		t.Errorf("summary does not count the dead letter:\n%s", stdout.String())
	}
}

// alertsReceiver is a webhook receiver of kubesift/v1 payloads: got learns
// each request's path and alerts.
func alertsReceiver(got func(path string, alerts []rules.Alert)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Alerts []rules.Alert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got(r.URL.Path, p.Alerts)
	})
}

// TestRunFollowKeepsDeadLettersOnce: with --follow the embedded broker keeps
// its log under --out, so its dead-letter topic still holds the first run's
// dead letter in the second run; dead-letters.ndjson must not get it twice.
func TestRunFollowKeepsDeadLettersOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("two runs of a few seconds")
	}
	bad := sampleWithBadFirstLine(t, "bad.log")
	out := t.TempDir()
	auditFile := filepath.Join(out, config.Default().Sink.Elasticsearch.Streams.Audit+".ndjson")
	for i, in := range []string{bad, sampleAuditPath} {
		cfg := config.Default()
		var stdout, stderr testenv.Buffer
		o := &runOptions{paths: []string{in}, out: out, follow: true, progress: "never", stdout: &stdout, stderr: &stderr}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runAll(ctx, &cfg, o, slog.New(slog.DiscardHandler)) }()
		// Following never ends by itself: stop once the run has processed
		// its file (the first writes 40 documents; the second finds them).
		testenv.WaitForNil(t, fmt.Sprintf("run %d to print an alert", i+1), 30*time.Second, func() error {
			if !strings.Contains(stdout.String(), "cluster-admin-binding") {
				return fmt.Errorf("stderr so far:\n%s", stderr.String())
			}
			return nil
		})
		if i == 0 {
			testenv.WaitFor(t, "40 documents", 30*time.Second, func() bool {
				_, err := os.Stat(auditFile)
				return err == nil && lineCount(t, auditFile) == 40
			})
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("run %d: a cancelled run returned nil", i+1)
		}
	}
	if n := lineCount(t, filepath.Join(out, "dead-letters.ndjson")); n != 1 {
		t.Fatalf("dead-letters.ndjson has %d lines after two runs, want the one dead letter once", n)
	}
	if n := lineCount(t, auditFile); n != 40 {
		t.Fatalf("%d audit documents, want 40", n)
	}
}

// TestRunRulesMetricsAndReload: run builds its processor as process does,
// so its /metrics has the rules metrics and a rule file added to a --rules
// directory is loaded while it runs.
func TestRunRulesMetricsAndReload(t *testing.T) {
	dir := t.TempDir()
	rule := func(id string) string {
		return "rules:\n  - id: " + id + "\n    title: " + id + "\n    severity: low\n    source: audit\n    condition: verb == \"create\"\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "one.yaml"), []byte(rule("run-one")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf("server: {listen: %q}\nprocessor: {rules: {reload_interval: 100ms}}\n", addr)),
		"run.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr testenv.Buffer
	o := &runOptions{paths: []string{sampleAuditPath}, out: t.TempDir(), follow: true, noBuiltin: true, ruleDirs: []string{dir},
		progress: "never", stdout: &stdout, stderr: &stderr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAll(ctx, cfg, o, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()
	loaded := func(want float64) func() error {
		return func() error {
			m, err := testenv.Metrics(ctx, addr)
			if err != nil {
				return err
			}
			if got := testenv.Sum(m, "kubesift_rules_loaded"); got != want {
				return fmt.Errorf("kubesift_rules_loaded = %v, want %v; stderr:\n%s", got, want, stderr.String())
			}
			return nil
		}
	}
	testenv.WaitForNil(t, "run's /metrics to show the one rule", 30*time.Second, loaded(1))
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte(rule("run-two")), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForNil(t, "the added rule to be loaded", 30*time.Second, loaded(2))
}
