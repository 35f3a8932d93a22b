package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRulesCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(filepath.Join(good, "tests"), 0o755)
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(good, "r.yaml"), []byte(`
rules:
  - id: secret-get
    title: Secret read
    severity: high
    source: audit
    condition: verb == "get" && resource == "secrets"
    output: "{{ user }} read secret {{ namespace }}/{{ name }}"
    mitre: {tactics: [credential-access], techniques: [T1552.007]}
    tags: [secrets]
  - id: many-gets
    title: Many gets
    severity: low
    source: audit
    condition: verb == "get"
    group_by: [user]
    threshold: {count: 2, window: 1m}
`), 0o644)
	os.WriteFile(filepath.Join(good, "tests", "t.yaml"), []byte(`
tests:
  - rule: secret-get
    name: read
    match: true
    records: [{verb: get, user: {username: a}, objectRef: {resource: secrets, namespace: n, name: s}}]
  - rule: secret-get
    name: list is not get
    match: false
    records: [{verb: list, user: {username: a}, objectRef: {resource: secrets}}]
`), 0o644)
	os.WriteFile(filepath.Join(bad, "r.yaml"), []byte("rules:\n  - id: broken\n    title: t\n    severity: low\n    source: audit\n    condition: verb == \n"), 0o644)
	input := filepath.Join(dir, "audit.log")
	os.WriteFile(input, []byte(
		`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"eve"},"objectRef":{"resource":"secrets","namespace":"prod","name":"db"},"stageTimestamp":"2026-01-01T00:00:00.000000Z"}`+"\n"+
			`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"a2",`+"\n"+
			`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"a3","stage":"ResponseComplete","verb":"get","user":{"username":"eve"},"objectRef":{"resource":"pods","namespace":"prod","name":"p"},"stageTimestamp":"2026-01-01T00:00:10.000000Z"}`+"\n"), 0o644)

	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut []string
		wantErr []string
	}{
		{"lint ok", []string{"rules", "lint", "--no-builtin", good}, 0, []string{"ok: 2 rules (audit 2"}, nil},
		{"lint names file rule and position", []string{"rules", "lint", "--no-builtin", bad}, 1, nil,
			[]string{"r.yaml:2: rule broken: condition:", "(1:7)"}},
		{"test passes", []string{"rules", "test", "--no-builtin", "-v", good}, 0, []string{"--- PASS: secret-get/read", "ok\t2 fixtures passed"}, nil},
		{"eval", []string{"rules", "eval", "--no-builtin", "--rules", good, "--cluster", "prod-eu", "--summary", input}, 0,
			[]string{`"rule_id":"secret-get"`, `"record_id":"a1"`, `"mitre":{"tactics":["credential-access"],"techniques":["T1552.007"]}`,
				`"message":"eve read secret prod/db"`, `"cluster":"prod-eu"`, `"rule_id":"many-gets"`, `"group_key":"eve"`, `"count":2`},
			[]string{"audit.log:2: invalid JSON", "records read      2", "records rejected  1", "secret-get  1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, out, errs)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
	// Every eval line is one JSON alert.
	out, _, _ := runCLI(t, "", "rules", "eval", "--no-builtin", "--rules", good, input)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not one JSON alert per line: %q", line)
		}
	}
}

// TestRulesEvalSample runs rules eval on the audit log recorded from the
// real kube-apiserver and checks the attack in it is detected.
func TestRulesEvalSample(t *testing.T) {
	out, errs, code := runCLI(t, "", "rules", "eval", "--summary", "sample/audit.log")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, rule := range []string{"privileged-container", "cluster-admin-binding", "kube-system-secrets-listed", "pod-exec"} {
		if !strings.Contains(out, `"rule_id":"`+rule+`"`) {
			t.Errorf("the recorded attack did not raise %s", rule)
		}
	}
	if !strings.Contains(errs, "records read      40") {
		t.Errorf("summary: %s", errs)
	}
}

// TestRulesEvalClosesEachFileOnceRead evaluates more files than the process
// may hold open at once (RLIMIT_NOFILE lowered for the run): each file must
// be closed once read, not when eval ends.
func TestRulesEvalClosesEachFileOnceRead(t *testing.T) {
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("counting open files needs /proc: %v", err)
	}
	dir := t.TempDir()
	const files = 64
	var args []string
	for i := range files {
		f := filepath.Join(dir, fmt.Sprintf("audit-%02d.log", i))
		line := fmt.Sprintf(`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"f%d","stage":"ResponseComplete","verb":"get","user":{"username":"eve"},"objectRef":{"resource":"pods","namespace":"prod","name":"p"},"stageTimestamp":"2026-01-01T00:00:00.000000Z"}`, i)
		if err := os.WriteFile(f, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	lowered := saved
	lowered.Cur = uint64(len(open) + files/2)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	_, errs, code := runCLI(t, "", append([]string{"rules", "eval", "--summary"}, args...)...)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(errs, fmt.Sprintf("records read      %d", files)) {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}
