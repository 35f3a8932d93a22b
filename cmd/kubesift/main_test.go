package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := newRootCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		errb.WriteString(err.Error())
		return out.String(), errb.String(), exitCode(err)
	}
	return out.String(), errb.String(), 0
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("cluster:\n  name: prod\nkafka:\n  brokers: [\"k:9092\"]\n"), 0o644)
	os.WriteFile(bad, []byte("sink:\n  elasticsearch:\n    addresses: [\"nope\"]\n"), 0o644)
	logFile := filepath.Join(dir, "audit.log")
	os.WriteFile(logFile, []byte(`{"auditID":"f","stage":"ResponseComplete","user":{"username":"u"}}`+"\n"), 0o644)
	tests := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"version", "", []string{"version"}, 0, "kubesift ", ""},
		{"validate ok", "", []string{"config", "validate", good}, 0, "good.yaml: ok", ""},
		{"validate names the field", "", []string{"config", "validate", bad}, 1, "", "sink.elasticsearch.addresses[0]: not a URL"},
		{"print-defaults", "", []string{"config", "print-defaults"}, 0, "audit: kubesift.audit", ""},
		{"help has examples", "", []string{"records", "decode", "--help"}, 0, "Examples:", ""},
		{"decode stdin", `{"auditID":"x","stage":"ResponseComplete","user":{"username":"u"}}`, []string{"records", "decode", "--cluster", "c1", "-"}, 0,
			`"id":"x:ResponseComplete","cluster":{"name":"c1"}`, ""},
		{"decode reports bad lines and keeps going", "{\"kind\":0}\n{\"auditID\":\"y\",\"stage\":\"Panic\"}\n", []string{"records", "decode", "--summary", "-"}, 1,
			`"id":"y:Panic"`, "stdin:1: kind: cannot use JSON number as string"},
		{"decode sample", "", []string{"records", "decode", "--sample", "--summary", "--quiet"}, 0, "", "audit"},
		{"decode needs input", "", []string{"records", "decode"}, 2, "", "name at least one FILE"},
		{"decode a file", "",
			[]string{"records", "decode", logFile}, 0, `"id":"f:ResponseComplete"`, ""},
		{"decode names a missing file", "", []string{"records", "decode", filepath.Join(dir, "missing.log")}, 1, "", "missing.log: no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errs)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tc.wantOut)
			}
			if !strings.Contains(errs, tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", errs, tc.wantErr)
			}
		})
	}
}

// TestEverySubcommandHasExamples walks the command tree: every command a user
// can run shows examples in --help.
func TestEverySubcommandHasExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "help" || c.Name() == "completion" || c.Hidden {
			return
		}
		if c.Example == "" {
			t.Errorf("%q has no examples in --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}
