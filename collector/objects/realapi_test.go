package objects

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// rbacFile is the objects source's RBAC as deployed (a kustomize component).
const rbacFile = "../../deployments/kubernetes/components/objects/rbac.yaml"

func loadRBAC(t testing.TB) []runtime.Object { return testenv.DecodeObjects(t, rbacFile) }

// TestRBACIsExactlyListWatchOfTheKinds: the ClusterRole grants list and
// watch on every collected kind's resource and nothing else; the Role only
// the objects leader Lease.
func TestRBACIsExactlyListWatchOfTheKinds(t *testing.T) {
	type grant struct{ group, resource, verb string }
	want := map[grant]bool{}
	for _, k := range kinds {
		want[grant{k.group, k.resource, "list"}] = true
		want[grant{k.group, k.resource, "watch"}] = true
	}
	got := map[grant]bool{}
	for _, o := range loadRBAC(t) {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			for _, r := range o.Rules {
				if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
					t.Errorf("unexpected rule %+v", r)
				}
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							got[grant{g, res, v}] = true
						}
					}
				}
			}
		case *rbacv1.Role:
			lease := config.DefaultObjectsConfig().LeaderElection.LeaseName
			for _, r := range o.Rules {
				ok := slices.Equal(r.Resources, []string{"leases"}) &&
					(slices.Equal(r.Verbs, []string{"create"}) && len(r.ResourceNames) == 0 ||
						slices.Equal(r.Verbs, []string{"get", "update"}) && slices.Equal(r.ResourceNames, []string{lease}))
				if !ok {
					t.Errorf("Role grants %+v", r)
				}
			}
		}
	}
	for g := range got {
		if !want[g] {
			t.Errorf("ClusterRole grants %+v, which the source does not need", g)
		}
	}
	for g := range want {
		if !got[g] {
			t.Errorf("ClusterRole lacks %+v", g)
		}
	}
}

func randSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// realKube returns an admin rest.Config and client for the test ground.
func realKube(t testing.TB) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	cfg := &rest.Config{Host: k.URL, BearerToken: k.AdminToken, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		QPS: 100, Burst: 200, Timeout: 30 * time.Second}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cs
}

// applyRBAC creates a namespace and the RBAC file's objects for its
// ServiceAccount "kubesift-collector" (cluster-scoped names suffixed, so
// parallel runs do not collide); it returns the namespace and the
// ServiceAccount's user name. Everything is removed when the test ends.
func applyRBAC(t testing.TB, cs kubernetes.Interface) (ns, user string) {
	t.Helper()
	ctx := context.Background()
	ns = "kubesift-obj-" + randSuffix()
	must := func(what string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubesift-collector"}}, metav1.CreateOptions{})
	must("service account", err)
	for _, o := range loadRBAC(t) {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			o.Name += "-" + ns
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		case *rbacv1.ClusterRoleBinding:
			o.Name += "-" + ns
			o.RoleRef.Name += "-" + ns
			o.Subjects[0].Namespace = ns
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() {
				_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
			})
		case *rbacv1.Role:
			o.Namespace = ns
			_, err = cs.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = ns
			o.Subjects[0].Namespace = ns
			_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T in %s", o, rbacFile)
		}
		must("apply", err)
	}
	return ns, "system:serviceaccount:" + ns + ":kubesift-collector"
}

// TestIntegrationRBACSubjectAccessReviews asks the real kube-apiserver what
// the objects source's ServiceAccount may do: list and watch every
// collected kind, its own Lease, and nothing on Secrets or ConfigMaps.
func TestIntegrationRBACSubjectAccessReviews(t *testing.T) {
	_, admin := realKube(t)
	ns, user := applyRBAC(t, admin)
	lease := config.DefaultObjectsConfig().LeaderElection.LeaseName
	type review struct {
		verb, group, resource, namespace, name string
		allowed                                bool
	}
	var reviews []review
	for _, k := range kinds {
		for _, v := range []string{"list", "watch"} {
			reviews = append(reviews, review{v, k.group, k.resource, "", "", true})
		}
		if k.namespaced {
			reviews = append(reviews, review{"watch", k.group, k.resource, "kube-system", "", true})
		}
		reviews = append(reviews, review{"get", k.group, k.resource, "kube-system", "x", false},
			review{"update", k.group, k.resource, "kube-system", "x", false})
	}
	reviews = append(reviews,
		review{"get", "", "secrets", ns, "s", false},
		review{"list", "", "secrets", "", "", false},
		review{"watch", "", "secrets", "", "", false},
		review{"watch", "", "secrets", "kube-system", "", false},
		review{"list", "", "configmaps", "", "", false},
		review{"list", "", "events", "", "", false},
		review{"create", "coordination.k8s.io", "leases", ns, "", true},
		review{"update", "coordination.k8s.io", "leases", ns, lease, true},
		review{"update", "coordination.k8s.io", "leases", ns, "kubesift-events-leader", false},
		review{"update", "coordination.k8s.io", "leases", "kube-system", lease, false},
		review{"impersonate", "", "users", "", "", false},
	)
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	ctx := context.Background()
	// RBAC objects reach the authorizer's cache shortly after they are
	// created: wait for the first grant before judging.
	testenv.WaitForNil(t, "the RBAC to take effect", 10*time.Second, func() error {
		return sarAllowed(ctx, admin, user, groups, "list", "", "pods", "", "", true)
	})
	for _, r := range reviews {
		if err := sarAllowed(ctx, admin, user, groups, r.verb, r.group, r.resource, r.namespace, r.name, r.allowed); err != nil {
			t.Error(err)
		}
	}
}

func sarAllowed(ctx context.Context, cs kubernetes.Interface, user string, groups []string, verb, group, resource, ns, name string, want bool) error {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: ns, Name: name},
	}}
	res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if res.Status.Allowed != want {
		return errors.New(verb + " " + group + "/" + resource + " ns=" + ns + " name=" + name + ": allowed=" +
			map[bool]string{true: "true", false: "false"}[res.Status.Allowed] + " (" + res.Status.Reason + ")")
	}
	return nil
}

// realObjectsTopic creates a compacted objects topic and a dead-letter topic
// on the test ground's broker and returns a publisher on them.
func realObjectsTopic(t testing.TB) (*publish.Publisher, string, string) {
	t.Helper()
	testenv.SharedLock(t)
	broker := testenv.KafkaBrokers(t)[0]
	prefix := "it-objects-" + randSuffix()
	k := config.Default().Kafka
	k.Brokers = []string{broker}
	k.Topics = config.TopicsConfig{Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects",
		Alerts: prefix + ".alerts", DLQ: prefix + ".dlq"}
	testenv.CreateTopicConfigs(t, broker,
		kafka.TopicConfig{Topic: k.Topics.Objects, NumPartitions: 2,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}},
		kafka.TopicConfig{Topic: k.Topics.DLQ, NumPartitions: 1})
	p := config.Default().Publish
	p.Spool.Dir = t.TempDir()
	pub, err := publish.New(publish.Options{Kafka: k, Publish: p, Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = pub.Close(ctx)
	})
	return pub, broker, k.Topics.Objects
}

// TestIntegrationObjectsThroughKafka runs the source as the RBAC file's
// ServiceAccount (impersonated) against the real kube-apiserver, with the
// real publisher into a compacted topic of the real Kafka: objects of
// several kinds are created, updated and deleted and read back from Kafka,
// records and tombstone; then the source restarts and republishes the
// current state once — every live object again under the ID it already
// had, nothing for the deleted one.
func TestIntegrationObjectsThroughKafka(t *testing.T) {
	restCfg, admin := realKube(t)
	ns, user := applyRBAC(t, admin)
	kpub, broker, topic := realObjectsTopic(t)
	asSA := rest.CopyConfig(restCfg)
	asSA.Impersonate = rest.ImpersonationConfig{UserName: user}
	saClient, err := kubernetes.NewForConfig(asSA)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultObjectsConfig()
	cfg.Enabled = true
	cfg.LeaderElection.Namespace = ns
	cfg.LeaderElection.LeaseDuration, cfg.LeaderElection.RenewDeadline, cfg.LeaderElection.RetryPeriod = 4*time.Second, 3*time.Second, 500*time.Millisecond
	cfg.Batch.MaxWait = 20 * time.Millisecond
	pub := &memPublisher{next: kpub}
	r := start(t, cfg, saClient, pub)
	if r.metric(t, "kinds_unavailable_total", "kind", "ValidatingAdmissionPolicy") != 0 {
		t.Error("the test ground serves ValidatingAdmissionPolicy, yet it was skipped")
	}

	ctx := context.Background()
	crName := "kubesift-it-" + ns
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1",
					Env: []corev1.EnvVar{{Name: "API_TOKEN", Value: "s3cr3t-value"}}}}},
			},
		},
	}
	dep, err = admin.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np, err := admin.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: ns},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: crName},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.RbacV1().ClusterRoles().Delete(context.Background(), crName, metav1.DeleteOptions{}) })

	depKey := record.KeyObjectRef(testCluster, "Deployment", ns, "web")
	npKey := record.KeyObjectRef(testCluster, "NetworkPolicy", ns, "default-deny")
	crKey := record.KeyObjectRef(testCluster, "ClusterRole", "", crName)
	nsKey := record.KeyObjectRef(testCluster, "Namespace", "", ns)
	saKey := record.KeyObjectRef(testCluster, "ServiceAccount", ns, "kubesift-collector")
	published := func(key, id string) bool {
		return slices.ContainsFunc(pub.byKey(key), func(r *record.Record) bool { return r.ID == id })
	}
	testenv.WaitFor(t, "the created objects published", 30*time.Second, func() bool {
		return published(depKey, record.ObjectRecordID(string(dep.UID), dep.ResourceVersion)) &&
			published(npKey, record.ObjectRecordID(string(np.UID), np.ResourceVersion)) &&
			published(crKey, record.ObjectRecordID(string(cr.UID), cr.ResourceVersion))
	})

	// An update, then a delete.
	dep.Spec.Replicas = ptr.To[int32](3)
	if dep, err = admin.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the update and the tombstone published", 30*time.Second, func() bool {
		recs := pub.byKey(npKey)
		return len(recs) > 0 && recs[len(recs)-1].Deleted && slices.ContainsFunc(pub.byKey(depKey), func(r *record.Record) bool {
			return r.ID == record.ObjectRecordID(string(dep.UID), dep.ResourceVersion)
		})
	})

	// What Kafka holds.
	msgs := readKeys(t, broker, topic, depKey, npKey, crKey)
	if len(msgs[npKey]) != 2 || msgs[npKey][1].Value != nil || msgs[npKey][0].Value == nil {
		t.Fatalf("NetworkPolicy: %d messages, want its record then a tombstone (nil value)", len(msgs[npKey]))
	}
	tomb, err := record.ParseTombstone(msgs[npKey][1].Key, headers(msgs[npKey][1]))
	// The tombstone carries the version the delete notification reported
	// (the deletion's resourceVersion), the same as the source published.
	npRecs := pub.byKey(npKey)
	if err != nil || !strings.HasPrefix(tomb.ID, string(np.UID)+":") || tomb.ID != npRecs[len(npRecs)-1].ID {
		t.Errorf("tombstone %+v: %v", tomb, err)
	}
	var depIDs []string
	for _, m := range msgs[depKey] {
		rec, err := record.Unmarshal(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		depIDs = append(depIDs, rec.ID)
		var d appsv1.Deployment
		if err := json.Unmarshal(rec.Object, &d); err != nil {
			t.Fatal(err)
		}
		if rec.Source != record.SourceObject || rec.APIVersion != "apps/v1" || d.Kind != "Deployment" || d.ManagedFields != nil ||
			d.Spec.Template.Spec.Containers[0].Env[0].Value == "s3cr3t-value" || !slices.Contains(rec.Flags.Redacted, "env-value") {
			t.Errorf("Deployment record %s: source %s api %s flags %+v object %.400s", rec.ID, rec.Source, rec.APIVersion, rec.Flags, rec.Object)
		}
	}
	wantDep := record.ObjectRecordID(string(dep.UID), dep.ResourceVersion)
	if len(depIDs) != 2 || depIDs[1] != wantDep {
		t.Errorf("Deployment ids in Kafka %v, want two ending with %s", depIDs, wantDep)
	}
	if len(msgs[crKey]) != 1 {
		t.Errorf("ClusterRole: %d messages, want 1", len(msgs[crKey]))
	}
	if n := len(pub.deadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}

	// Restart: a new session lists everything again.
	r.stop()
	before := len(pub.records())
	mine := map[string]string{} // key -> the ID it last had
	for _, k := range []string{depKey, crKey, nsKey, saKey} {
		recs := pub.byKey(k)
		if len(recs) == 0 {
			t.Fatalf("%s never published", k)
		}
		mine[k] = recs[len(recs)-1].ID
	}
	r2 := start(t, cfg, saClient, pub)
	testenv.WaitFor(t, "the current state republished", 30*time.Second, func() bool {
		n := 0
		for _, rec := range pub.records()[before:] {
			if _, ok := mine[rec.Key]; ok {
				n++
			}
		}
		return n == len(mine)
	})
	after := pub.records()[before:]
	for k, id := range mine {
		var again []string
		for _, rec := range after {
			if rec.Key == k {
				again = append(again, rec.ID)
			}
		}
		if len(again) != 1 || again[0] != id {
			t.Errorf("%s after the restart: %v, want exactly [%s]", k, again, id)
		}
	}
	for _, rec := range after {
		if rec.Key == npKey {
			t.Errorf("the deleted NetworkPolicy was published again: %s", rec.ID)
		}
	}
	t.Logf("as %s: restart republished %d records (the initial lists of %d kinds, cluster-wide); "+
		"published_total{Deployment,object} after the restart = %v",
		user, len(after), len(kinds), r2.metric(t, "published_total", "kind", "Deployment", "type", "object"))
}

func headers(m kafka.Message) []record.Header {
	out := make([]record.Header, len(m.Headers))
	for i, h := range m.Headers {
		out[i] = record.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// readKeys reads the whole topic and returns the messages of the given keys,
// in offset order per key (a key lives in one partition).
func readKeys(t testing.TB, broker, topic string, keys ...string) map[string][]kafka.Message {
	t.Helper()
	out := map[string][]kafka.Message{}
	for _, m := range testenv.ReadTopic(t, broker, topic) {
		if slices.Contains(keys, string(m.Key)) {
			out[string(m.Key)] = append(out[string(m.Key)], m)
		}
	}
	return out
}
