package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink"
)

// ruleYAML is a rule file with one audit rule per id.
func ruleYAML(ids ...string) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, id := range ids {
		b.WriteString("  - id: " + id + "\n    title: " + id + "\n    severity: high\n    source: audit\n    condition: verb == \"create\"\n")
	}
	return b.String()
}

// buildConfig is a processor configuration on brokers, with only the rules
// of dir.
func buildConfig(brokers []string, dir string) *config.Config {
	cfg := config.Default()
	cfg.Kafka = testKafka(brokers)
	cfg.Processor = testProcessorConfig("unit-build")
	cfg.Processor.Rules = config.ProcessorRulesConfig{NoBuiltin: true, Dirs: []string{dir}, ReloadInterval: 50 * time.Millisecond}
	return &cfg
}

// TestNewProcessor: the one constructor registers the rules metrics on the
// command's registry, names a broken rule file, and closes the store it was
// given when it fails (it owns it from the call on).
func TestNewProcessor(t *testing.T) {
	tests := []struct {
		name    string
		rules   string
		noReg   bool
		wantErr string
	}{
		{name: "rules metrics registered", rules: ruleYAML("one", "two")},
		{name: "broken rule file named", rules: "rules:\n  - id: broken\n    condition: verb ==\n", wantErr: "rules.yaml"},
		{name: "registry required", rules: ruleYAML("one"), noReg: true, wantErr: "Registerer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(tc.rules), 0o600); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			deps := ProcessorDeps{Registerer: reg, Logger: testLogger(t), Store: newFakeWriter()}
			if tc.noReg {
				deps.Registerer = nil
			}
			b, err := NewProcessor(context.Background(), buildConfig([]string{"127.0.0.1:1"}, dir), deps)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				if aerr := deps.Store.Add(context.Background(), sink.Doc{ID: "x"}, func(sink.Result) {}); !errors.Is(aerr, ErrClosed) {
					t.Fatalf("the store given to a failed NewProcessor is still open (Add: %v)", aerr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Discard()
			if got := testenv.Metric(t, reg, "kubesift_rules_loaded"); got != 2 {
				t.Fatalf("kubesift_rules_loaded = %v, want 2", got)
			}
		})
	}
}

// TestBuiltProcessorReloadsRules: a processor run through Add watches its
// rule files, so a rule added to a directory is loaded while it runs
// (kubesift_rules_loaded follows), and the group stops cleanly.
func TestBuiltProcessorReloadsRules(t *testing.T) {
	c := fakeKafka(t, 1)
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(file, []byte(ruleYAML("one")), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	b, err := NewProcessor(context.Background(), buildConfig(c.ListenAddrs(), dir),
		ProcessorDeps{Registerer: reg, Logger: testLogger(t), Store: newFakeWriter()})
	if err != nil {
		t.Fatal(err)
	}
	g := lifecycle.New(testLogger(t))
	b.Add(g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	if err := os.WriteFile(file, []byte(ruleYAML("one", "two", "three")), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the added rules to be loaded", 10*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_rules_loaded") == 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("group: %v", err)
	}
}
