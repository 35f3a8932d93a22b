package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/ndjson"
)

// findingPrinted matches a finding line of run's console.
var findingPrinted = regexp.MustCompile(`^finding (open|resolved|reopened)\s+\S+\s+(\S+)  (\S+) (\S+)  `)

// printedFindings returns "state check kind ns/name" of every finding line
// in out, in order.
func printedFindings(out string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if m := findingPrinted.FindStringSubmatch(l); m != nil {
			got = append(got, strings.Join(m[1:], " "))
		}
	}
	return got
}

// storedFindings reads the findings file of a run's output back as the
// posture consumer's state reader does (ndjson.FindingsWriter.States) and
// returns its open findings as "check kind ns/name".
func storedFindings(t *testing.T, out string) []string {
	t.Helper()
	w, err := ndjson.New(ndjson.Options{Dir: out, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	fw, err := ndjson.NewFindingsWriter(w, config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	states, skipped, err := fw.States(context.Background(), "local")
	if err != nil || skipped > 0 {
		t.Fatalf("findings file: %d lines skipped, %v", skipped, err)
	}
	var open []string
	for _, d := range states {
		if d.Open() {
			open = append(open, d.CheckID+" "+objectName(d.Object))
		}
	}
	slices.Sort(open)
	return open
}

// expectedScenarioFindings reads expected-findings.tsv: the open findings
// as "check kind ns/name", and the score line.
func expectedScenarioFindings(t *testing.T) (open []string, score string) {
	t.Helper()
	data, err := os.ReadFile("../../examples/scenario/expected-findings.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		switch {
		case i == 0:
		case strings.HasPrefix(l, "# score "):
			score = strings.TrimPrefix(l, "# score ")
		default:
			f := strings.Split(l, "\t")
			if len(f) != 5 {
				t.Fatalf("expected-findings.tsv line %d: %q", i+1, l)
			}
			open = append(open, f[0]+" "+objectName(posture.ObjectRef{Kind: f[2], Namespace: f[3], Name: f[4]}))
		}
	}
	slices.Sort(open)
	return open, score
}

// postureAlertCounts are the posture alerts the scenario's expected
// findings raise, by check: one per open finding at or above minSeverity.
func postureAlertCounts(t *testing.T, minSeverity string) map[string]int {
	t.Helper()
	floor, err := rules.ParseSeverity(minSeverity)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/scenario/expected-findings.tsv")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Split(string(data), "\n")[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 5 {
			continue // the score line, the end
		}
		if sev, err := rules.ParseSeverity(f[1]); err == nil && sev >= floor {
			out[f[0]]++
		}
	}
	return out
}

// TestRunScenarioPosture: run over the bundled scenario publishes its object
// snapshot, and the posture consumer finds exactly the scenario's expected
// findings (expected-findings.tsv, what hack/record-scenario computed when
// it recorded them): each is printed as it opens, the summary shows the
// score and the findings, and the findings file holds them. A second run
// into the same directory restores the states and writes no transition.
func TestRunScenarioPosture(t *testing.T) {
	want, score := expectedScenarioFindings(t)
	if len(want) == 0 || score == "" {
		t.Fatal("expected-findings.tsv lists no finding or no score")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	stdout, err := runForTest(t, ctx, out, "../../examples/scenario")
	if err != nil {
		t.Fatal(err)
	}
	var printed []string
	for _, p := range printedFindings(stdout) {
		state, rest, _ := strings.Cut(p, " ")
		if state != "open" {
			t.Errorf("a fresh run printed a %s transition: %s", state, p)
		}
		printed = append(printed, rest)
	}
	slices.Sort(printed)
	if !slices.Equal(printed, want) {
		t.Errorf("printed findings\n%s\nwant (expected-findings.tsv)\n%s", strings.Join(printed, "\n"), strings.Join(want, "\n"))
	}
	if got := storedFindings(t, out); !slices.Equal(got, want) {
		t.Errorf("stored open findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var pct float64
	var passed, failed int
	if _, err := fmt.Sscanf(score, "%f: %d passed, %d failed", &pct, &passed, &failed); err != nil {
		t.Fatalf("score line %q: %v", score, err)
	}
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^local\s+%.1f\s+%d\s+%d\s+%d$`, pct, passed, failed, len(want)))
	alerts := 0
	for _, n := range postureAlertCounts(t, config.Default().Processor.Posture.AlertSeverity) {
		alerts += n
	}
	for _, s := range []string{fmt.Sprintf("%d open findings, %d posture alerts", len(want), alerts), "POSTURE", "CIS SECTION", "TOP FINDINGS", "object snapshots"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("summary lacks %q", s)
		}
	}
	if !row.MatchString(stdout) {
		t.Errorf("summary lacks the score row %q:\n%s", row, stdout)
	}
	if !strings.Contains(stdout, config.DefaultFindingsIndex+".ndjson") {
		t.Errorf("the output lines do not say where the findings are:\n%s", stdout)
	}

	lines := lineCount(t, filepath.Join(out, config.DefaultFindingsIndex+".ndjson"))
	again, err := runForTest(t, ctx, out, "../../examples/scenario")
	if err != nil {
		t.Fatal(err)
	}
	if p := printedFindings(again); len(p) > 0 {
		t.Errorf("a second run printed %d transitions, want none (states restored): %v", len(p), p[:min(3, len(p))])
	}
	if n := lineCount(t, filepath.Join(out, config.DefaultFindingsIndex+".ndjson")); n != lines {
		t.Errorf("a second run grew the findings file from %d to %d lines", lines, n)
	}
	if !strings.Contains(again, fmt.Sprintf("%d open findings", len(want))) {
		t.Errorf("the second run's summary lacks the %d open findings:\n%s", len(want), again)
	}
}

// objectLine is a snapshot line: the object record of a Pod in namespace
// ns, privileged or not.
func objectLine(t *testing.T, ns, name, uid string, privileged bool) string {
	t.Helper()
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q,"uid":%q,"resourceVersion":"7"},`+
		`"spec":{"containers":[{"name":"c","image":"registry.example/app@sha256:%064d","securityContext":{"privileged":%t}}]}}`,
		name, ns, uid, 0, privileged)
	r, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name, UID: uid, ResourceVersion: "7"},
		[]byte(body), record.Cluster{Name: "recorded"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshotScenario writes a directory to replay: the sample audit log and
// objects/objects.ndjson with a privileged Pod, a line cut short (line 2),
// an audit event instead of an object record (line 3) and a compliant Pod.
func snapshotScenario(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sample, err := os.ReadFile(sampleAuditPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit.log"), sample, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, replay.SnapshotDir), 0o750); err != nil {
		t.Fatal(err)
	}
	audit := strings.SplitN(string(sample), "\n", 2)[0]
	snapshot := strings.Join([]string{
		objectLine(t, "shop", "privileged", "u-1", true),
		`{"schema":1,"id":"x","source":"object",`,
		audit,
		objectLine(t, "shop", "compliant", "u-2", false),
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, replay.SnapshotDir, "objects.ndjson"), []byte(snapshot), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunSnapshotBadLines: a snapshot line that is not an object record is
// dead-lettered naming the file and line, and the objects around it are
// judged; the snapshot's records are stamped with run's cluster.
func TestRunSnapshotBadLines(t *testing.T) {
	dir := snapshotScenario(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := t.TempDir()
	stdout, err := runForTest(t, ctx, out, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := printedFindings(stdout); !slices.Contains(got, "open posture-privileged-container Pod shop/privileged") {
		t.Errorf("printed findings %v lack the privileged Pod's", got)
	}
	for _, f := range printedFindings(stdout) {
		if strings.Contains(f, "shop/compliant") && strings.Contains(f, "privileged-container") {
			t.Errorf("the compliant Pod has a finding: %s", f)
		}
	}
	if !regexp.MustCompile(`(?m)^object snapshots\s+2\s`).MatchString(stdout) {
		t.Errorf("summary does not count 2 object records:\n%s", stdout)
	}
	dl, err := os.ReadFile(filepath.Join(out, "dead-letters.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"objects.ndjson line 2", "objects.ndjson line 3"} {
		if !strings.Contains(string(dl), line) {
			t.Errorf("dead letters do not name %q:\n%s", line, dl)
		}
	}
	if ids := storedFindings(t, out); !slices.Contains(ids, "posture-privileged-container Pod shop/privileged") {
		t.Errorf("stored findings %v lack the privileged Pod's", ids)
	}
	stored, err := os.ReadFile(filepath.Join(out, config.DefaultFindingsIndex+".ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored), `"recorded"`) || !strings.Contains(string(stored), `"local"`) {
		t.Error("snapshot records kept the recorded cluster name instead of run's")
	}
}

// TestRunProgressLineShowsPosture: the progress line counts the open
// findings and shows the score of the one cluster, as the summary does.
func TestRunProgressLineShowsPosture(t *testing.T) {
	cfg := config.Default()
	var stdout, stderr testenv.Buffer
	o := &runOptions{paths: []string{snapshotScenario(t)}, out: t.TempDir(), progress: "always", stdout: &stdout, stderr: &stderr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runAll(ctx, &cfg, o, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	open := len(printedFindings(stdout.String()))
	score := regexp.MustCompile(`(?m)^local\s+(\S+)\s`).FindStringSubmatch(stdout.String())
	if open == 0 || score == nil {
		t.Fatalf("no finding printed or no score row:\n%s", stdout.String())
	}
	want := fmt.Sprintf(" · findings %d open · score %s", open, score[1])
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr lacks %q:\n%s", want, stderr.String())
	}
}

// sinkFunc is a FindingsSink that reports every finding Indexed.
type sinkFunc struct{ pipeline.FindingsSink }

func (sinkFunc) Write(_ context.Context, fs []ecs.Finding, done func(*ecs.Finding, sink.Result)) error {
	for i := range fs {
		done(&fs[i], sink.Result{Status: sink.Indexed})
	}
	return nil
}

// TestPostureTallyPrints: each finding the store took is printed once, a
// late older state is neither printed nor kept, and control characters
// from the object (a crafted image name) cannot reach the terminal.
func TestPostureTallyPrints(t *testing.T) {
	finding := func(st posture.State, rv, msg string) ecs.Finding {
		return ecs.Finding{Decision: posture.Decision{ID: "local/c/u", Cluster: "local", State: st, CheckID: "c",
			Severity: rules.SeverityHigh, Object: posture.ObjectRef{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u"},
			Message: msg, ResourceVersion: rv}}
	}
	tests := []struct {
		name  string
		fs    []ecs.Finding
		lines []string
		open  int
	}{
		{"open then resolved", []ecs.Finding{finding(posture.StateOpen, "5", "bad"), finding(posture.StateResolved, "9", "fixed")},
			[]string{"finding open     high     c  Pod ns/p  bad", "finding resolved high     c  Pod ns/p  fixed"}, 0},
		{"a late open after the resolve", []ecs.Finding{finding(posture.StateResolved, "9", "fixed"), finding(posture.StateOpen, "5", "bad")},
			[]string{"finding resolved high     c  Pod ns/p  fixed"}, 0},
		{"control characters", []ecs.Finding{finding(posture.StateOpen, "5", "image x\x1b[2J\nfinding resolved\u202e")},
			[]string{"finding open     high     c  Pod ns/p  image x [2J finding resolved "}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			tl := newPostureTally(sinkFunc{}, &out)
			for i := range tc.fs {
				if err := tl.Write(context.Background(), tc.fs[i:i+1], nil); err != nil {
					t.Fatal(err)
				}
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if !slices.Equal(got, tc.lines) {
				t.Fatalf("printed %q, want %q", got, tc.lines)
			}
			if n := len(tl.snapshot().open); n != tc.open {
				t.Fatalf("%d open, want %d", n, tc.open)
			}
		})
	}
}
