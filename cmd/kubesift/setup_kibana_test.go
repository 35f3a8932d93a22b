package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/kibana"
	"github.com/kubesift/kubesift/sink/kibana/kibanatest"
)

// TestSetupKibana runs `kubesift setup kibana` against the stand-in Kibana:
// the first run creates every object, the second replaces the same ones,
// the data views follow the configuration's stream names, and the API key
// can come from the environment.
func TestSetupKibana(t *testing.T) {
	srv := kibanatest.New(t)
	srv.APIKey = "a2V5OnNlY3JldA=="
	srv.Spaces = []string{"security"}
	t.Setenv(envKibanaAPIKey, srv.APIKey)
	cfg := filepath.Join(t.TempDir(), "kubesift.yaml")
	os.WriteFile(cfg, []byte("sink:\n  elasticsearch:\n    streams: {audit: logs-kubernetes.audit_logs-prod}\n"), 0o644)
	objs, err := kibana.Objects(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	n := len(objs)
	for run, want := range []string{fmt.Sprintf("(%d created, 0 replaced)", n), fmt.Sprintf("(0 created, %d replaced)", n)} {
		out, errs, code := runCLI(t, "", "setup", "kibana", "-c", cfg, "--url", srv.URL, "--space", "security")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("kibana: imported %d saved objects into space security %s", n, want)) {
			t.Fatalf("run %d: exit %d\nstdout %s\nstderr %s", run+1, code, out, errs)
		}
		if !strings.Contains(out, `dashboard "[kubesift] Overview" (id kubesift-dashboard-overview)`) {
			t.Errorf("run %d: the dashboards are not listed:\n%s", run+1, out)
		}
	}
	var dv struct {
		Attributes struct{ Title string }
	}
	if err := json.Unmarshal(srv.Objects("security")["index-pattern/kubesift-audit"], &dv); err != nil {
		t.Fatal(err)
	}
	if dv.Attributes.Title != "logs-kubernetes.audit_logs-prod" {
		t.Errorf("audit data view title %q, want the configured stream", dv.Attributes.Title)
	}
}

// TestSetupKibanaErrors: `setup kibana` without --url, and every refused
// import, fail (never a help text and exit 0), naming the cause and never
// the secret.
func TestSetupKibanaErrors(t *testing.T) {
	srv := kibanatest.New(t)
	srv.Username, srv.Password = "elastic", "right-password"
	file := filepath.Join(t.TempDir(), "objects.json")
	os.WriteFile(file, []byte("{}\n"), 0o644)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no url", nil, `required flag(s) "url" not set`},
		{"wrong password", []string{"--url", srv.URL, "--username", "elastic", "--password", "wrong-password"}, "HTTP 401 Unauthorized"},
		{"unknown space", []string{"--url", srv.URL, "--username", "elastic", "--password", "right-password", "--space", "nope"}, `space "nope" does not exist`},
		{"not ndjson", []string{"--url", srv.URL, "--username", "elastic", "--password", "right-password", "--file", file}, "HTTP 400 Bad Request: a line without type or id; Kibana refused the file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := runCLI(t, "", append([]string{"setup", "kibana"}, c.args...)...)
			if code == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, errs, c.want)
			}
			if strings.Contains(out+errs, "wrong-password") || strings.Contains(out+errs, "right-password") {
				t.Errorf("the password is in the output: %s%s", out, errs)
			}
		})
	}
}
