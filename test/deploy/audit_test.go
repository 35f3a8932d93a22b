package deploy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/auditwebhook"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestAuditPolicyLevels evaluates deployments/audit/policy.yaml with
// kube-apiserver's own policy loader and rule evaluator (the code the server
// runs) for the requests the policy is about: which level each gets.
func TestAuditPolicyLevels(t *testing.T) {
	pol, err := auditpolicy.LoadPolicyFromBytes(mustRead(t, "deployments", "audit", "policy.yaml"))
	if err != nil {
		t.Fatalf("policy.yaml: %v", err)
	}
	if !slices.Contains(pol.OmitStages, auditinternal.StageRequestReceived) {
		t.Errorf("omitStages %v lacks RequestReceived", pol.OmitStages)
	}
	ev := auditpolicy.NewPolicyRuleEvaluator(pol)
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"dev", user.AllAuthenticated}}
	proxy := &user.DefaultInfo{Name: "system:kube-proxy", Groups: []string{user.AllAuthenticated}}
	node := &user.DefaultInfo{Name: "system:node:n1", Groups: []string{user.NodesGroup, user.AllAuthenticated}}
	kcm := &user.DefaultInfo{Name: "system:kube-controller-manager", Groups: []string{user.AllAuthenticated}}
	sched := &user.DefaultInfo{Name: "system:kube-scheduler", Groups: []string{user.AllAuthenticated}}
	apiserver := &user.DefaultInfo{Name: user.APIServerUser, Groups: []string{user.SystemPrivilegedGroup}}
	ksSA := &user.DefaultInfo{Name: "system:serviceaccount:kube-system:replicaset-controller",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", user.AllAuthenticated}}
	collector := &user.DefaultInfo{Name: "system:serviceaccount:kubesift-collector:kubesift-collector",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kubesift-collector", user.AllAuthenticated}}
	res := func(u user.Info, verb, group, resource, sub, ns string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, Resource: resource,
			Subresource: sub, Namespace: ns, ResourceRequest: true}
	}
	path := func(u user.Info, p string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: "get", Path: p}
	}
	const (
		none = auditinternal.LevelNone
		meta = auditinternal.LevelMetadata
		rr   = auditinternal.LevelRequestResponse
	)
	cases := []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		// None: the control plane's chatter.
		{"kube-proxy watches endpoints", res(proxy, "watch", "", "endpoints", "", ""), none},
		{"kube-proxy lists services", res(proxy, "list", "", "services", "", ""), none},
		{"kube-proxy watches endpointslices", res(proxy, "watch", "discovery.k8s.io", "endpointslices", "", ""), none},
		{"kubelet gets its node", res(node, "get", "", "nodes", "", ""), none},
		{"kubelet gets its node status", res(node, "get", "", "nodes", "status", ""), none},
		{"kubelet renews its lease", res(node, "update", "coordination.k8s.io", "leases", "", "kube-node-lease"), none},
		{"controller-manager lease", res(kcm, "update", "coordination.k8s.io", "leases", "", "kube-system"), none},
		{"scheduler lease", res(sched, "get", "coordination.k8s.io", "leases", "", "kube-system"), none},
		{"apiserver identity lease", res(apiserver, "update", "coordination.k8s.io", "leases", "", "kube-system"), none},
		{"collector's own lease", res(collector, "update", "coordination.k8s.io", "leases", "", "kubesift-collector"), none},
		{"controller writes an Event", res(ksSA, "create", "", "events", "", "default"), none},
		{"kubelet writes an Event", res(node, "patch", "events.k8s.io", "events", "", "default"), none},
		{"controller-manager reads Events", res(kcm, "list", "", "events", "", ""), none},
		{"healthz", path(alice, "/healthz"), none},
		{"readyz verbose", path(alice, "/readyz/etcd"), none},
		{"livez", path(alice, "/livez"), none},
		{"version", path(alice, "/version"), none},

		// Metadata: secret material, whoever asks and whatever the verb.
		{"secret create", res(alice, "create", "", "secrets", "", "default"), meta},
		{"secret get by kubelet", res(node, "get", "", "secrets", "", "default"), meta},
		{"secret list by controller", res(ksSA, "list", "", "secrets", "", ""), meta},
		{"configmap update", res(alice, "update", "", "configmaps", "", "default"), meta},
		{"token request", res(alice, "create", "", "serviceaccounts", "token", "default"), meta},
		{"token review", res(alice, "create", "authentication.k8s.io", "tokenreviews", "", ""), meta},
		// ... and the default for what no rule needs the bodies of.
		{"pod read", res(alice, "get", "", "pods", "", "default"), meta},
		{"pod list", res(alice, "list", "", "pods", "", ""), meta},
		{"pod status by kubelet", res(node, "patch", "", "pods", "status", "default"), meta},
		{"deployment status", res(ksSA, "update", "apps", "deployments", "status", "default"), meta},
		{"clusterrole list", res(alice, "list", "rbac.authorization.k8s.io", "clusterroles", "", ""), meta},
		{"user lists events", res(alice, "list", "", "events", "", "default"), meta},
		{"user deletes events", res(alice, "delete", "", "events", "", "default"), meta},
		{"controller deletes events", res(ksSA, "deletecollection", "events.k8s.io", "events", "", "default"), meta},
		{"user reads a lease", res(alice, "get", "coordination.k8s.io", "leases", "", "kube-system"), meta},
		{"apiserver creates its lease", res(apiserver, "create", "coordination.k8s.io", "leases", "", "kube-system"), meta},
		{"discovery", path(alice, "/apis"), meta},
		{"metrics", path(alice, "/metrics"), meta},

		// RequestResponse: the bodies the rules read.
		{"pod create", res(alice, "create", "", "pods", "", "default"), rr},
		{"pod create by controller", res(ksSA, "create", "", "pods", "", "default"), rr},
		{"pod patch", res(alice, "patch", "", "pods", "", "default"), rr},
		{"pod delete", res(alice, "delete", "", "pods", "", "default"), rr},
		{"exec", res(alice, "create", "", "pods", "exec", "default"), rr},
		{"exec over websocket", res(alice, "get", "", "pods", "exec", "default"), rr},
		{"attach", res(alice, "create", "", "pods", "attach", "default"), rr},
		{"port-forward", res(alice, "create", "", "pods", "portforward", "default"), rr},
		{"ephemeral container", res(alice, "patch", "", "pods", "ephemeralcontainers", "default"), rr},
		{"pod binding", res(sched, "create", "", "pods", "binding", "default"), rr},
		{"deployment create", res(alice, "create", "apps", "deployments", "", "default"), rr},
		{"daemonset patch", res(alice, "patch", "apps", "daemonsets", "", "default"), rr},
		{"cronjob update", res(alice, "update", "batch", "cronjobs", "", "default"), rr},
		{"job create", res(alice, "create", "batch", "jobs", "", "default"), rr},
		{"replicationcontroller create", res(alice, "create", "", "replicationcontrollers", "", "default"), rr},
		{"clusterrolebinding create", res(alice, "create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""), rr},
		{"rolebinding patch", res(alice, "patch", "rbac.authorization.k8s.io", "rolebindings", "", "default"), rr},
		{"clusterrole update", res(apiserver, "update", "rbac.authorization.k8s.io", "clusterroles", "", ""), rr},
		{"role delete", res(alice, "delete", "rbac.authorization.k8s.io", "roles", "", "default"), rr},
		{"mutating webhook create", res(alice, "create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", ""), rr},
		{"validating policy delete", res(alice, "delete", "admissionregistration.k8s.io", "validatingadmissionpolicies", "", ""), rr},
		{"service create", res(alice, "create", "", "services", "", "default"), rr},
		{"namespace create", res(alice, "create", "", "namespaces", "", ""), rr},
		{"csr create", res(alice, "create", "certificates.k8s.io", "certificatesigningrequests", "", ""), rr},
		{"csr approval", res(alice, "update", "certificates.k8s.io", "certificatesigningrequests", "approval", ""), rr},
		{"self rules review", res(alice, "create", "authorization.k8s.io", "selfsubjectrulesreviews", "", ""), rr},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ev.EvaluatePolicyRule(c.attrs).Level; got != c.want {
				t.Errorf("level %s, want %s", got, c.want)
			}
		})
	}
}

// TestAuditPolicyRealAPIServer starts a second, real kube-apiserver with the
// recommended policy (deployments/audit/policy.yaml), both audit backends
// (the log, and the webhook through deployments/audit/webhook-kubeconfig.yaml
// filled in with the ground's PKI) and static tokens for the control-plane
// identities the None rules name. It makes the requests the policy is about
// and checks the levels in the log it writes; then every audit ID of that log
// must reach Kafka through `kubesift collect` by both paths: the tail of the
// log and the webhook receiver.
//
// The second server shares the ground's etcd under an --etcd-prefix of its
// own (deleted at the end), and reuses the ground's serving certificate,
// service-account keys and audit webhook PKI: nothing of the ground changes.
func TestAuditPolicyRealAPIServer(t *testing.T) {
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	brokers := testenv.KafkaBrokers(t)
	bin := kubeBinDir(t)
	etcd := etcdURL(t)
	pki := filepath.Dir(k.CAFile)
	dir := t.TempDir()
	run := fmt.Sprintf("%d", time.Now().UnixNano())

	// Static tokens: the admin, and the identities the None rules are for.
	tokens := map[string]string{}
	var csv strings.Builder
	for _, u := range []struct{ name, groups string }{
		{"deploy-admin", "system:masters"},
		{"system:kube-proxy", ""},
		{"system:node:deploy-n1", "system:nodes"},
		{"system:kube-scheduler", ""},
	} {
		tok := randHex(t)
		tokens[u.name] = tok
		fmt.Fprintf(&csv, "%s,%s,%s", tok, u.name, u.name)
		if u.groups != "" {
			fmt.Fprintf(&csv, ",%q", u.groups)
		}
		csv.WriteString("\n")
	}
	writeFile(t, filepath.Join(dir, "tokens.csv"), csv.String())

	// The collector: webhook receiver (mTLS with the ground's audit PKI) and
	// tail of the new server's log, to topics of this run.
	webhookAddr, metricsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	auditLog := filepath.Join(dir, "audit.log")
	prefix := "deploy-audit-" + run
	topics := map[string]string{}
	for _, s := range []string{"audit", "events", "objects", "alerts", "dlq"} {
		topics[s] = prefix + "." + s
	}
	testenv.CreateTopics(t, brokers[0], 2, slices.Collect(maps.Values(topics))...)
	cfg := fmt.Sprintf(`cluster: {name: deploy-audit}
log: {level: info, format: json}
server: {listen: %q}
kafka:
  brokers: [%q]
  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}
collector:
  audit_webhook:
    enabled: true
    listen: %q
    tls_cert_file: %q
    tls_key_file: %q
    client_ca_file: %q
  audit_tail:
    enabled: true
    paths: [%q]
    positions_file: %q
    start_at: beginning
    poll_interval: 50ms
    batch_wait: 50ms
publish:
  spool: {dir: %q}
`, metricsAddr, brokers[0], topics["audit"], topics["events"], topics["objects"], topics["alerts"], topics["dlq"],
		webhookAddr, k.WebhookCert, k.WebhookKey, k.WebhookClientCA,
		auditLog, filepath.Join(dir, "positions.yaml"), filepath.Join(dir, "spool"))
	cfgPath := filepath.Join(dir, "collector.yaml")
	writeFile(t, cfgPath, cfg)
	col := testenv.Start(t, "collect", nil, "collect", "-c", cfgPath)
	testenv.WaitFor(t, "collector /readyz", time.Minute, func() bool {
		if col.Exited() {
			t.Fatalf("collector exited:\n%s", testenv.Tail(col.LogPath, 30))
		}
		res, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// The webhook kubeconfig is the shipped template, filled in.
	kubeconfig := renderWebhookKubeconfig(t, map[string]string{
		"KUBESIFT_WEBHOOK_URL": "https://" + webhookAddr + "/audit",
		"KUBESIFT_WEBHOOK_CA":  filepath.Join(pki, "audit-webhook-ca.crt"),
		"KUBESIFT_CLIENT_CERT": filepath.Join(pki, "audit-client.crt"),
		"KUBESIFT_CLIENT_KEY":  filepath.Join(pki, "audit-client.key"),
	})
	writeFile(t, filepath.Join(dir, "webhook.kubeconfig"), kubeconfig)

	apiAddr := testenv.FreeAddr(t)
	_, port, _ := strings.Cut(apiAddr, ":")
	etcdPrefix := "/kubesift-test-deploy-" + run
	t.Cleanup(func() { deleteEtcdPrefix(t, etcd, etcdPrefix) })
	api := startAPIServer(t, filepath.Join(bin, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--endpoint-reconciler-type=none",
		"--storage-backend=etcd3", "--etcd-servers="+etcd, "--etcd-prefix="+etcdPrefix,
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--client-ca-file="+k.CAFile, "--anonymous-auth=true",
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount", "--allow-privileged=true",
		"--enable-priority-and-fairness=false", "--profiling=false",
		"--audit-policy-file="+repo("deployments", "audit", "policy.yaml"),
		"--audit-log-path="+auditLog, "--audit-log-format=json", "--audit-log-mode=blocking",
		"--audit-webhook-config-file="+filepath.Join(dir, "webhook.kubeconfig"),
		"--audit-webhook-mode=batch", "--audit-webhook-batch-max-wait=1s", "--audit-webhook-initial-backoff=1s",
		"--v=1",
	)

	ua := "kubesift-deploy-audit/" + run
	conf := func(who string) *rest.Config {
		return &rest.Config{Host: "https://" + apiAddr, BearerToken: tokens[who], UserAgent: ua,
			TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}, Timeout: 30 * time.Second}
	}
	admin := kubernetes.NewForConfigOrDie(conf("deploy-admin"))
	testenv.WaitFor(t, "second kube-apiserver ready", 3*time.Minute, func() bool {
		if api.exited() {
			t.Fatalf("kube-apiserver exited:\n%s", testenv.Tail(api.log, 40))
		}
		body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx(t, 5*time.Second))
		if err != nil || string(body) != "ok" {
			return false
		}
		// RBAC bootstrap and the system namespaces come with readiness
		// only in part; the requests below need both.
		_, err1 := admin.CoreV1().Namespaces().Get(ctx(t, 5*time.Second), "kube-system", metav1.GetOptions{})
		_, err2 := admin.RbacV1().ClusterRoles().Get(ctx(t, 5*time.Second), "cluster-admin", metav1.GetOptions{})
		return err1 == nil && err2 == nil
	})

	// ---- the requests
	c := ctx(t, 2*time.Minute)
	const ns = "deploy-audit"
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	secretValue := "s3cr3t-" + run
	_, err := admin.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("create namespace", err)
	_, err = admin.CoreV1().Secrets(ns).Create(c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": secretValue}}, metav1.CreateOptions{})
	must("create secret", err)
	_, err = admin.CoreV1().Secrets(ns).Get(c, "db", metav1.GetOptions{})
	must("get secret", err)
	_, err = admin.CoreV1().ConfigMaps(ns).Create(c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"api_key": secretValue}}, metav1.CreateOptions{})
	must("create configmap", err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(c, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deploy-audit-mallory"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mallory"}},
	}, metav1.CreateOptions{})
	must("create clusterrolebinding", err)
	_, err = admin.CoreV1().Pods(ns).Create(c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.37",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}, metav1.CreateOptions{})
	must("create pod", err)
	_, err = admin.CoreV1().Pods(ns).Patch(c, "root", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	must("patch pod", err)
	_, err = admin.CoreV1().Pods(ns).Get(c, "root", metav1.GetOptions{})
	must("get pod", err)
	// kubectl debug: an ephemeral container (stored; no kubelet runs it).
	_, err = admin.CoreV1().Pods(ns).Patch(c, "root", types.StrategicMergePatchType,
		[]byte(`{"spec":{"ephemeralContainers":[{"name":"debugger","image":"busybox:1.37","targetContainerName":"c"}]}}`),
		metav1.PatchOptions{}, "ephemeralcontainers")
	must("add ephemeral container", err)
	// kubectl exec: refused without a node (and without a stream upgrade),
	// audited all the same.
	_ = admin.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name("root").SubResource("exec").
		Param("command", "id").Param("stdout", "true").Do(c).Error()
	_, err = admin.CoreV1().Events("").List(c, metav1.ListOptions{})
	must("list core events", err)
	_, err = admin.EventsV1().Events(ns).List(c, metav1.ListOptions{})
	must("list events.k8s.io events", err)
	// A TokenRequest: its response holds a bearer token, which must not be
	// in the log. The collector's ServiceAccount then uses it on its Lease.
	_, err = admin.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubesift-collector"}}, metav1.CreateOptions{})
	must("create namespace kubesift-collector", err)
	_, err = admin.CoreV1().ServiceAccounts("kubesift-collector").Create(c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubesift-collector"}}, metav1.CreateOptions{})
	must("create serviceaccount", err)
	tr, err := admin.CoreV1().ServiceAccounts("kubesift-collector").CreateToken(c, "kubesift-collector",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	must("token request", err)
	must("delete clusterrolebinding", admin.RbacV1().ClusterRoleBindings().Delete(c, "deploy-audit-mallory", metav1.DeleteOptions{}))
	for _, p := range []string{"/healthz", "/readyz", "/livez", "/version"} {
		_, err := admin.Discovery().RESTClient().Get().AbsPath(p).DoRaw(c)
		must("GET "+p, err)
	}

	// Requests of the identities the None rules silence; whether each is
	// allowed does not matter (denied requests are audited too).
	proxy := kubernetes.NewForConfigOrDie(conf("system:kube-proxy"))
	_, _ = proxy.CoreV1().Services("").List(c, metav1.ListOptions{})
	if w, err := proxy.CoreV1().Endpoints("").Watch(c, metav1.ListOptions{TimeoutSeconds: ptr.To[int64](1)}); err == nil {
		for range w.ResultChan() {
		}
	}
	node := kubernetes.NewForConfigOrDie(conf("system:node:deploy-n1"))
	_, _ = node.CoreV1().Nodes().Get(c, "deploy-n1", metav1.GetOptions{})
	_ = node.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/deploy-n1/status").Do(c).Error()
	_, _ = node.CoordinationV1().Leases("kube-node-lease").Get(c, "deploy-n1", metav1.GetOptions{})
	_, _ = node.CoreV1().Events(ns).Create(c, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "n1.x"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "deploy-n1"}, Reason: "Test"}, metav1.CreateOptions{})
	sched := kubernetes.NewForConfigOrDie(conf("system:kube-scheduler"))
	_, _ = sched.CoordinationV1().Leases("kube-system").Get(c, "kube-scheduler", metav1.GetOptions{})
	saConf := conf("")
	saConf.BearerToken = tr.Status.Token
	sa := kubernetes.NewForConfigOrDie(saConf)
	_, _ = sa.CoordinationV1().Leases("kubesift-collector").Get(c, "kubesift-events-leader", metav1.GetOptions{})

	// Stop the server: its webhook backend flushes what it buffered, and the
	// log is final.
	if err := api.stop(60 * time.Second); err != nil {
		t.Logf("kube-apiserver stop: %v", err)
	}
	events := readAuditLog(t, auditLog)
	if len(events) == 0 {
		t.Fatal("the audit log is empty")
	}

	// ---- levels of this run's requests
	type want struct {
		verb, resource, sub string
		level               string
		bodies              bool // RequestResponse: both bodies must be there; Metadata: none may
	}
	wants := []want{
		{"create", "namespaces", "", "RequestResponse", true},
		{"create", "secrets", "", "Metadata", false},
		{"get", "secrets", "", "Metadata", false},
		{"create", "configmaps", "", "Metadata", false},
		{"create", "clusterrolebindings", "", "RequestResponse", true},
		{"delete", "clusterrolebindings", "", "RequestResponse", true},
		{"create", "pods", "", "RequestResponse", true},
		{"patch", "pods", "", "RequestResponse", true},
		{"get", "pods", "", "Metadata", false},
		{"patch", "pods", "ephemeralcontainers", "RequestResponse", true},
		{"create", "pods", "exec", "RequestResponse", false},
		{"list", "events", "", "Metadata", false},
		{"create", "serviceaccounts", "token", "Metadata", false},
	}
	for _, w := range wants {
		var found []auditEvent
		for _, e := range events {
			if e.UserAgent == ua && e.User.Username == "deploy-admin" && e.Verb == w.verb &&
				e.ObjectRef != nil && e.ObjectRef.Resource == w.resource && e.ObjectRef.Subresource == w.sub {
				found = append(found, e)
			}
		}
		name := strings.TrimSuffix(w.verb+" "+w.resource+"/"+w.sub, "/")
		if len(found) == 0 {
			t.Errorf("%s: not in the audit log", name)
			continue
		}
		for _, e := range found {
			if e.Level != w.level {
				t.Errorf("%s (%s): level %s, want %s", name, e.AuditID, e.Level, w.level)
			}
			has := len(e.RequestObject) > 0 || len(e.ResponseObject) > 0
			if w.bodies && (len(e.ResponseObject) == 0 || (w.verb != "delete" && len(e.RequestObject) == 0)) {
				t.Errorf("%s (%s): request/response bodies missing at %s", name, e.AuditID, e.Level)
			}
			if !w.bodies && has && w.level != "RequestResponse" {
				t.Errorf("%s (%s): carries a request or response body at %s", name, e.AuditID, e.Level)
			}
		}
	}
	// ---- the None rules: nothing at all from these requests
	silenced := map[string]bool{"system:kube-proxy": true, "system:node:deploy-n1": true, "system:kube-scheduler": true,
		"system:serviceaccount:kubesift-collector:kubesift-collector": true}
	var leaseBeats int
	for _, e := range events {
		if silenced[e.User.Username] {
			t.Errorf("audited although the policy says None: %s %s by %s (%s)", e.Verb, e.RequestURI, e.User.Username, e.Level)
		}
		for _, p := range []string{"/healthz", "/readyz", "/livez", "/version"} {
			if e.RequestURI == p || strings.HasPrefix(e.RequestURI, p+"?") || strings.HasPrefix(e.RequestURI, p+"/") {
				t.Errorf("audited although the policy says None: %s by %s", e.RequestURI, e.User.Username)
			}
		}
		if e.User.Username == user.APIServerUser && e.ObjectRef != nil && e.ObjectRef.Resource == "leases" &&
			(e.Verb == "get" || e.Verb == "update") {
			leaseBeats++
		}
	}
	if leaseBeats > 0 {
		t.Errorf("%d get/update of the API server's identity Lease audited although the policy says None", leaseBeats)
	}
	// ---- no secret material anywhere in the log
	raw, err := os.ReadFile(auditLog)
	must("read audit log", err)
	for what, s := range map[string]string{
		"secret value": secretValue, "base64 secret value": base64.StdEncoding.EncodeToString([]byte(secretValue)),
		"service account token": tr.Status.Token,
	} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the audit log contains the %s", what)
		}
	}

	// ---- every audit ID reaches Kafka by both paths. The log backend is
	// blocking: it has everything. The webhook backend (batch mode) drops
	// what its buffer still holds when the server shuts down, and says so in
	// the server's log ("Impacted events"): those are the only records the
	// webhook path may lack.
	logIDs := map[string]bool{}
	for _, e := range events {
		logIDs[e.AuditID+":"+e.Stage] = true
	}
	dropped := webhookDrops(t, api.log)
	missing := waitOnTopic(t, brokers[0], topics["audit"], logIDs, dropped)
	for origin, ids := range missing {
		slices.Sort(ids)
		t.Errorf("%d of %d audit records of the log never reached Kafka via %s, e.g. %v", len(ids), len(logIDs), origin, ids[:min(5, len(ids))])
	}
	if dl := testenv.ReadTopic(t, brokers[0], topics["dlq"]); len(dl) > 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
	t.Logf("%d audit records (%d from this test's requests) in the log: all on Kafka via the tail, all but the %d "+
		"kube-apiserver dropped at shutdown via the webhook", len(logIDs), countUA(events, ua), len(dropped))
}

// waitOnTopic reads the audit topic until every id of want arrived through
// the tail and every one not in webhookMay through the webhook, or two
// minutes passed; it returns what is missing per origin.
func waitOnTopic(t testing.TB, broker, topic string, want, webhookMay map[string]bool) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := map[string]map[string]bool{audittail.Source: {}, auditwebhook.Source: {}}
		for _, m := range testenv.ReadTopic(t, broker, topic) {
			origin := header(m, publish.HeaderOrigin)
			if got[origin] == nil {
				t.Fatalf("message %d/%d with %s %q", m.Partition, m.Offset, publish.HeaderOrigin, origin)
			}
			got[origin][header(m, record.HeaderID)] = true
		}
		missing := map[string][]string{}
		for origin, ids := range got {
			for id := range want {
				if !ids[id] && (origin != auditwebhook.Source || !webhookMay[id]) {
					missing[origin] = append(missing[origin], id)
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(time.Second) // paces the polls: each reads the whole topic
	}
}

// auditDropLine is how kube-apiserver logs an audit event a backend gave up
// on (the log backend writes to its file, so only drops reach this log).
var auditDropLine = regexp.MustCompile(`AUDIT: id="([^"]+)" stage="([^"]+)"`)

func webhookDrops(t testing.TB, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range auditDropLine.FindAllStringSubmatch(string(b), -1) {
		out[m[1]+":"+m[2]] = true
	}
	return out
}

// auditEvent is the part of an audit.k8s.io/v1 Event the test reads.
type auditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Level      string `json:"level"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestObject  json.RawMessage `json:"requestObject"`
	ResponseObject json.RawMessage `json:"responseObject"`
}

func readAuditLog(t testing.TB, path string) []auditEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countUA(events []auditEvent, ua string) int {
	n := 0
	for _, e := range events {
		if e.UserAgent == ua {
			n++
		}
	}
	return n
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

var placeholder = regexp.MustCompile(`\$\{[A-Z][A-Z0-9_]*\}`)

// renderWebhookKubeconfig fills in deployments/audit/webhook-kubeconfig.yaml;
// every placeholder must be known, and none may be left.
func renderWebhookKubeconfig(t testing.TB, vals map[string]string) string {
	t.Helper()
	tmpl := string(mustRead(t, "deployments", "audit", "webhook-kubeconfig.yaml"))
	var unknown []string
	// Placeholders are ${NAME}, NAME in capitals (as envsubst reads them);
	// the comments' "${...}" is prose.
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		k := m[2 : len(m)-1]
		v, ok := vals[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	})
	if len(unknown) > 0 {
		t.Fatalf("webhook-kubeconfig.yaml: unknown placeholders %v", unknown)
	}
	for k := range vals {
		if !strings.Contains(tmpl, "${"+k+"}") {
			t.Errorf("webhook-kubeconfig.yaml: placeholder ${%s} missing", k)
		}
	}
	return out
}

// kubeBinDir finds the cached kube-apiserver the way hack/testenv/kube.sh
// does: KUBESIFT_KUBE_BIN_DIR, else the output of build-kube.sh (instant
// when cached; the ground's start built it).
func kubeBinDir(t testing.TB) string {
	t.Helper()
	if d := testenv.Get("KUBESIFT_KUBE_BIN_DIR"); d != "" {
		return d
	}
	out, err := exec.Command(repo("hack", "testenv", "build-kube.sh")).Output()
	if err != nil {
		t.Fatalf("hack/testenv/build-kube.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// etcdURL is the ground's etcd (kube.sh: KUBESIFT_ETCD_PORT, default 12379).
func etcdURL(t testing.TB) string {
	t.Helper()
	port := testenv.Get("KUBESIFT_ETCD_PORT")
	if port == "" {
		port = "12379"
	}
	u := "http://127.0.0.1:" + port
	res, err := http.Get(u + "/health")
	if err != nil {
		t.Fatalf("the ground's etcd at %s: %v", u, err)
	}
	res.Body.Close()
	return u
}

// deleteEtcdPrefix removes every key under prefix through etcd's JSON
// gateway (DeleteRange [prefix/, prefix0)), so the second server leaves
// nothing in the ground's etcd.
func deleteEtcdPrefix(t testing.TB, etcd, prefix string) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	body := fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64(prefix+"/"), b64(prefix+"0"))
	res, err := http.Post(etcd+"/v3/kv/deleterange", "application/json", strings.NewReader(body))
	if err != nil {
		t.Errorf("delete etcd prefix %s: %v", prefix, err)
		return
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("delete etcd prefix %s: HTTP %d", prefix, res.StatusCode)
	}
}

// apiProc is the second kube-apiserver.
type apiProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startAPIServer(t testing.TB, bin, logPath string, args ...string) *apiProc {
	t.Helper()
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &apiProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(30 * time.Second); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			t.Logf("--- last lines of %s:\n%s", logPath, testenv.Tail(logPath, 40))
		}
	})
	return p
}

func (p *apiProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (graceful shutdown flushes the audit backends) and
// kills after grace.
func (p *apiProc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("kube-apiserver did not stop within " + grace.String() + " of SIGTERM; killed")
	}
}

func randHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
