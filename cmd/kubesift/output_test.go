package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
)

// printsNoData are the commands without -o json, each with the reason: they
// run a component, write files, or print one line of status. Every other
// command that is not a group prints data and must offer -o json
// (TestDataCommandsPrintJSON); a new command goes in one list or the other.
var printsNoData = map[string]string{
	"kubesift collect":               "runs the collector",
	"kubesift process":               "runs the processor",
	"kubesift notify":                "runs the notifier",
	"kubesift run":                   "runs the pipeline; its data is the NDJSON files and report.html under --out",
	"kubesift report":                "writes an HTML file (-o FILE); stdout is one line naming it",
	"kubesift setup es":              "installs templates; stdout is one line of status",
	"kubesift setup kibana":          "imports saved objects; stdout is status",
	"kubesift setup all":             "runs setup es, kafka and kibana; each prints its status (setup kafka -o json has the data)",
	"kubesift silence expire":        "prints one status line per silence",
	"kubesift help":                  "help text",
	"kubesift completion bash":       "a shell script",
	"kubesift completion fish":       "a shell script",
	"kubesift completion powershell": "a shell script",
	"kubesift completion zsh":        "a shell script",
}

// memSilences is a SilenceStore in memory, for a silence API whose answers
// only need to parse (TestSilenceCLI runs the commands on the real store).
type memSilences struct {
	mu sync.Mutex
	m  map[string]notify.Silence
}

func (s *memSilences) Create(_ context.Context, x notify.Silence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[x.ID] = x
	return nil
}

func (s *memSilences) List(_ context.Context, since time.Time) ([]notify.Silence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []notify.Silence
	for _, x := range s.m {
		if !x.EndsAt.Before(since) {
			out = append(out, x)
		}
	}
	return out, nil
}

func (s *memSilences) Expire(_ context.Context, id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return notify.ErrSilenceNotFound
	}
	x.EndsAt = now
	s.m[id] = x
	return nil
}

// silenceAPIFlags serves a silence API on an in-memory store and returns
// the flags that reach it.
func silenceAPIFlags(t *testing.T) []string {
	t.Helper()
	sil := notify.NewSilencer(&memSilences{m: map[string]notify.Silence{}}, time.Minute, nil)
	if err := sil.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	h, err := notify.NewSilenceAPI(sil, "json-token", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("json-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--server", srv.URL, "--token-file", tok}
}

// groundKubeconfig writes a kubeconfig of the test ground's kube-apiserver.
func groundKubeconfig(t *testing.T) string {
	t.Helper()
	k := testenv.KubeAPIServer(t)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: ground, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: ground, context: {cluster: ground, user: admin}}]
current-context: ground
`, k.URL, k.CAFile, k.AdminToken)
	if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return kc
}

// TestDataCommandsPrintJSON walks the command tree: every command is either
// in printsNoData or offers -o json, and each data command's -o json output
// parses — as one JSON document, or (a stream) as one document per line.
func TestDataCommandsPrintJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("kafka:\n  brokers: [\"k:9092\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type run struct {
		args     func(t *testing.T) []string
		lines    bool // one JSON document per line
		nonEmpty bool // the fixture must print something
	}
	fixed := func(args ...string) func(*testing.T) []string { return func(*testing.T) []string { return args } }
	runs := map[string]run{
		"kubesift version":               {args: fixed("version"), nonEmpty: true},
		"kubesift config validate":       {args: fixed("config", "validate", good), nonEmpty: true},
		"kubesift config print-defaults": {args: fixed("config", "print-defaults"), nonEmpty: true},
		"kubesift rules lint":            {args: fixed("rules", "lint"), nonEmpty: true},
		"kubesift rules list":            {args: fixed("rules", "list"), nonEmpty: true},
		"kubesift rules test":            {args: fixed("rules", "test"), nonEmpty: true},
		"kubesift rules eval":            {args: fixed("rules", "eval", "sample/audit.log"), lines: true, nonEmpty: true},
		"kubesift records decode":        {args: fixed("records", "decode", "--sample"), lines: true, nonEmpty: true},
		"kubesift silence add": {args: func(t *testing.T) []string {
			return append([]string{"silence", "add", "-m", "rule_id=x", "--author", "test", "--comment", "json"}, silenceAPIFlags(t)...)
		}, nonEmpty: true},
		"kubesift silence list": {args: func(t *testing.T) []string {
			return append([]string{"silence", "list"}, silenceAPIFlags(t)...)
		}},
		"kubesift setup kafka": {args: func(t *testing.T) []string {
			prefix := fmt.Sprintf("it-json-%d", time.Now().UnixNano())
			cfg := filepath.Join(t.TempDir(), "kafka.yaml")
			body := fmt.Sprintf("kafka:\n  brokers: [%q]\n  topic_settings: {partitions: 1, replication_factor: 1, min_insync_replicas: 1}\n  topics: {audit: %s.audit, events: %s.events, objects: %s.objects, alerts: %s.alerts, dlq: %s.dlq}\n",
				testenv.KafkaBrokers(t)[0], prefix, prefix, prefix, prefix, prefix)
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				testenv.DeleteTopics(testenv.KafkaBrokers(t)[0], prefix+".audit", prefix+".events", prefix+".objects", prefix+".alerts", prefix+".dlq")
			})
			return []string{"setup", "kafka", "-c", cfg}
		}, nonEmpty: true},
		"kubesift rbac usage": {args: func(t *testing.T) []string {
			file, _ := usageConfig(t)
			return []string{"rbac", "usage", "-c", file}
		}, nonEmpty: true},
		"kubesift posture scan": {args: func(t *testing.T) []string {
			return []string{"posture", "scan", "--kubeconfig", groundKubeconfig(t), "--cluster", "ground", "--fail-on", "critical"}
		}, lines: true},
	}
	walkCommands(newRootCommand(), func(c *cobra.Command) {
		path := c.CommandPath()
		if _, ok := printsNoData[path]; ok || c.HasSubCommands() {
			if c.Flags().Lookup("output") != nil && c.Flags().Lookup("output").Value.Type() == "format" {
				t.Errorf("%s offers -o json but is listed in printsNoData", path)
			}
			return
		}
		t.Run(path, func(t *testing.T) {
			f := c.Flags().Lookup("output")
			if f == nil || f.Value.Type() != "format" || !strings.Contains(f.Usage, "json") {
				t.Fatalf("%s prints data but has no -o json (or list it in printsNoData with the reason)", path)
			}
			r, ok := runs[path]
			if !ok {
				t.Fatalf("%s has -o json: add a run of it to this test", path)
			}
			args := append(r.args(t), "-o", "json")
			out, errs, code := runCLI(t, "", args...)
			if code != 0 && code != exitFindings {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if r.nonEmpty && strings.TrimSpace(out) == "" {
				t.Fatalf("printed nothing (stderr %q)", errs)
			}
			if !r.lines {
				if !json.Valid([]byte(out)) {
					t.Fatalf("not one JSON document:\n%s", out)
				}
				return
			}
			sc := bufio.NewScanner(strings.NewReader(out))
			sc.Buffer(nil, 16<<20)
			for n := 1; sc.Scan(); n++ {
				if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && !json.Valid(line) {
					t.Fatalf("line %d is not JSON: %s", n, line)
				}
			}
		})
	})
}

// TestConfigValidateJSON: -o json carries every problem with its line and
// field, valid or not, and the exit status still says which.
func TestConfigValidateJSON(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kafka:\n  brokerz: [a]\nsink:\n  elasticsearch:\n    ca_file: "+filepath.Join(dir, "none.pem")+"\n"), 0o600)
	out, _, code := runCLI(t, "", "config", "validate", "-o", "json", bad)
	var res validateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != 1 || res.Valid || len(res.Errors) != 1 || res.Errors[0].Line != 2 || res.Errors[0].Field != "kafka.brokerz" {
		t.Errorf("exit %d, %+v", code, res)
	}
	// A file that parses goes on to the files it names.
	os.WriteFile(bad, []byte("sink:\n  elasticsearch:\n    ca_file: "+filepath.Join(dir, "none.pem")+"\n"), 0o600)
	out, _, code = runCLI(t, "", "config", "validate", "-o", "json", bad)
	res = validateResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != 1 || len(res.Errors) != 1 || res.Errors[0].Line != 3 || res.Errors[0].Field != "sink.elasticsearch.ca_file" {
		t.Errorf("exit %d, %+v", code, res.Errors)
	}
	// Away from the pod the files are left out.
	out, errs, code := runCLI(t, "", "config", "validate", "--files=false", bad)
	if code != 0 || !strings.Contains(out, ": ok (") {
		t.Errorf("--files=false: exit %d, %q %q", code, out, errs)
	}
}
