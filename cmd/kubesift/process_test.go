package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProcessCommand covers what `kubesift process` checks before it
// connects anywhere; the processor itself runs against the real Kafka and
// Elasticsearch in test/integration/process_*_test.go.
func TestProcessCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noBrokers := write("nobrokers.yaml", "sink:\n  elasticsearch:\n    addresses: [\"http://127.0.0.1:1\"]\n")
	ok := write("ok.yaml", "kafka:\n  brokers: [\"127.0.0.1:1\"]\nserver:\n  listen: \"\"\n")
	badRule := write("bad-rule.yaml", "rules:\n  - id: broken\n    title: Broken\n    severity: high\n    source: audit\n    condition: verb ==\n")
	badCfg := write("bad.yaml", "processor:\n  drain_timeout: 40s\n")
	// A metrics port already taken must fail the command, not leave it
	// exiting 0 once the processor stops.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	portTaken := write("taken.yaml", fmt.Sprintf("kafka:\n  brokers: [\"127.0.0.1:1\"]\nserver:\n  listen: %q\n", taken.Addr().String()))
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"needs brokers", []string{"process", "-c", noBrokers}, "kafka.brokers: required by process"},
		{"config validated with field paths", []string{"process", "-c", badCfg}, "processor.drain_timeout: must be shorter than processor.rebalance_timeout"},
		{"bad rule file named", []string{"process", "-c", ok, "--rules", badRule}, "bad-rule.yaml"},
		{"no arguments", []string{"process", "extra"}, "unknown command"},
		{"metrics port taken", []string{"process", "-c", portTaken, "--no-builtin"}, "metrics server"},
		{"help has examples", []string{"process", "--help"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, "", tc.args...)
			if tc.wantErr == "" {
				if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "kubesift process -c") {
					t.Fatalf("exit %d, stdout %q", code, out)
				}
				return
			}
			if code == 0 || !strings.Contains(errs, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want an error containing %q", code, errs, tc.wantErr)
			}
		})
	}
}
