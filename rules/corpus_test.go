package rules

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The Falco k8s-audit corpus (../shared/corpus/falco-k8s-audit, see its
// EXPECTED.md) is the yardstick of the built-in pack: every file Falco's
// default k8s_audit_rules.yaml flags must raise an alert of the same intent,
// and files it does not flag must raise nothing at medium or above. Rows of
// EXPECTED.md that need extra Falco rule files are mimicked with user rule
// directories layered over the pack (TestFalcoCorpusLayering).

// rbacRuleIDs are the RBAC rules of the other half of the pack
// (30-rbac.yaml); the corpus rows that need them skip, naming the missing
// rule, until it exists.
var rbacRuleIDs = map[string]bool{
	"cluster-admin-binding": true, "role-wildcard-verbs": true, "role-wildcard-resources": true,
	"role-pod-exec": true, "role-write-privileges": true, "role-created": true, "role-deleted": true,
	"binding-created": true, "binding-deleted": true, "system-role-modified": true,
	"builtin-cluster-role-changed": true, "role-patch-adds-grant": true,
}

// corpusCase is one file of the corpus and what kubesift must make of it.
type corpusCase struct {
	file   string
	falco  string   // Falco's rule (EXPECTED.md), or "" when Falco flags nothing
	want   []string // rules of the same intent; each must fire
	counts map[string]int
	// alsoOK are further rules that may alert at medium or above; any other
	// medium+ alert fails the case (noise). Rows of RBAC intents accept any
	// RBAC rule as well.
	alsoOK []string
}

var falcoCorpus = []corpusCase{
	{file: "anonymous_creates_namespace_foo.json", falco: "Anonymous Request Allowed", want: []string{"anonymous-request-allowed"}},
	{file: "attach_cluster_admin_role.json", falco: "Attach to cluster-admin Role", want: []string{"cluster-admin-binding"}},
	{file: "attach_pod.json", falco: "Attach/Exec Pod", want: []string{"pod-exec"}},
	{file: "create_cluster_role_pod_exec.json", falco: "ClusterRole With Pod Exec Created", want: []string{"role-pod-exec"}},
	{file: "create_cluster_role_wildcard_resources.json", falco: "ClusterRole With Wildcard Created", want: []string{"role-wildcard-resources"}},
	{file: "create_cluster_role_wildcard_verbs.json", falco: "ClusterRole With Wildcard Created", want: []string{"role-wildcard-verbs"}},
	{file: "create_cluster_role_write_privileges.json", falco: "ClusterRole With Write Privileges Created", want: []string{"role-write-privileges"}},
	{file: "create_clusterrole.json", falco: "K8s Role/Clusterrole Created", want: []string{"role-created"}},
	{file: "create_clusterrolebinding.json", falco: "K8s Role/Clusterrolebinding Created", want: []string{"binding-created"}},
	{file: "create_configmap.json", falco: "K8s ConfigMap Created", want: []string{"configmap-created"}},
	{file: "create_configmap_no_sensitive_values.json"}, // Falco: nothing (with its activity rules off)
	{file: "create_configmap_sensitive_values.json", falco: "Create/Modify Configmap With Private Credentials",
		want: []string{"configmap-with-credentials"}, counts: map[string]int{"configmap-with-credentials": 6}},
	{file: "create_deployment.json", falco: "K8s Deployment Created", want: []string{"workload-created"}},
	{file: "create_kube_system_secret.json"},
	{file: "create_nginx_pod_hostnetwork.json", falco: "Create HostNetwork Pod", want: []string{"host-network-pod"}},
	{file: "create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json", falco: "Create Privileged Pod", want: []string{"privileged-container"}},
	{file: "create_nginx_pod_nohostnetwork.json"},
	{file: "create_nginx_pod_privileged.json", falco: "Create Privileged Pod", want: []string{"privileged-container"}},
	{file: "create_nginx_pod_privileged_2nd_container.json", falco: "Create Privileged Pod", want: []string{"privileged-container"}},
	{file: "create_nginx_pod_sensitive_mount.json", falco: "Create Sensitive Mount Pod", want: []string{"sensitive-host-path-mount"}},
	{file: "create_nginx_pod_sensitive_mount_2nd_container.json", falco: "Create Sensitive Mount Pod", want: []string{"sensitive-host-path-mount"}},
	{file: "create_nginx_pod_unprivileged.json"},
	{file: "create_nginx_pod_unsensitive_mount.json"},
	{file: "create_nginx_service_nodeport.json", falco: "Create NodePort Service", want: []string{"nodeport-service"}},
	{file: "create_nginx_service_nonodeport.json"},
	{file: "create_pod_kube_public_namespace.json", falco: "Pod Created in Kube Namespace", want: []string{"pod-created-in-system-namespace"}},
	{file: "create_pod_kube_system_namespace.json", falco: "Pod Created in Kube Namespace", want: []string{"pod-created-in-system-namespace"}},
	{file: "create_secret.json", falco: "K8s Secret Created", want: []string{"secret-created"}},
	{file: "create_service.json", falco: "K8s Service Created", want: []string{"service-created"}},
	{file: "create_service_account_token_secret.json"},
	{file: "create_serviceaccount.json", falco: "K8s Serviceaccount Created", want: []string{"serviceaccount-created"}},
	{file: "create_serviceaccount_kube_public_namespace.json", falco: "Service Account Created in Kube Namespace", want: []string{"serviceaccount-created-in-system-namespace", "serviceaccount-created"}},
	{file: "create_serviceaccount_kube_system_namespace.json", falco: "Service Account Created in Kube Namespace", want: []string{"serviceaccount-created-in-system-namespace", "serviceaccount-created"}},
	{file: "delete_cluster_role_kube_aggregator.json", falco: "System ClusterRole Modified/Deleted", want: []string{"builtin-cluster-role-changed"}},
	{file: "delete_clusterrole.json", falco: "K8s Role/Clusterrole Deleted", want: []string{"role-deleted"}},
	{file: "delete_clusterrolebinding.json", falco: "K8s Role/Clusterrolebinding Deleted", want: []string{"binding-deleted"}},
	{file: "delete_configmap.json", falco: "K8s ConfigMap Deleted", want: []string{"configmap-deleted"}},
	{file: "delete_deployment.json", falco: "K8s Deployment Deleted", want: []string{"workload-deleted"}},
	{file: "delete_namespace_foo.json", falco: "K8s Namespace Deleted", want: []string{"namespace-deleted"}},
	{file: "delete_secret.json", falco: "K8s Secret Deleted", want: []string{"secret-deleted"}},
	{file: "delete_service.json", falco: "K8s Service Deleted", want: []string{"service-deleted"}},
	{file: "delete_serviceaccount.json", falco: "K8s Serviceaccount Deleted", want: []string{"serviceaccount-deleted"}},
	{file: "exec_pod.json", falco: "Attach/Exec Pod", want: []string{"pod-exec"}},
	{file: "minikube_creates_namespace_foo.json", want: []string{"namespace-created"}}, // Falco flags it only without its allow-lists
	{file: "modify_cluster_role_node_problem_detector.json", falco: "System ClusterRole Modified/Deleted", want: []string{"builtin-cluster-role-changed"}},
	{file: "some-user_creates_namespace_foo.json", falco: "K8s Namespace Created", want: []string{"namespace-created"}},
}

// corpusDir is the Falco corpus, or a skip when the shared corpus is absent.
func corpusDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(testenv.Corpus(t), "falco-k8s-audit")
}

// evalFile evaluates one file the way `kubesift rules eval FILE` does: a
// fresh engine, record.NewDecoder over the file, Engine.Eval on each record in
// order. Decode errors are returned, not fatal.
func evalFile(t *testing.T, opts LoadOptions, path string) ([]Alert, []error, int) {
	t.Helper()
	eng, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := record.NewDecoder(f, path, record.DecodeOptions{Cluster: record.Cluster{Name: "corpus"}})
	var alerts []Alert
	var errs []error
	n := 0
	for {
		r, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var de *record.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%s: %v", path, err)
			}
			errs = append(errs, err)
			continue
		}
		n++
		alerts = append(alerts, eng.Eval(r)...)
	}
	for id, st := range eng.Stats() {
		if e := st.Errors.Load(); e > 0 {
			t.Errorf("rule %s had %d runtime errors on %s", id, e, filepath.Base(path))
		}
	}
	return alerts, errs, n
}

func countByRule(alerts []Alert) map[string]int {
	m := map[string]int{}
	for _, a := range alerts {
		m[a.RuleID]++
	}
	return m
}

func summarize(alerts []Alert) string {
	var s []string
	for _, a := range alerts {
		s = append(s, a.RuleID+"("+a.Severity.String()+")")
	}
	return strings.Join(s, ", ")
}

func TestFalcoCorpus(t *testing.T) {
	dir := corpusDir(t)
	set, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, r := range set.Rules() {
		known[r.ID] = true
	}
	// Every .json file of the corpus has a row (or is the malformed one).
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	rows := map[string]bool{"fal_01_003.json": true}
	for _, c := range falcoCorpus {
		rows[c.file] = true
	}
	for _, f := range files {
		if !rows[filepath.Base(f)] {
			t.Errorf("corpus file %s has no row in falcoCorpus", filepath.Base(f))
		}
	}

	for _, c := range falcoCorpus {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			rbac := false
			for _, id := range c.want {
				if rbacRuleIDs[id] {
					rbac = true
					if !known[id] {
						t.Skipf("RBAC rule %s (other half of the pack) is not in the built-in pack yet", id)
					}
				} else if !known[id] {
					t.Fatalf("rule %s is not in the built-in pack", id)
				}
			}
			alerts, errs, n := evalFile(t, LoadOptions{}, filepath.Join(dir, c.file))
			if len(errs) > 0 || n == 0 {
				t.Fatalf("decoded %d records, errors %v", n, errs)
			}
			got := countByRule(alerts)
			for _, id := range c.want {
				if got[id] == 0 {
					t.Errorf("Falco: %q; want %s to fire, got [%s]", c.falco, id, summarize(alerts))
				}
			}
			for id, want := range c.counts {
				if got[id] != want {
					t.Errorf("%s fired %d times, want %d (Falco: %q)", id, got[id], want, c.falco)
				}
			}
			ok := map[string]bool{}
			for _, id := range append(append([]string(nil), c.want...), c.alsoOK...) {
				ok[id] = true
			}
			for _, a := range alerts {
				if a.Severity < SeverityMedium || ok[a.RuleID] || (rbac && rbacRuleIDs[a.RuleID]) {
					continue
				}
				if c.falco == "" {
					t.Errorf("Falco flags nothing here, but %s raised %s: %s", a.RuleID, a.Severity, a.Message)
				} else {
					t.Errorf("unexpected %s alert %s beside the intent %v: %s", a.Severity, a.RuleID, c.want, a.Message)
				}
			}
			t.Logf("%d record(s): [%s]", n, summarize(alerts))
		})
	}

	t.Run("fal_01_003 is malformed", func(t *testing.T) {
		alerts, errs, n := evalFile(t, LoadOptions{}, filepath.Join(dir, "fal_01_003.json"))
		if len(errs) == 0 || n != 0 || len(alerts) != 0 {
			t.Errorf("want a decode error and nothing else; got %d record(s), errors %v, alerts [%s]", n, errs, summarize(alerts))
		}
		var de *record.DecodeError
		if len(errs) > 0 && (!errors.As(errs[0], &de) || !strings.Contains(errs[0].Error(), "fal_01_003.json:1")) {
			t.Errorf("decode error %q does not name file and line", errs[0])
		}
	})
}

// TestFalcoCorpusLayering mimics the EXPECTED.md rows that need Falco's extra
// rule files with user rule directories layered over the built-in pack:
// exceptions appended by overrides, lists replaced or appended, rules
// disabled, and user rules of their own.
func TestFalcoCorpusLayering(t *testing.T) {
	dir := corpusDir(t)
	set, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// disallow_kactivity.yaml switches off Falco's activity rules; here: every
	// built-in rule tagged audit-trail, disabled from a user file.
	var kactivity strings.Builder
	kactivity.WriteString("overrides:\n")
	for _, r := range set.Rules() {
		for _, tag := range r.Tags {
			if tag == "audit-trail" {
				kactivity.WriteString("  - {rule: " + r.ID + ", enabled: false}\n")
			}
		}
	}
	layers := map[string]string{
		// trust_nginx_container.yaml: nginx is trusted by the pod rules.
		"trust_nginx_container.yaml": `
overrides:
  - rule: privileged-container
    exceptions: [{name: trusted-images, values: [nginx]}]
  - rule: host-network-pod
    exceptions: [{name: trusted-images, values: [nginx]}]
  - rule: sensitive-host-path-mount
    exceptions: [{name: trusted-images, values: ["nginx", "docker.io/library/nginx:*"]}]
`,
		// allow_only_apache_container.yaml: the approved list is replaced.
		"allow_only_apache_container.yaml": `
lists:
  - {name: approved_registries, items: []}
  - {name: approved_repositories, items: [docker.io/library/httpd]}
`,
		// allow_nginx_container.yaml: nginx added to that list.
		"allow_nginx_container.yaml": `
lists:
  - {name: approved_registries, items: []}
  - {name: approved_repositories, items: [docker.io/library/httpd]}
  - {name: approved_repositories, append: true, items: [docker.io/library/nginx]}
`,
		"disallow_kactivity.yaml": kactivity.String(),
		// Falco's allow-list rules (Create Disallowed Namespace, Disallowed K8s
		// User) as a user's own rules with lists of their own.
		"user_allow_lists.yaml": `
lists:
  - name: allowed_namespaces
    items: [kube-system, kube-public, default]
  - name: allowed_k8s_users
    items: [minikube, minikube-user, kubelet, kops, admin, kube, kube-proxy]
rules:
  - id: namespace-outside-allowed-set
    title: Namespace outside the allowed set created
    severity: medium
    source: audit
    condition: verb == "create" && resource == "namespaces" && completed_ok && !(name in allowed_namespaces)
    output: "{{ user }} created namespace {{ name }}"
  - id: user-outside-allowed-set
    title: Request by a user outside the allowed set
    severity: medium
    source: audit
    condition: verb in all_request_verbs && completed_ok && !system_actor && !(user in allowed_k8s_users)
    output: "{{ user }} {{ verb }} {{ uri }}"
`,
		"allow_namespace_foo.yaml": `
lists:
  - {name: allowed_namespaces, append: true, items: [foo]}
`,
		"allow_user_some-user.yaml": `
lists:
  - {name: allowed_k8s_users, append: true, items: [some-user]}
`,
	}
	// userDir writes the named layers, in that order, into a rule directory.
	userDir := func(t *testing.T, names ...string) string {
		d := t.TempDir()
		for i, n := range names {
			body, ok := layers[n]
			if !ok {
				t.Fatalf("no layer %s", n)
			}
			if err := os.WriteFile(filepath.Join(d, string(rune('a'+i))+"-"+n), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	tests := []struct {
		name     string // EXPECTED.md test name
		file     string
		layers   []string
		want     map[string]int // rule -> alerts (0: must not fire)
		noMedium bool           // and nothing else at medium or above
		none     bool           // no alert at all
	}{
		{"create_privileged_trusted_pod", "create_nginx_pod_privileged.json", []string{"trust_nginx_container.yaml"},
			map[string]int{"privileged-container": 0}, true, false},
		{"create_hostnetwork_trusted_pod", "create_nginx_pod_hostnetwork.json", []string{"trust_nginx_container.yaml"},
			map[string]int{"host-network-pod": 0}, true, false},
		{"create_sensitive_mount_trusted_pod", "create_nginx_pod_sensitive_mount.json", []string{"trust_nginx_container.yaml"},
			map[string]int{"sensitive-host-path-mount": 0}, true, false},
		// the exception must cover every image: mysql:latest is not trusted
		{"trusted nginx does not excuse a 2nd untrusted container", "create_nginx_pod_privileged_2nd_container.json", []string{"trust_nginx_container.yaml"},
			map[string]int{"privileged-container": 1}, false, false},
		{"create_nohostnetwork_trusted_pod", "create_nginx_pod_nohostnetwork.json", []string{"trust_nginx_container.yaml"}, nil, true, false},
		{"create_unprivileged_trusted_pod", "create_nginx_pod_unprivileged.json", []string{"trust_nginx_container.yaml"}, nil, true, false},
		{"create_unsensitive_mount_trusted_pod", "create_nginx_pod_unsensitive_mount.json", []string{"trust_nginx_container.yaml"}, nil, true, false},
		{"create_disallowed_pod", "create_nginx_pod_unprivileged.json", []string{"allow_only_apache_container.yaml"},
			map[string]int{"image-outside-approved-registries": 1}, false, false},
		{"create_allowed_pod", "create_nginx_pod_unprivileged.json", []string{"allow_nginx_container.yaml"},
			map[string]int{"image-outside-approved-registries": 0}, true, false},
		{"create_configmap_no_private_creds", "create_configmap_no_sensitive_values.json", []string{"disallow_kactivity.yaml"}, nil, true, true},
		{"create_configmap_private_creds", "create_configmap_sensitive_values.json", []string{"disallow_kactivity.yaml"},
			map[string]int{"configmap-with-credentials": 6, "configmap-created": 0}, false, false},
		{"create_nodeport_service", "create_nginx_service_nodeport.json", []string{"disallow_kactivity.yaml"},
			map[string]int{"nodeport-service": 1, "service-created": 0}, false, false},
		{"create_nonodeport_service", "create_nginx_service_nonodeport.json", []string{"disallow_kactivity.yaml"}, nil, true, true},
		{"namespace_in_allowed_set", "minikube_creates_namespace_foo.json", []string{"user_allow_lists.yaml", "allow_namespace_foo.yaml", "disallow_kactivity.yaml"}, nil, true, true},
		{"create_namespace", "some-user_creates_namespace_foo.json", []string{"user_allow_lists.yaml", "allow_namespace_foo.yaml", "allow_user_some-user.yaml"},
			map[string]int{"namespace-created": 1, "namespace-outside-allowed-set": 0, "user-outside-allowed-set": 0}, true, false},
		{"namespace_outside_allowed_set", "some-user_creates_namespace_foo.json", []string{"user_allow_lists.yaml", "allow_user_some-user.yaml"},
			map[string]int{"namespace-outside-allowed-set": 1, "user-outside-allowed-set": 0}, false, false},
		{"user_in_allowed_set", "some-user_creates_namespace_foo.json", []string{"user_allow_lists.yaml", "allow_namespace_foo.yaml", "allow_user_some-user.yaml", "disallow_kactivity.yaml"}, nil, true, true},
		{"user_outside_allowed_set", "some-user_creates_namespace_foo.json", []string{"user_allow_lists.yaml", "allow_namespace_foo.yaml"},
			map[string]int{"user-outside-allowed-set": 1, "namespace-outside-allowed-set": 0}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{Dirs: []string{userDir(t, tc.layers...)}}
			alerts, errs, _ := evalFile(t, opts, filepath.Join(dir, tc.file))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			got := countByRule(alerts)
			for id, n := range tc.want {
				if got[id] != n {
					t.Errorf("%s fired %d times, want %d; all: [%s]", id, got[id], n, summarize(alerts))
				}
			}
			if tc.none && len(alerts) > 0 {
				t.Errorf("want no alert at all, got [%s]", summarize(alerts))
			}
			if tc.noMedium {
				for _, a := range alerts {
					if a.Severity >= SeverityMedium {
						t.Errorf("%s raised %s: %s", a.RuleID, a.Severity, a.Message)
					}
				}
			}
		})
	}
}

// TestBuiltinRulesHaveFixtures checks the built-in pack's fixture coverage:
// every rule has at least one fixture that must alert and one near miss
// that must not, and no rule fails at run time on any fixture (a runtime
// error is a silent no-match, so a near miss could pass for the wrong
// reason).
func TestBuiltinRulesHaveFixtures(t *testing.T) {
	set, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cases, err := LoadTests(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pos, neg := map[string]int{}, map[string]int{}
	for _, tc := range cases {
		switch {
		case tc.Alerts != nil && *tc.Alerts > 0, tc.Alerts == nil && tc.Match:
			pos[tc.Rule]++
		default:
			neg[tc.Rule]++
		}
	}
	var ids []string
	for _, r := range set.Rules() {
		// Object rules are posture checks: their fixtures are the table
		// tests of rules/posture, which judge them against an inventory.
		if r.Source != string(record.SourceObject) {
			ids = append(ids, r.ID)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if pos[id] == 0 || neg[id] == 0 {
			t.Errorf("rule %s: %d matching and %d near-miss fixture(s); want at least one of each", id, pos[id], neg[id])
		}
	}
	eng, err := New(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		recs, err := FixtureRecords(&cases[i])
		if err != nil {
			t.Fatalf("%s/%s: %v", cases[i].Rule, cases[i].Name, err)
		}
		for _, r := range recs {
			eng.Eval(r)
		}
	}
	for id, st := range eng.Stats() {
		if n := st.Errors.Load(); n > 0 {
			t.Errorf("rule %s failed at run time on %d fixture record(s)", id, n)
		}
	}
}

// TestBuiltinExceptions checks that the exceptions the built-in rules offer
// work when a user appends values to them from an override: each record
// alerts with the pack alone and is suppressed (and counted) with the
// override layered on top.
func TestBuiltinExceptions(t *testing.T) {
	rec := func(t *testing.T, js string) *record.Record {
		t.Helper()
		full := `{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"exc-1","stage":"ResponseComplete","stageTimestamp":"2026-01-01T00:00:00.000000Z",` + js + `}`
		recs, errs := record.DecodeAll([]byte(full), "exception", record.DecodeOptions{Cluster: record.Cluster{Name: "c"}})
		if len(errs) > 0 || len(recs) != 1 {
			t.Fatalf("fixture: %v", errs)
		}
		return recs[0]
	}
	const podCreate = `"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"agents","name":"a"},"requestObject":{"kind":"Pod","spec":`
	tests := []struct {
		rule, exception, value, record string
	}{
		{"privileged-container", "trusted-images", "ghcr.io/acme/*",
			podCreate + `{"containers":[{"name":"a","image":"ghcr.io/acme/agent:1.4","securityContext":{"privileged":true}}]}}`},
		{"privileged-container", "trusted-namespaces", "agents",
			podCreate + `{"containers":[{"name":"a","image":"ghcr.io/acme/agent:1.4","securityContext":{"privileged":true}}]}}`},
		{"sensitive-host-path-mount", "trusted-paths", "/var/lib/kubelet/*",
			podCreate + `{"volumes":[{"name":"v","hostPath":{"path":"/var/lib/kubelet/pods"}}],"containers":[{"name":"a","image":"ghcr.io/acme/agent:1.4"}]}}`},
		{"dangerous-capabilities-added", "allowed-capabilities", "NET_ADMIN",
			podCreate + `{"containers":[{"name":"a","image":"ghcr.io/acme/agent:1.4","securityContext":{"capabilities":{"add":["NET_ADMIN","NET_BIND_SERVICE"]}}}]}}`},
		{"unsafe-sysctls", "allowed-sysctls", "net.core.somaxconn",
			podCreate + `{"securityContext":{"sysctls":[{"name":"net.core.somaxconn","value":"1024"}]},"containers":[{"name":"a","image":"ghcr.io/acme/agent:1.4"}]}}`},
		{"image-outside-approved-registries", "trusted-images", "harbor.acme.internal/*",
			podCreate + `{"containers":[{"name":"a","image":"harbor.acme.internal/team/app:2"}]}}`},
		{"image-mutable-tag", "trusted-images", "busybox",
			podCreate + `{"containers":[{"name":"a","image":"busybox"}]}}`},
		{"pod-created-in-system-namespace", "trusted-users", "system:serviceaccount:flux-system:*",
			`"verb":"create","user":{"username":"system:serviceaccount:flux-system:kustomize-controller"},"objectRef":{"resource":"pods","namespace":"kube-system","name":"x"},"requestObject":{"kind":"Pod","spec":{"containers":[{"name":"a","image":"registry.k8s.io/pause:3.10"}]}}`},
		{"pod-exec", "trusted-namespaces", "dev",
			`"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","subresource":"exec","namespace":"dev","name":"p"}`},
		{"nodeport-service", "trusted-services", "ingress/*",
			`"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"services","namespace":"ingress","name":"nginx"},"requestObject":{"kind":"Service","spec":{"type":"NodePort"}}`},
		{"serviceaccount-token-requested", "trusted-serviceaccounts", "ci/deployer",
			`"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"ci","name":"deployer"}`},
		{"configmap-with-credentials", "trusted-configmaps", "grafana/grafana-ini",
			`"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"grafana","name":"grafana-ini"},"requestObject":{"kind":"ConfigMap","data":{"grafana.ini":"[security]\nadmin_password = changeme\n"}}`},
		{"mutating-webhook-changed", "trusted-webhooks", "vault-agent-injector-cfg",
			`"verb":"create","user":{"username":"alice"},"objectRef":{"resource":"mutatingwebhookconfigurations","name":"vault-agent-injector-cfg"}`},
		{"anonymous-request-allowed", "allowed-paths", "/metrics",
			`"verb":"get","user":{"username":"system:anonymous"},"requestURI":"/metrics","annotations":{"authorization.k8s.io/decision":"allow"}`},
		{"privileged-impersonation", "trusted-impersonators", "system:serviceaccount:cattle-system:*",
			`"verb":"get","user":{"username":"system:serviceaccount:cattle-system:rancher"},"impersonatedUser":{"username":"bob","groups":["system:masters"]},"requestURI":"/api/v1/pods","objectRef":{"resource":"pods"}`},
	}
	for _, tc := range tests {
		t.Run(tc.rule+"/"+tc.exception, func(t *testing.T) {
			count := func(opts LoadOptions) (int, uint64) {
				eng, err := New(opts)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, a := range eng.Eval(rec(t, tc.record)) {
					if a.RuleID == tc.rule {
						n++
					}
				}
				st := eng.Stats()[tc.rule]
				if e := st.Errors.Load(); e > 0 {
					t.Errorf("%d runtime errors", e)
				}
				return n, st.Suppressed.Load()
			}
			if n, _ := count(LoadOptions{}); n != 1 {
				t.Fatalf("without the exception: %d alerts, want 1", n)
			}
			dir := t.TempDir()
			override := "overrides:\n  - rule: " + tc.rule + "\n    exceptions:\n      - name: " + tc.exception + "\n        values: [\"" + tc.value + "\"]\n"
			if err := os.WriteFile(filepath.Join(dir, "exceptions.yaml"), []byte(override), 0o644); err != nil {
				t.Fatal(err)
			}
			set, err := Load(LoadOptions{Dirs: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range set.Rules() {
				if r.ID != tc.rule {
					continue
				}
				found := false
				for _, e := range r.Exceptions {
					found = found || e.Name == tc.exception
				}
				if !found {
					t.Fatalf("rule %s has no exception %s to append to (the override added a new one)", tc.rule, tc.exception)
				}
			}
			if n, sup := count(LoadOptions{Dirs: []string{dir}}); n != 0 || sup != 1 {
				t.Errorf("with %s=%s: %d alerts (want 0), %d suppressed (want 1)", tc.exception, tc.value, n, sup)
			}
		})
	}
}

// TestApprovedRegistries checks the private-registry policy lists as a user
// would set them: registries (globs) in approved_registries, path entries
// there approving the path and below only, repository globs in
// approved_repositories.
func TestApprovedRegistries(t *testing.T) {
	dir := t.TempDir()
	policy := `
lists:
  - name: approved_registries
    items: [registry.acme.internal, "*.acme.example", ghcr.io/acme]
  - name: approved_repositories
    items: [docker.io/library/busybox, "quay.io/acme-team/*"]
`
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := New(LoadOptions{Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		image string
		want  bool
	}{
		{"registry.acme.internal/team/app:1.2", false},
		{"eu.acme.example/app:1", false},
		{"ghcr.io/acme/app:1", false},
		{"ghcr.io/acme/tools/kit:1", false},
		{"busybox:1.36", false},
		{"quay.io/acme-team/api:3", false},
		{"ghcr.io/acme-evil/app:1", true},
		{"evil.example/x.acme.example:1", true},
		{"registry.acme.internal.evil.example/app:1", true},
		{"nginx:1.27", true},
		{"quay.io/acme-team-evil/api:3", true},
		{"registry.k8s.io/pause:3.10", true},
	} {
		js := fmt.Sprintf(`{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"img-%d","stage":"ResponseComplete","stageTimestamp":"2026-01-01T00:00:00.000000Z","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"default","name":"p%d"},"requestObject":{"kind":"Pod","spec":{"containers":[{"name":"c","image":%q}]}}}`, i, i, tc.image)
		recs, errs := record.DecodeAll([]byte(js), "img", record.DecodeOptions{})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		got := false
		for _, a := range eng.Eval(recs[0]) {
			got = got || a.RuleID == "image-outside-approved-registries"
		}
		if got != tc.want {
			t.Errorf("%s: alert %v, want %v", tc.image, got, tc.want)
		}
	}
	if n := eng.Stats()["image-outside-approved-registries"].Errors.Load(); n > 0 {
		t.Errorf("%d runtime errors", n)
	}
}

// TestBuiltinAuditRulesArePrefiltered checks that the audit rules of
// 10-workloads.yaml and 20-access.yaml name the verbs and resources they can
// match (== / in through && and ||), the network rules that read
// from_public the source class, and that no built-in audit rule is left for
// every record: each is keyed on some field.
func TestBuiltinAuditRulesArePrefiltered(t *testing.T) {
	set, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	classKey := slices.Index(sources[record.SourceAudit].keys[:], "source.class")
	for _, r := range set.rules {
		if r.source != record.SourceAudit {
			continue
		}
		if strings.Contains(r.Condition, "from_public") && (!r.keyed[classKey] || !slices.Equal(r.keys[classKey], []string{"public"})) {
			t.Errorf("%s: reads from_public but the prefilter keys it on source.class %v (keyed %v)", r.ID, r.keys[classKey], r.keyed[classKey])
		}
		base := filepath.Base(r.file)
		if (strings.HasPrefix(base, "10-") || strings.HasPrefix(base, "20-")) && !r.keyed[0] && !r.keyed[1] {
			t.Errorf("%s: rule %s constrains neither verb nor resource", base, r.ID)
		}
		if !slices.Contains(r.keyed[:], true) {
			t.Errorf("%s: rule %s constrains no key field: it is evaluated on every audit record", base, r.ID)
		}
	}
}
