// Command record-scenario records the bundled scenario of examples/scenario
// from the real kube-apiserver of the test ground: benign traffic of several
// identities and a scripted attack with a leaked CI token, run through the
// API with client-go, and the Events that the (absent) kubelet, scheduler and
// controllers would report about it.
//
//	hack/testenv/up.sh && go run ./hack/record-scenario
//	go run ./hack/record-scenario --expected-only   # recompute the expected-*.tsv files, no ground needed
//
// It writes, under --out (examples/scenario):
//
//   - audit.log: this run's audit events, byte for byte as kube-apiserver
//     wrote them to its JSON log, in the log's order. The log is shared with
//     other tests, so every request of the recorder carries an Audit-ID header
//     it generated (kube-apiserver keeps a client's Audit-ID), and only lines
//     with those ids are copied.
//   - events.ndjson: the scenario's events.k8s.io/v1 Events, each version as
//     a watch on the API delivered it (a count bump is a new line), with
//     apiVersion and kind set.
//   - objects/objects.ndjson: the objects source's records (record.Marshal
//     envelopes, by key) of every object the recorder created, listed with
//     collector/objects.List at the end of the story: the posture snapshot
//     `kubesift run` publishes to the objects topic.
//   - planted-secrets.txt: the fake secret values the scenario planted.
//   - expected-alerts.tsv: the built-in rules' alerts over both files, by rule.
//   - expected-findings.tsv: the built-in checks' open findings over the
//     snapshot, and its score.
//
// The recorder fails when a rule the story means to fire (storyRules) does
// not, when a document does not decode, or when a planted value survives the
// collector's redaction.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	var (
		envFile      = flag.String("env", ".testenv/env.kube", "the test ground's env.kube (export K=V lines)")
		out          = flag.String("out", "examples/scenario", "directory the scenario files are written to")
		expectedOnly = flag.Bool("expected-only", false, "recompute expected-alerts.tsv and expected-findings.tsv from the files in --out; needs no ground")
		timeout      = flag.Duration("timeout", 6*time.Minute, "give up after this long")
	)
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	if *expectedOnly {
		if err := writeExpected(*out); err != nil {
			log.Fatalf("record-scenario: %v", err)
		}
		return
	}
	env, err := readEnv(*envFile)
	if err != nil {
		log.Fatalf("record-scenario: %v (is the test ground up? hack/testenv/up.sh)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	if err := recordScenario(ctx, env, *out); err != nil {
		log.Fatalf("record-scenario: %v", err)
	}
	log.Printf("done in %s", time.Since(start).Round(time.Second))
}

// writeExpected recomputes expected-alerts.tsv and expected-findings.tsv
// from the committed files.
func writeExpected(dir string) error {
	counts, err := computeExpected(dir)
	if err != nil {
		return err
	}
	if err := checkStoryRules(counts); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, expectedFile), formatExpected(counts), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s (%d rules)", filepath.Join(dir, expectedFile), len(counts))
	if err := writeExpectedFindings(dir); err != nil {
		return err
	}
	log.Printf("wrote %s", filepath.Join(dir, expectedFindingsFile))
	return nil
}

// readEnv parses the `export K=V` / `K=V` lines of the ground's env file.
func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.TrimPrefix(l, "export ")
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"KUBESIFT_KUBE_URL", "KUBESIFT_KUBE_CA", "KUBESIFT_KUBE_ADMIN_TOKEN_FILE", "KUBESIFT_KUBE_USER_TOKEN_FILE", "KUBESIFT_AUDIT_LOG"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s: %s is not set", path, k)
		}
	}
	return env, nil
}
