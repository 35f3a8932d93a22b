package objects

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubesift/kubesift/record"
)

func TestListersMatchKinds(t *testing.T) {
	if got, want := slices.Sorted(maps.Keys(listers)), slices.Sorted(maps.Keys(kinds)); !slices.Equal(got, want) {
		t.Fatalf("listers %v, kinds %v", got, want)
	}
	cs := fake.NewClientset()
	servedVAP(cs)
	l, err := List(context.Background(), cs, ListOptions{Cluster: testCluster})
	if err != nil || len(l.Records) != 0 || len(l.Unserved) != 0 {
		t.Fatalf("List of an empty cluster: %+v, %v", l, err)
	}
}

// TestListBuildsWhatTheSourcePublishes: for the same objects, List returns
// records equal to those the source publishes (key, id, api version, body
// with managedFields dropped and Node heartbeats cleared), so a scan judges
// what the continuous path judges.
func TestListBuildsWhatTheSourcePublishes(t *testing.T) {
	cs := fake.NewClientset()
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u-n1", ResourceVersion: "7"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: "Ready", Status: "True",
			LastHeartbeatTime: metav1.NewTime(time.Unix(1700000000, 0))}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "u-web", ResourceVersion: "3"}}
	for _, o := range []runtime.Object{node, ns, pod("web", "front", "u-front", "10"), pod("web", "back", "u-back", "11")} {
		if err := cs.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	kinds := []string{"Pod", "Node", "Namespace"}
	l, err := List(ctx, cs, ListOptions{Kinds: kinds, Cluster: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	pub := &memPublisher{}
	r := start(t, testConfig(kinds...), cs, pub)
	r.stop()
	published := map[string]*record.Record{}
	for _, rec := range pub.records() {
		published[rec.Key] = rec
	}
	if len(l.Records) != 4 || len(published) != 4 {
		t.Fatalf("List %d records, source published %d; want 4 each", len(l.Records), len(published))
	}
	for _, got := range l.Records {
		want := published[got.Key]
		switch {
		case want == nil:
			t.Errorf("%s: listed, never published", got.Key)
		case got.ID != want.ID || got.APIVersion != want.APIVersion || got.Source != want.Source ||
			got.Cluster != want.Cluster || string(got.Object) != string(want.Object):
			t.Errorf("%s: listed\n%s %s %s\npublished\n%s %s %s", got.Key, got.ID, got.APIVersion, got.Object,
				want.ID, want.APIVersion, want.Object)
		}
	}
}

// TestListPages: List follows Continue tokens until the last page and
// asks for the configured Limit on every request.
func TestListPages(t *testing.T) {
	tests := []struct {
		name          string
		pageSize      int64
		pods          int
		wantRequests  int
		wantLimitSent int64
	}{
		{"default page size, one page", 0, 3, 1, DefaultPageSize},
		{"exact pages", 2, 4, 2, 2},
		{"last page short", 2, 5, 3, 2},
		{"page size 1", 1, 3, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var all []corev1.Pod
			for i := range tc.pods {
				all = append(all, *pod("web", "p"+strconv.Itoa(i), "u"+strconv.Itoa(i), "1"))
			}
			requests := 0
			cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				requests++
				opts := a.(k8stesting.ListActionImpl).ListOptions
				if opts.Limit != tc.wantLimitSent {
					t.Errorf("request %d: limit %d, want %d", requests, opts.Limit, tc.wantLimitSent)
				}
				from, _ := strconv.Atoi(opts.Continue)
				to := min(from+int(opts.Limit), len(all))
				page := &corev1.PodList{Items: all[from:to]}
				if to < len(all) {
					page.Continue = strconv.Itoa(to)
				}
				return true, page, nil
			})
			l, err := List(context.Background(), cs, ListOptions{Kinds: []string{"Pod"}, Cluster: testCluster, PageSize: tc.pageSize})
			if err != nil {
				t.Fatal(err)
			}
			if requests != tc.wantRequests || len(l.Records) != tc.pods {
				t.Errorf("%d requests, %d records; want %d, %d", requests, len(l.Records), tc.wantRequests, tc.pods)
			}
		})
	}
}

// TestListSkipsWhatItCannotUse: an optional kind the server does not serve
// is skipped and named, as the source skips it; an object without a uid is
// rejected with its key and costs only itself; an unknown kind or a failed
// request fails the listing.
func TestListSkipsWhatItCannotUse(t *testing.T) {
	cs := fake.NewClientset(pod("web", "ok", "u-ok", "1"), pod("web", "no-uid", "", "1"))
	l, err := List(context.Background(), cs, ListOptions{Kinds: []string{"Pod", "ValidatingAdmissionPolicy"}, Cluster: testCluster})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Records) != 1 || l.Records[0].Key != "unit/Pod/web/ok" {
		t.Errorf("records %v, want only unit/Pod/web/ok", l.Records)
	}
	if !slices.Equal(l.Unserved, []string{"ValidatingAdmissionPolicy"}) {
		t.Errorf("unserved %v", l.Unserved)
	}
	if len(l.Rejected) != 1 || !containsAll(l.Rejected[0].Error(), "Pod/web/no-uid", "metadata.uid") {
		t.Errorf("rejected %v, want one naming Pod/web/no-uid and metadata.uid", l.Rejected)
	}

	if _, err := List(context.Background(), cs, ListOptions{Kinds: []string{"Secret"}}); err == nil {
		t.Error("List of Secrets: no error")
	}
	failing := fake.NewClientset()
	failing.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, context.DeadlineExceeded
	})
	if _, err := List(context.Background(), failing, ListOptions{Kinds: []string{"Namespace"}}); err == nil {
		t.Error("a failed list request: no error")
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestIntegrationListPagesOnRealAPIServer lists ClusterRoles and Namespaces
// from the test ground's kube-apiserver in pages of 5: more than one request
// per kind, and every built-in ClusterRole (which nothing deletes) listed
// once, managedFields dropped, apiVersion and kind set.
func TestIntegrationListPagesOnRealAPIServer(t *testing.T) {
	cfg, cs := realKube(t)
	var requests atomic.Int64
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/clusterroles") {
				requests.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
	paged, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	builtin, err := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/bootstrapping=rbac-defaults"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := List(ctx, paged, ListOptions{Kinds: []string{"ClusterRole", "Namespace"}, Cluster: testCluster, PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(builtin.Items)/5 + 1); requests.Load() < want {
		t.Errorf("%d clusterroles requests, want at least %d for %d built-in roles in pages of 5", requests.Load(), want, len(builtin.Items))
	}
	listed := map[string]int{}
	for _, r := range l.Records {
		listed[r.Key]++
		var body map[string]any
		if err := json.Unmarshal(r.Object, &body); err != nil {
			t.Fatal(err)
		}
		md, _ := body["metadata"].(map[string]any)
		if body["kind"] == nil || body["apiVersion"] == nil || md["managedFields"] != nil {
			t.Errorf("%s: kind %v, apiVersion %v, managedFields %v", r.Key, body["kind"], body["apiVersion"], md["managedFields"] != nil)
		}
	}
	for _, cr := range builtin.Items {
		if k := record.KeyObjectRef(testCluster, "ClusterRole", "", cr.Name); listed[k] != 1 {
			t.Errorf("%s listed %d times, want once", k, listed[k])
		}
	}
	if k := record.KeyObjectRef(testCluster, "Namespace", "", "kube-system"); listed[k] != 1 {
		t.Errorf("%s listed %d times, want once", k, listed[k])
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
