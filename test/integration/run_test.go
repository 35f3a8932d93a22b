package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// The all-in-one `kubesift run`: the README's main-job command
// from a clean checkout, its NDJSON documents against what the
// Elasticsearch sink indexes through real Kafka and Elasticsearch, and
// Ctrl-C on the real binary.

// readmeMainCommand is the first command of the README's first code block:
// the main job the README promises works on a fresh machine.
func readmeMainCommand(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```sh\n")
	if i < 0 {
		t.Fatal("README.md has no ```sh block")
	}
	for _, l := range strings.Split(s[i+6:], "\n") {
		l = strings.TrimSpace(l)
		if l == "```" {
			break
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	t.Fatal("README.md's first ```sh block has no command")
	return ""
}

// cleanCheckout clones the repository's HEAD into a temporary directory:
// what a new user gets, without this working tree's build or output.
func cleanCheckout(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kubesift")
	out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", testenv.Root(), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	return dir
}

// expectedAlerts reads examples/scenario/expected-alerts.tsv (rule_id,
// severity, count).
func expectedAlerts(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if i == 0 || len(f) != 3 {
			continue
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		want[f[0]] = n
	}
	if len(want) == 0 {
		t.Fatalf("%s lists no alerts", path)
	}
	return want
}

// expectedPostureAlerts reads examples/scenario/expected-findings.tsv
// (check_id, severity, kind, namespace, name) and counts, by check, the
// findings at high or critical: the posture alerts run prints.
func expectedPostureAlerts(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Split(l, "\t"); len(f) == 5 && (f[1] == "high" || f[1] == "critical") {
			want[f[0]]++
		}
	}
	if len(want) == 0 {
		t.Fatalf("%s lists no high or critical finding", path)
	}
	return want
}

var (
	runAlertLine = regexp.MustCompile(`^\d\d:\d\d:\d\d  (CRITICAL|HIGH|MEDIUM|LOW|INFO)\s+(\S+)\s`)
	runMoreLine  = regexp.MustCompile(`^\s+\+(\d+) more  (\S+)$`)
	runRuleRow   = regexp.MustCompile(`^([a-z0-9-]+)\s+(critical|high|medium|low|info)\s+(\d+)$`)
)

// runOutput splits run's stdout into the alerts the console printed and the
// alerts of the summary's RULE table, by rule.
func runOutput(out string) (printed, summary map[string]int) {
	printed, summary = map[string]int{}, map[string]int{}
	inRules := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case runAlertLine.MatchString(l):
			printed[runAlertLine.FindStringSubmatch(l)[2]]++
		case runMoreLine.MatchString(l):
			m := runMoreLine.FindStringSubmatch(l)
			n, _ := strconv.Atoi(m[1])
			printed[m[2]] += n
		case strings.HasPrefix(l, "RULE "):
			inRules = true
		case inRules && runRuleRow.MatchString(l):
			m := runRuleRow.FindStringSubmatch(l)
			n, _ := strconv.Atoi(m[3])
			summary[m[1]] = n
		case inRules && strings.TrimSpace(l) == "":
			inRules = false
		}
	}
	return printed, summary
}

func diffCounts(got, want map[string]int) string {
	var b strings.Builder
	for k, w := range want {
		if got[k] != w {
			fmt.Fprintf(&b, "  %s: got %d, want %d\n", k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "  %s: got %d, want none\n", k, g)
		}
	}
	return b.String()
}

// TestRunReadmeQuickstart runs the README's main-job command in a clean
// checkout, as a new user would, and checks what it prints against the
// scenario's expected alerts; no planted secret may reach the output.
func TestRunReadmeQuickstart(t *testing.T) {
	testenv.Short(t)
	cmdline := readmeMainCommand(t)
	if !strings.Contains(cmdline, "kubesift run") {
		t.Fatalf("README's main command %q is not kubesift run", cmdline)
	}
	dir := cleanCheckout(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Compile first (go run would), so the run itself is timed alone.
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", os.DevNull, "./cmd/kubesift")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the checkout: %v\n%s", err, out)
	}
	t.Logf("compile in the checkout: %v", time.Since(start))

	cmd := exec.CommandContext(ctx, "bash", "-c", cmdline)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start = time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s\nstdout:\n%s", cmdline, err, stderr.String(), stdout.String())
	}
	t.Logf("%s: %v (go run included)", cmdline, took)
	out := stdout.String()
	if m := regexp.MustCompile(`kubesift run done in ([0-9.]+)s`).FindStringSubmatch(out); m == nil {
		t.Fatalf("no 'done' summary:\n%s", out)
	} else {
		t.Logf("run's own time: %ss (the README promises under 30 s)", m[1])
	}

	want := expectedAlerts(t, filepath.Join(dir, "examples/scenario/expected-alerts.tsv"))
	printed, summary := runOutput(out)
	// The console also prints the posture alerts: one per open finding
	// of the scenario's object snapshot at or above high (the default
	// processor.posture.alert_severity); the RULE table counts the rules'.
	wantPrinted := expectedPostureAlerts(t, filepath.Join(dir, "examples/scenario/expected-findings.tsv"))
	for rule, n := range want {
		wantPrinted[rule] += n
	}
	if d := diffCounts(printed, wantPrinted); d != "" {
		t.Errorf("printed alerts differ from expected-alerts.tsv and expected-findings.tsv:\n%s", d)
	}
	if d := diffCounts(summary, want); d != "" {
		t.Errorf("summary's RULE table differs from expected-alerts.tsv:\n%s", d)
	}

	// The documents are there, and none holds a planted secret (plain or
	// base64, as a Secret's data carries it).
	outDir := filepath.Join(dir, "kubesift-out")
	files, _ := filepath.Glob(filepath.Join(outDir, "*.ndjson"))
	if len(files) < 3 {
		t.Fatalf("output files %v, want audit, events and alerts", files)
	}
	plants, err := os.ReadFile(filepath.Join(dir, "examples/scenario/planted-secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var needles []string
	for _, p := range strings.Fields(string(plants)) {
		needles = append(needles, p, base64.StdEncoding.EncodeToString([]byte(p)))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s holds a planted secret", filepath.Base(f))
			}
		}
	}
}

// esHits returns every document of index (data streams included) by
// event.id.
func esHits(t *testing.T, e *procEnv, index string) map[string]map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, _ = e.es(ctx, http.MethodPost, "/"+index+"/_refresh", nil)
	code, body, err := e.es(ctx, http.MethodPost, "/"+index+"/_search?size=10000", []byte(`{"query":{"match_all":{}}}`))
	if err != nil || code != 200 {
		t.Fatalf("search %s: %d %v %s", index, code, err, body)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				ID     string         `json:"_id"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, h := range res.Hits.Hits {
		out[h.ID] = h.Source
	}
	return out
}

// ndjsonDocs reads an NDJSON output file by event.id.
func ndjsonDocs(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var d map[string]any
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ev, _ := d["event"].(map[string]any)
		id, _ := ev["id"].(string)
		out[id] = d
	}
	return out
}

// withoutRunTimes drops the fields that are times of the run rather than
// of the record — when kubesift read it (event.created,
// kubesift.record.observed_time) and wrote it (event.ingested) — since the
// two runs happen at different times.
func withoutRunTimes(d map[string]any) map[string]any {
	if ev, ok := d["event"].(map[string]any); ok {
		delete(ev, "ingested")
		delete(ev, "created")
	}
	if ks, ok := d["kubesift"].(map[string]any); ok {
		if rec, ok := ks["record"].(map[string]any); ok {
			delete(rec, "observed_time")
		}
	}
	return d
}

// TestRunNDJSONMatchesElasticsearch runs the scenario twice through the
// binary: once on the embedded broker into NDJSON, once through the real
// Kafka into the real Elasticsearch. Every index holds the same documents,
// field for field (event.ingested aside).
func TestRunNDJSONMatchesElasticsearch(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.ElasticsearchURL(t)
	e := newProcEnv(t, "run", brokers, esURL, 1)
	events, objects := e.topic+"-events", e.topic+"-objects"
	e.createTopics(map[string]int{events: 1, objects: 1})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{events, objects}})
	})
	scenario := filepath.Join(testenv.Root(), "examples", "scenario")
	// Findings of its own too: the scenario's objects have fixed uids, and
	// a findings index another run wrote to would restore their states and
	// raise no posture alert.
	findings := config.ESFindingsConfig{Index: "kubesift-findings-" + e.run,
		TransitionsStream: "logs-kubesift.finding_transitions-" + e.run, ScoresStream: "metrics-kubesift.posture_scores-" + e.run}
	streams := fmt.Sprintf("    streams: {audit: %q, events: %q, posture: %q}\n    alerts_index: %q\n"+
		"    findings: {index: %q, transitions_stream: %q, scores_stream: %q}\n",
		e.stream, "logs-kubesift.events-"+e.run, "logs-kubesift.posture-"+e.run, e.alertsIdx,
		findings.Index, findings.TransitionsStream, findings.ScoresStream)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, p := range []string{
			"/_data_stream/" + findings.TransitionsStream, "/_data_stream/" + findings.ScoresStream, "/" + findings.Index,
			"/_index_template/" + elasticsearch.IndexTemplateName(findings.TransitionsStream),
			"/_index_template/" + elasticsearch.IndexTemplateName(findings.ScoresStream),
			"/_index_template/" + elasticsearch.IndexTemplateName(findings.Index),
		} {
			_, _, _ = e.es(ctx, http.MethodDelete, p, nil)
		}
	})
	write := func(name, body string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := write("local.yaml", "sink:\n  elasticsearch:\n"+streams)
	real := write("real.yaml", fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}
processor: {group_id: %q}
notify: {consumer_group: %q}
sink:
  elasticsearch:
    addresses: [%q]
    flush_interval: 250ms
%s`, quoteAll(brokers), e.topic, events, objects, e.alerts, e.dlq, e.group, e.group+"-notify", esURL, streams))

	for _, c := range []struct{ name, cfg, out string }{
		{"run-local", local, filepath.Join(e.dir, "local-out")},
		{"run-real", real, filepath.Join(e.dir, "real-out")},
	} {
		p := testenv.Start(t, c.name, nil, "run", "-c", c.cfg, "--out", c.out, scenario)
		if err := p.Wait(3 * time.Minute); err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, testenv.Tail(p.LogPath, 40))
		}
		if !strings.Contains(testenv.Tail(p.LogPath, 200), "kubesift run done") {
			t.Fatalf("%s did not finish:\n%s", c.name, testenv.Tail(p.LogPath, 40))
		}
	}

	outDir := filepath.Join(e.dir, "local-out")
	for _, index := range []string{e.stream, "logs-kubesift.events-" + e.run, e.alertsIdx} {
		local := ndjsonDocs(t, filepath.Join(outDir, index+".ndjson"))
		indexed := esHits(t, e, index)
		if len(local) == 0 || len(local) != len(indexed) {
			t.Fatalf("%s: %d NDJSON documents, %d in Elasticsearch", index, len(local), len(indexed))
		}
		for id, d := range local {
			got, ok := indexed[id]
			if !ok {
				t.Fatalf("%s: %s is in the NDJSON output, not in Elasticsearch", index, id)
			}
			if !reflect.DeepEqual(withoutRunTimes(d), withoutRunTimes(got)) {
				a, _ := json.Marshal(d)
				b, _ := json.Marshal(got)
				t.Fatalf("%s: document %s differs\nndjson: %s\nes:     %s", index, id, a, b)
			}
		}
		t.Logf("%s: %d documents, identical in both stores", index, len(local))
	}
}

// TestRunInterrupt: SIGINT (Ctrl-C) to the binary in the middle of a long
// replay ends it within 5 s with status 130 and a summary, and every
// document in the output is whole.
func TestRunInterrupt(t *testing.T) {
	testenv.Short(t)
	src := filepath.Join(testenv.Root(), "examples", "scenario", "audit.log")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(strings.TrimSpace(string(data)), "\n") + 1
	big := testenv.RepeatAuditLog(t, src, 100) // 100 copies, each with its own audit IDs

	out := filepath.Join(t.TempDir(), "out")
	p := testenv.Start(t, "run-interrupt", nil, "run", "--quiet", "--out", out, big)
	auditFile := filepath.Join(out, "logs-kubesift.audit-default.ndjson")
	testenv.WaitForNil(t, "4 MiB of output to interrupt", 2*time.Minute, func() error {
		if st, err := os.Stat(auditFile); err == nil && st.Size() > 4<<20 {
			return nil
		}
		if p.Exited() {
			t.Fatalf("run exited before it could be interrupted:\n%s", testenv.Tail(p.LogPath, 30))
		}
		return fmt.Errorf("its log ends:\n%s", testenv.Tail(p.LogPath, 30))
	})
	sent := time.Now()
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = p.Wait(10 * time.Second)
	took := time.Since(sent)
	t.Logf("exited %v after SIGINT", took)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit = %v, want status 130\n%s", err, testenv.Tail(p.LogPath, 30))
	}
	if took > 5*time.Second {
		t.Fatalf("exited %v after SIGINT, want <= 5s", took)
	}
	log := testenv.Tail(p.LogPath, 200)
	if !strings.Contains(log, "kubesift run interrupted") || strings.Contains(log, "shutdown took too long") {
		t.Errorf("not an orderly shutdown with its summary:\n%s", log)
	}
	docs := ndjsonDocs(t, auditFile) // fails on a torn line
	if len(docs) == 0 || len(docs) >= 100*lines {
		t.Fatalf("%d documents: the interrupt came too late to test anything", len(docs))
	}
	// The summary counts what the store acknowledged; the file has that.
	m := regexp.MustCompile(`logs-kubesift\.audit-default\s+(\d+)\n`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no INDEX row in the summary:\n%s", log)
	}
	if n, _ := strconv.Atoi(m[1]); n != len(docs) {
		t.Errorf("summary says %d audit documents written, the file has %d", n, len(docs))
	}
}

// TestRunKubeconfigEvents: `run --kubeconfig` watches a real cluster's
// Events through the Events collector and alerts on them live, until
// Ctrl-C.
func TestRunKubeconfigEvents(t *testing.T) {
	k := testenv.KubeAPIServer(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: ground, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: ground, context: {cluster: ground, user: admin}}]
current-context: ground
`, k.URL, k.CAFile, k.AdminToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "run-kube", nil, "run", "--kubeconfig", kubeconfig, "--out", filepath.Join(dir, "out"))

	cs := colKubeClient(t, k, k.AdminToken, "kubesift-it-run")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "it-run-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-0.crash", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-0", APIVersion: "v1"},
		Reason:         "CrashLoopBackOff", Message: "Back-off restarting failed container app in pod web-0",
		Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	// The collector may still be listing when the Event is made; it is
	// shipped either way (list or watch).
	if _, err := cs.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the crash-loop alert on the console", time.Minute, func() bool {
		return strings.Contains(testenv.Tail(p.LogPath, 100000), "crashloop-backoff") &&
			strings.Contains(testenv.Tail(p.LogPath, 100000), ns+"/web-0")
	})
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := p.Wait(6 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit = %v, want status 130 after SIGINT", err)
	}
	// An orderly stop, not the 4.5 s safety exit.
	if log := testenv.Tail(p.LogPath, 200); strings.Contains(log, "shutdown took too long") || !strings.Contains(log, "kubesift run interrupted") {
		t.Fatalf("not an orderly shutdown:\n%s", log)
	}
}
