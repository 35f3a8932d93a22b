package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
)

// Objects of a fake cluster: a compliant namespace and workload, and
// violations of one severity each (host PID: high; privileged: critical).
const (
	scanNamespace = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","uid":"u-ns","resourceVersion":"1",
 "labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`
	scanDenyAll = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"shop",
 "uid":"u-np","resourceVersion":"2"},"spec":{"podSelector":{},"policyTypes":["Ingress","Egress"]}}`
	scanServiceAccount = `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"web","namespace":"shop","uid":"u-sa",
 "resourceVersion":"3"},"automountServiceAccountToken":false}`
	scanDeployment = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"NAME","namespace":"shop","uid":"u-NAME",
 "resourceVersion":"4"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
 "spec":{"serviceAccountName":"web","automountServiceAccountToken":false,"HOSTPID"
 "securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},
 "containers":[{"name":"app","image":"registry.k8s.io/app:1.0","securityContext":{"allowPrivilegeEscalation":false,
 PRIVILEGED "capabilities":{"drop":["ALL"]}},"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}}}}`
)

func deploymentJSON(name string, hostPID, privileged bool) string {
	s := strings.ReplaceAll(scanDeployment, "NAME", name)
	s = strings.Replace(s, `"HOSTPID"`, map[bool]string{true: `"hostPID":true,`}[hostPID], 1)
	return strings.Replace(s, "PRIVILEGED", map[bool]string{true: `"privileged":true,`}[privileged], 1)
}

// fakeCluster is a fake clientset holding the objects decoded from JSON.
func fakeCluster(t *testing.T, docs ...string) *fake.Clientset {
	t.Helper()
	var objs []runtime.Object
	for _, d := range docs {
		o, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(d), nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		objs = append(objs, o)
	}
	return fake.NewClientset(objs...)
}

// TestPostureScanExitCodesAndOutput runs the scan on fake clusters through
// objects.List, as the command does on a real one.
func TestPostureScanExitCodesAndOutput(t *testing.T) {
	compliant := []string{scanNamespace, scanDenyAll, scanServiceAccount, deploymentJSON("web", false, false)}
	hostPID := append(slices.Clone(compliant), deploymentJSON("hostpid", true, false))
	privileged := append(slices.Clone(compliant), deploymentJSON("priv", false, true))
	rulesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "r.yaml"), []byte(
		"overrides:\n- {rule: posture-host-pid, severity: critical}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		objs     []string
		flags    scanFlags
		failList bool
		code     int // 0: nil error
		wantOut  []string
		noOut    []string
	}{
		{name: "compliant", objs: compliant, code: 0,
			wantOut: []string{"5.2 Pod security: ", " 0 failed", "score 100.0: "}, noOut: []string{"posture-"}},
		{name: "high finding, fail on high", objs: hostPID, code: 3,
			wantOut: []string{"5.2 Pod security: ", "  high  ", "posture-host-pid", "5.2.3", "Deployment shop/hostpid"}},
		{name: "high finding, fail on critical", objs: hostPID, flags: scanFlags{failOn: "critical"}, code: 0,
			wantOut: []string{"posture-host-pid"}},
		{name: "critical finding, fail on critical", objs: privileged, flags: scanFlags{failOn: "critical"}, code: 3,
			wantOut: []string{"critical", "posture-privileged-container"}},
		{name: "rules dir raises a severity", objs: hostPID, flags: scanFlags{failOn: "critical", dirs: []string{rulesDir}},
			code: 3, wantOut: []string{"critical", "posture-host-pid"}},
		{name: "no checks: nothing to find", objs: privileged, flags: scanFlags{ruleFlags: ruleFlags{noBuiltin: true}}, code: 0,
			wantOut: []string{"score 100.0: 0 passed, 0 failed"}},
		{name: "json", objs: hostPID, flags: scanFlags{output: "json"}, code: 3,
			wantOut: []string{`{"check_id":"posture-host-pid","title":`, `"cis":["5.2.3"],"cis_version":"1.10","severity":"high",` +
				`"object":{"kind":"Deployment","namespace":"shop","name":"hostpid","uid":"u-hostpid"},"message":`, `"cluster":"unit"}`}},
		{name: "bad fail-on", objs: compliant, flags: scanFlags{failOn: "severe"}, code: 1},
		{name: "bad output", objs: compliant, flags: scanFlags{output: "yaml"}, code: 1},
		{name: "bad rules dir", objs: compliant, flags: scanFlags{dirs: []string{filepath.Join(rulesDir, "missing")}}, code: 1},
		{name: "list fails", objs: compliant, failList: true, code: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.flags
			if f.failOn == "" {
				f.failOn = "high"
			}
			if f.output == "" {
				f.output = "table"
			}
			cs := fakeCluster(t, tc.objs...)
			if tc.failList {
				cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("connection refused")
				})
			}
			var out, errOut bytes.Buffer
			err := f.scan(context.Background(), cs, "unit", &out, &errOut)
			if code := scanCode(err); code != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s%s", code, err, tc.code, out.String(), errOut.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.noOut {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
			if tc.code != 1 && !strings.Contains(errOut.String(), "objects listed in") {
				t.Errorf("stderr lacks the summary: %s", errOut.String())
			}
		})
	}
}

func scanCode(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

// TestPostureScanJSONIsDeterministic: two scans of the same cluster print
// the same bytes, one valid JSON finding per line with exactly the
// contract's fields.
func TestPostureScanJSONIsDeterministic(t *testing.T) {
	objs := []string{scanNamespace, scanServiceAccount, deploymentJSON("b", true, true), deploymentJSON("a", true, false)}
	f := scanFlags{output: "json", failOn: "critical"}
	var runs [2]bytes.Buffer
	for i := range runs {
		if err := f.scan(context.Background(), fakeCluster(t, objs...), "unit", &runs[i], &bytes.Buffer{}); scanCode(err) != 3 {
			t.Fatalf("exit %d (%v), want 3", scanCode(err), err)
		}
	}
	if runs[0].String() != runs[1].String() {
		t.Fatalf("two scans differ:\n%s\n%s", runs[0].String(), runs[1].String())
	}
	want := []string{"check_id", "cis", "cis_version", "cluster", "message", "object", "remediation", "severity", "title"}
	lines := strings.Split(strings.TrimSpace(runs[0].String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("%d findings, want several:\n%s", len(lines), runs[0].String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("fields %v, want %v", keys, want)
		}
	}
}

// TestPostureScanCommandLine runs the command through the CLI: flags parse
// (a usage error exits 2), and a kubeconfig that cannot be read is an error
// (exit 1) naming it.
func TestPostureScanCommandLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.kubeconfig")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"missing kubeconfig", []string{"posture", "scan", "--kubeconfig", missing}, 1, "missing.kubeconfig"},
		{"unknown flag", []string{"posture", "scan", "--kubeconfig", missing, "--namespace", "x"}, 2, "unknown flag"},
		{"arguments", []string{"posture", "scan", "extra"}, 2, "unknown command"},
		{"output format", []string{"posture", "scan", "-o", "yaml"}, 2, `"yaml" is not one of table, json`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, tc.code, tc.wantErr)
			}
		})
	}
}

// TestPostureScanClusterName: findings are named after --cluster, else the
// --context chosen, else the kubeconfig's current context.
func TestPostureScanClusterName(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
current-context: lab
clusters:
- {name: c, cluster: {server: "https://127.0.0.1:1"}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: lab, context: {cluster: c, user: u}}
- {name: prod, context: {cluster: c, user: u}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		flags scanFlags
		want  string
	}{
		{"current context", scanFlags{kubeconfig: kc}, "lab"},
		{"--context", scanFlags{kubeconfig: kc, context: "prod"}, "prod"},
		{"--cluster wins", scanFlags{kubeconfig: kc, context: "prod", cluster: "eu-1"}, "eu-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := tc.flags.client()
			if err != nil || got != tc.want {
				t.Errorf("cluster %q, err %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, _, err := (&scanFlags{kubeconfig: kc, context: "nope"}).client(); err == nil {
		t.Error("an unknown --context: no error")
	}
}
