// Package testenv lets tests find the real servers of the test ground
// (kube-apiserver + etcd, Kafka, Elasticsearch) that hack/testenv/*.sh start,
// and the shared test corpus.
//
// The scripts write "export NAME=value" lines to $KUBESIFT_TESTENV/env.<part>
// (default <repo>/.testenv); the helpers read those files for variables not
// already in the environment, so `make testenv-up` once and plain `go test`
// afterwards work without sourcing anything.
//
// A missing server skips the test with a message saying how to start it —
// unless KUBESIFT_REQUIRE_REAL=1 (CI sets it), where a missing server fails the
// test so that a green CI can never hide skipped integration tests.
//
// It is also the one test toolkit of the repository, so no package keeps a
// copy: WaitFor and WaitForNil (wait for a condition instead of sleeping),
// Metric and Metrics/Sum (read a metric from a registry or a running
// binary), CreateTopics and ReadTopic (real Kafka topics), NewKeyPair and
// SelfSigned (TLS fixtures), StartAlertmanager (a real Prometheus
// Alertmanager per test). It imports nothing of kubesift, so every
// package's tests can use it.
package testenv

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireRealVar names the variable that turns skips into failures.
const RequireRealVar = "KUBESIFT_REQUIRE_REAL"

var loadOnce sync.Once

// Root returns the repository root (the directory holding the main go.mod).
func Root() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.HasPrefix(string(b), "module github.com/kubesift/kubesift\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Dir is the test ground's state directory.
func Dir() string {
	if d := os.Getenv("KUBESIFT_TESTENV"); d != "" {
		return d
	}
	return filepath.Join(Root(), ".testenv")
}

// load reads env.* files of the test ground into the process environment,
// never overriding a variable that is already set.
func load() {
	files, _ := filepath.Glob(filepath.Join(Dir(), "env.*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			v = strings.Trim(v, `"'`)
			if _, set := os.LookupEnv(k); !set {
				os.Setenv(k, v)
			}
		}
		fh.Close()
	}
}

// Get returns an environment variable after loading the test ground's env files.
func Get(name string) string {
	loadOnce.Do(load)
	return os.Getenv(name)
}

// RequireReal reports whether missing servers must fail tests.
func RequireReal() bool { return Get(RequireRealVar) == "1" }

// Missing ends a test that cannot run without something the test ground
// lacks (msg says what, and how to get it): it skips, or fails under
// KUBESIFT_REQUIRE_REAL=1, where the suite has set everything up and a skip
// would be a test quietly gone.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if RequireReal() {
		t.Fatal(msg + " — required because " + RequireRealVar + "=1")
	}
	t.Skip(msg)
}

// Need returns the value of each named variable, or skips (fails under
// KUBESIFT_REQUIRE_REAL=1) naming the part of the test ground that is missing.
// With -short it always skips: a test that needs a server is an integration
// test.
func Need(t testing.TB, part string, names ...string) []string {
	t.Helper()
	// Whatever the environment says: the env files outlive a stopped
	// ground, and `make test-unit` must not dial servers that are gone.
	Short(t)
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = Get(n)
		if vals[i] == "" {
			msg := part + " is not running (" + n + " unset); start it with `make testenv-up` or hack/testenv/" + part + ".sh start"
			Missing(t, msg)
		}
	}
	return vals
}

// Short skips a slow integration test under -short.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
}

// Corpus returns the shared corpus directory (../shared/corpus next to the
// repository, or $KUBESIFT_CORPUS).
func Corpus(t testing.TB) string {
	t.Helper()
	dir := Get("KUBESIFT_CORPUS")
	if dir == "" {
		dir = filepath.Join(Root(), "..", "shared", "corpus")
	}
	if _, err := os.Stat(dir); err != nil {
		Missing(t, fmt.Sprintf("shared corpus not found at %s: %v", dir, err))
	}
	return dir
}

// BenchAuditLog returns rules/testdata/bench-audit.log.gz uncompressed: the
// audit log recorded from the real test-ground kube-apiserver by
// hack/record-bench-corpus.sh, which benchmarks and encoding tests share.
func BenchAuditLog(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(Root(), "rules", "testdata", "bench-audit.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("bench-audit.log.gz: %v", err)
	}
	return raw
}
