package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

func TestParseSince(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90d", 90 * 24 * time.Hour, false}, {"1d", 24 * time.Hour, false}, {"36h", 36 * time.Hour, false},
		{"0d", 0, true}, {"-1d", 0, true}, {"xd", 0, true}, {"1.5d", 0, true}, {"-3h", 0, true}, {"soon", 0, true}, {"", 0, true},
	}
	for _, tc := range cases {
		got, err := parseSince(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseSince(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// usageConfig writes a configuration naming a usage index unique to the
// test on the ground's Elasticsearch, creates the index with its mapping
// and returns the config file and a store on it.
func usageConfig(t *testing.T) (string, *elasticsearch.UsageStore) {
	t.Helper()
	u := testenv.ElasticsearchURL(t)
	index := fmt.Sprintf("kstest-usage-cli-%d", time.Now().UnixNano())
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{u}
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"mappings": elasticsearch.UsageMappings()})
	if status, resp, _, err := elasticsearch.Call(context.Background(), es, http.MethodPut, "/"+index, body); err != nil || status != http.StatusOK {
		t.Fatalf("create %s: %d %s %v", index, status, resp, err)
	}
	t.Cleanup(func() { elasticsearch.Call(context.Background(), es, http.MethodDelete, "/"+index, nil) })
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("sink:\n  elasticsearch:\n    addresses: [%q]\n    findings: {usage_index: %s}\n", u, index)), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, elasticsearch.NewUsageStore(es, index, cfg.Streams.Audit)
}

// TestRBACUsageCLI: on a usage index of the real Elasticsearch, `rbac
// usage` lists each binding's last use and the pairs of the period in
// every format, -o yaml prints roles that decode as RBAC objects, and
// --cluster and --since narrow what is listed.
func TestRBACUsageCLI(t *testing.T) {
	file, store := usageConfig(t)
	now := time.Now().UTC().Truncate(time.Second)
	ci := rbacusage.Grant{Binding: rbacusage.Ref{Kind: "ClusterRoleBinding", Name: "ci"}, Role: rbacusage.Ref{Kind: "ClusterRole", Name: "edit"},
		Subject: rbacusage.Subject{Kind: "ServiceAccount", Namespace: "ci", Name: "deployer"}}
	web := rbacusage.Grant{Binding: rbacusage.Ref{Kind: "RoleBinding", Namespace: "shop", Name: "web"}, Role: rbacusage.Ref{Kind: "Role", Namespace: "shop", Name: "reader"},
		Subject: rbacusage.Subject{Kind: "User", Name: "alice"}}
	pu := func(verb, res string, ago time.Duration) rbacusage.PairUse {
		return rbacusage.PairUse{Pair: rbacusage.Pair{Verb: verb, Resource: res}, LastUsed: now.Add(-ago)}
	}
	day := 24 * time.Hour
	ctx := context.Background()
	if err := store.Save(ctx, "prod", rbacusage.Snapshot{WatchStart: now.Add(-100 * day), ReadTo: now, Usages: []rbacusage.Usage{
		{Grant: ci, LastUsed: now.Add(-time.Hour), Pairs: []rbacusage.PairUse{pu("get", "pods", time.Hour), pu("delete", "pods", 40*day)}},
		{Grant: web, LastUsed: now.Add(-50 * day), Pairs: []rbacusage.PairUse{pu("list", "configmaps", 50*day)}},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, "dev", rbacusage.Snapshot{WatchStart: now, Usages: []rbacusage.Usage{{Grant: ci, LastUsed: now, Pairs: []rbacusage.PairUse{pu("get", "nodes", 0)}}}}); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, "", append([]string{"rbac", "usage", "-c", file}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return out
	}
	var all []rbacusage.BindingReport
	if err := json.Unmarshal([]byte(run("-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range all {
		got[r.Cluster+" "+r.Binding.String()] = strings.Join(r.Used, ",")
	}
	want := map[string]string{"prod ClusterRoleBinding ci": "delete pods,get pods", "prod RoleBinding shop/web": "list configmaps", "dev ClusterRoleBinding ci": "get nodes"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("90d: %v\nwant %v", got, want)
	}
	var prod []rbacusage.BindingReport
	if err := json.Unmarshal([]byte(run("--cluster", "prod", "--since", "30d", "-o", "json")), &prod); err != nil {
		t.Fatal(err)
	}
	// Least recently used first; the web binding used nothing in 30 days.
	if len(prod) != 2 || prod[0].Binding.Name != "web" || len(prod[0].Used) != 0 || prod[0].Suggested != nil ||
		prod[1].Binding.Name != "ci" || strings.Join(prod[1].Used, ",") != "get pods" || !prod[1].LastUsed.Equal(now.Add(-time.Hour)) {
		t.Errorf("prod, 30d: %+v", prod)
	}
	table := run("--cluster", "prod", "--since", "30d")
	for _, s := range []string{"ClusterRoleBinding ci", "get pods", "ClusterRole edit-used", "(nothing in the period)"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	docs := strings.Split(run("--cluster", "prod", "--since", "30d", "-o", "yaml"), "---\n")
	var roles []rbacv1.ClusterRole
	for _, d := range docs {
		if strings.TrimSpace(d) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("%v:\n%s", err, d)
		}
		b, _ := json.Marshal(m)
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var r rbacv1.ClusterRole
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v:\n%s", err, d)
		}
		roles = append(roles, r)
	}
	if len(roles) != 1 || roles[0].Kind != "ClusterRole" || roles[0].Name != "edit-used" || len(roles[0].Rules) != 1 ||
		fmt.Sprint(roles[0].Rules[0].Verbs, roles[0].Rules[0].Resources) != "[get] [pods]" {
		t.Errorf("suggested roles: %+v", roles)
	}
	if _, errs, code := runCLI(t, "", "rbac", "usage", "-c", file, "--since", "soon"); code != exitUsage || !strings.Contains(errs, "--since") {
		t.Errorf("--since soon: exit %d, %s", code, errs)
	}
}
