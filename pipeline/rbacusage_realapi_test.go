package pipeline

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// feedAudit tails the ground kube-apiserver's audit log from its current
// end and indexes, into the test's audit data stream under the test's
// cluster name, every record made by a user for which keep holds — what
// the collector and the record processor do, cut down to the users of
// one test, so that the shared ground's other traffic stays out of its
// cluster. It runs until the test ends.
func (g *postureGround) feedAudit(t *testing.T, keep func(user string) bool) {
	t.Helper()
	path := testenv.KubeAPIServer(t).AuditLog
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	w, err := elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: g.client, Config: g.es})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ecs.New(g.es)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		f.Close()
		_ = w.Close(context.Background())
	})
	go func() {
		defer close(done)
		var partial []byte
		tick := time.NewTicker(50 * time.Millisecond) // a tail polls its file
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			chunk, err := io.ReadAll(f)
			if err != nil {
				t.Errorf("read %s: %v", path, err)
				return
			}
			// Rotated (the path names another file): what the old file
			// still held is read above; the new one is read from its start.
			if cur, err := os.Stat(path); err == nil {
				if old, err := f.Stat(); err == nil && !os.SameFile(cur, old) {
					f.Close()
					if f, err = os.Open(path); err != nil {
						t.Errorf("reopen %s: %v", path, err)
						return
					}
				}
			}
			data := append(partial, chunk...)
			end := bytes.LastIndexByte(data, '\n')
			if end < 0 {
				partial = data
				continue
			}
			partial = slices.Clone(data[end+1:])
			recs, _ := record.DecodeAll(data[:end+1], "audit.log", record.DecodeOptions{Cluster: record.Cluster{Name: g.cluster}})
			for _, r := range recs {
				if r.Audit == nil || !keep(r.Audit.User.Username) {
					continue
				}
				d, err := b.Record(r)
				if err != nil {
					t.Errorf("%s: %v", r.ID, err)
					continue
				}
				if err := w.Add(ctx, d, func(res sink.Result) {
					if res.Status == sink.Rejected {
						t.Errorf("audit document %s rejected: %s", d.ID, res.Reason)
					}
				}); err != nil {
					return
				}
			}
		}
	}()
}

// saClient is a client of the ground kube-apiserver authenticated as the
// service account ns/name, with a token from the TokenRequest API.
func (g *postureGround) saClient(t *testing.T, ns, name string) kubernetes.Interface {
	t.Helper()
	tr, err := g.kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := testenv.KubeAPIServer(t)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: k.URL, BearerToken: tr.Status.Token, UserAgent: "kubesift-rbac-usage-test",
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestRBACUsageOnRealGround (takes the shared lock of the test ground):
// two service accounts make requests through their RoleBindings of one
// broad Role on the real kube-apiserver; their audit records reach the
// audit data stream; the posture consumer, with the usage window
// shortened to 15 s, opens posture-rbac-unused-binding on the binding
// idle for the window and resolves it when its account uses it again; the
// role `rbac usage` suggests for the busy binding, applied to the
// kube-apiserver, allows every request of the window and nothing else the
// broad role allowed (SubjectAccessReviews).
func TestRBACUsageOnRealGround(t *testing.T) {
	g := newPostureGround(t)
	g.es.Findings.UsageIndex = "kstest-usage-" + strings.TrimPrefix(g.cluster, "it-posture-")
	if err := elasticsearch.Setup(context.Background(), g.client, g.es, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.ESDo(g.es.Addresses[0], http.MethodDelete, "/"+g.es.Findings.UsageIndex, "")
		testenv.ESDo(g.es.Addresses[0], http.MethodDelete, "/_index_template/"+elasticsearch.IndexTemplateName(g.es.Findings.UsageIndex), "")
	})
	ctx := context.Background()
	nsName := "kubesift-rbac-" + randHex()
	if _, err := g.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.kube.CoreV1().Namespaces().Delete(context.Background(), nsName, metav1.DeleteOptions{}) })
	wide := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "wide", Namespace: nsName}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "secrets"}, Verbs: []string{"get", "list", "create", "delete"}}}}
	if _, err := g.kube.RbacV1().Roles(nsName).Create(ctx, wide, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bindings := map[string]string{}
	for _, sa := range []string{"worker", "idle"} {
		if _, err := g.kube.CoreV1().ServiceAccounts(nsName).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb, err := g.kube.RbacV1().RoleBindings(nsName).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa + "-wide"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "wide"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: nsName}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bindings[sa] = string(rb.UID)
	}
	g.feedAudit(t, func(user string) bool { return strings.HasPrefix(user, "system:serviceaccount:"+nsName+":") })
	g.startCollectorKinds(t, "Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
	const window = 15 * time.Second
	reg := prometheus.NewRegistry()
	store := elasticsearch.NewUsageStore(g.client, g.es.Findings.UsageIndex, g.es.Streams.Audit)
	g.startPostureWith(t, reg, func(o *PostureOptions) {
		o.Usage = store
		o.Processor.Posture.RBACUsage = config.ProcessorRBACUsageConfig{Enabled: true, Window: window, Interval: 500 * time.Millisecond, Lookback: time.Minute}
	})
	windowStart := time.Now()

	worker, idle := g.saClient(t, nsName, "worker"), g.saClient(t, nsName, "idle")
	if _, err := worker.CoreV1().Pods(nsName).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.CoreV1().ConfigMaps(nsName).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.CoreV1().ConfigMaps(nsName).Get(ctx, "cm", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.CoreV1().Pods(nsName).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}

	const unused = "posture-rbac-unused-binding"
	testenv.WaitFor(t, "the idle binding opens as unused", 2*window+60*time.Second, func() bool { return g.state(unused, bindings["idle"]) == "open" })
	start := time.Now()
	if _, err := idle.CoreV1().Pods(nsName).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "a use resolves it", 30*time.Second, func() bool { return g.state(unused, bindings["idle"]) == "resolved" })
	t.Logf("use to resolved finding: %v", time.Since(start).Round(time.Millisecond))
	if n := testenv.Metric(t, reg, "kubesift_rbac_usage_reasons_total", "result", "invalid"); n != 0 {
		t.Errorf("%v authorization reasons of the real kube-apiserver did not parse", n)
	}

	// The suggested role of the worker's binding.
	var snap rbacusage.Snapshot
	var report *rbacusage.BindingReport
	testenv.WaitFor(t, "the worker's three pairs stored", 30*time.Second, func() bool {
		var err error
		if snap, err = store.Load(ctx, g.cluster); err != nil {
			t.Fatal(err)
		}
		for _, r := range rbacusage.Report(g.cluster, snap, windowStart.Add(-time.Minute)) {
			if r.Binding.Name == "worker-wide" && len(r.Used) == 3 {
				report = &r
			}
		}
		return report != nil
	})
	if want := []string{"create configmaps", "get configmaps", "list pods"}; !slices.Equal(report.Used, want) {
		t.Fatalf("used %v, want %v", report.Used, want)
	}
	s := report.Suggested
	if s == nil || s.Kind != "Role" || s.Namespace != nsName {
		t.Fatalf("suggested %+v", s)
	}
	if _, err := g.kube.RbacV1().Roles(nsName).Create(ctx, s.Object().(*rbacv1.Role), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	checker := "kubesift-rbac-check-" + randHex()
	if _, err := g.kube.RbacV1().RoleBindings(nsName).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "check"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: s.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: checker}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	allowed := func(verb, resource string) bool {
		sar, err := g.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: checker, ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: nsName, Verb: verb, Resource: resource}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	// The binding is created after the role, and RBAC reads both from its
	// informers: wait until the first used pair is allowed.
	testenv.WaitFor(t, "the suggested role takes effect", 30*time.Second, func() bool { return allowed("list", "pods") })
	for _, res := range wide.Rules[0].Resources {
		for _, verb := range wide.Rules[0].Verbs {
			want := slices.Contains(report.Used, verb+" "+res)
			if got := allowed(verb, res); got != want {
				t.Errorf("suggested role: %s %s allowed=%v, want %v", verb, res, got, want)
			}
		}
	}
}
