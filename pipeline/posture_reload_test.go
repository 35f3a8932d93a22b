package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// TestPostureChecksHotReload: with processor.rules.reload_interval, a
// change to the rule files reloads the posture checks too: a removed
// check's finding resolves, a new check's opens, an unchanged one stays
// silent, and the clusters are scored again with the new checks; a rule
// file that does not load is counted and keeps the checks in force.
func TestPostureChecksHotReload(t *testing.T) {
	kc := fakeKafka(t, 1, kfake.SeedTopics(1, topicObjects))
	brokers := kc.ListenAddrs()
	ow := newObjectsWriter(t, brokers, topicObjects)
	ow.put("prod", "v1", "Namespace", "", "shop", "ns-uid", "10", namespaceJSON("shop"))
	ow.put("prod", "v1", "Pod", "shop", "p", "pod-uid", "11", podJSON("shop", "p", true))

	dir := t.TempDir()
	// Written aside and renamed into place, as the kubelet swaps a
	// ConfigMap volume: the watcher never reads a half-written file.
	write := func(text string) {
		t.Helper()
		tmp := filepath.Join(dir, ".checks.tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "checks.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	write(`
rules:
  - {id: ns-any, title: t, severity: medium, source: object, condition: 'kind == "Namespace"'}
  - {id: pod-named-p, title: t, severity: medium, source: object, condition: 'kind == "Pod" && name == "p"'}
`)
	re, err := rules.New(rules.LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	ff := newFakeFindings()
	reg := prometheus.NewRegistry()
	c := runPosture(t, brokers, "posture-reload", posture.New(re.Set()), ff, ff.States, prometheus.NewRegistry())
	testenv.WaitForNil(t, "posture consumer rebuilt", 20*time.Second, c.Ready)
	testenv.WaitFor(t, "findings of the first checks", 10*time.Second, func() bool {
		return ff.state("prod", "ns-any", "ns-uid") == posture.StateOpen && ff.state("prod", "pod-named-p", "pod-uid") == posture.StateOpen
	})
	before, _ := ff.written()

	b := &BuiltProcessor{Engine: re, Posture: c, log: testLogger(t), reloads: newReloadsCounter(),
		rules: config.ProcessorRulesConfig{Dirs: []string{dir}, ReloadInterval: 20 * time.Millisecond}}
	reg.MustRegister(b.reloads)
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan error, 1)
	go func() { watching <- b.watchRules(ctx) }()
	t.Cleanup(func() { cancel(); <-watching })

	write(`
rules:
  - {id: pod-named-p, title: t, severity: medium, source: object, condition: 'kind == "Pod" && name == "p"'}
  - {id: pod-any, title: t, severity: high, source: object, condition: 'kind == "Pod"'}
  - {id: pod-never, title: t, severity: low, source: object, condition: 'kind == "Pod" && name == "zzz"'}
`)
	testenv.WaitFor(t, "the removed check resolved and the new one opened", 10*time.Second, func() bool {
		return ff.state("prod", "ns-any", "ns-uid") == posture.StateResolved && ff.state("prod", "pod-any", "pod-uid") == posture.StateOpen
	})
	if n, repeated := ff.written(); n != before+2 || repeated != 0 {
		t.Errorf("%d transition documents after the reload (%d repeated), want %d: the unchanged check stays silent", n, repeated, before+2)
	}
	testenv.WaitFor(t, "scored with the new checks", 10*time.Second, func() bool {
		ff.mu.Lock()
		defer ff.mu.Unlock()
		s := ff.scores["prod"]
		return s.Passed == 1 && s.Failed == 2
	})
	if n := testenv.Metric(t, reg, "kubesift_rules_reloads_total", "result", "ok"); n != 1 {
		t.Errorf("%v reloads counted ok, want 1", n)
	}

	write("rules:\n  - {id: broken, title: t, severity: low, source: object, condition: 'kind =='}\n")
	testenv.WaitFor(t, "the broken file counted", 10*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_rules_reloads_total", "result", "error") == 1
	})
	if got := ff.state("prod", "pod-any", "pod-uid"); got != posture.StateOpen {
		t.Errorf("pod-any %q after a broken file, want still open", got)
	}
	if n := len(c.o.Engine.Findings("prod")); n != 2 {
		t.Errorf("%d open findings after a broken file, want the 2 of the checks in force", n)
	}
}
