package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// auditReceiver is a stand-in for the collector's webhook receiver: an HTTPS
// server on the address the test kube-apiserver's audit webhook backend posts
// to, requiring the API server's client certificate.
type auditReceiver struct {
	mu      sync.Mutex
	records []*record.Record
	batches int
}

func startAuditReceiver(t *testing.T, k testenv.Kube) *auditReceiver {
	t.Helper()
	// Only one process can listen on the webhook address; the lock's
	// cleanup is registered first, so it is released after srv.Close.
	testenv.LockWebhook(t)
	cert, err := tls.LoadX509KeyPair(k.WebhookCert, k.WebhookKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(k.WebhookClientCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificates in " + k.WebhookClientCA)
	}
	rcv := &auditReceiver{}
	srv := &http.Server{
		Addr: k.WebhookAddr,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			recs, errs := record.DecodeAll(body, "webhook", record.DecodeOptions{Cluster: record.Cluster{Name: "it"}})
			if len(errs) > 0 {
				t.Errorf("webhook body did not decode: %v", errs)
			}
			rcv.mu.Lock()
			rcv.records = append(rcv.records, recs...)
			rcv.batches++
			rcv.mu.Unlock()
		}),
	}
	ln, err := tls.Listen("tcp", k.WebhookAddr, srv.TLSConfig)
	if err != nil {
		t.Fatalf("listen on the audit webhook address: %v", err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rcv
}

func (r *auditReceiver) find(match func(*record.Record) bool) *record.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if match(rec) {
			return rec
		}
	}
	return nil
}

// clientFor returns a client that sends token and user agent ua, which picks
// the test's own requests out of the audit log every run shares.
func clientFor(t *testing.T, k testenv.Kube, token, ua string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host:            k.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		UserAgent:       ua,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// findInLog returns a record of the requests made with user agent ua that
// the audit log gained since w was created and that matches. It reads only
// what was appended: the ground's log is shared by every run and grows to
// gigabytes, and decoding all of it on every poll takes minutes under load.
func findInLog(t *testing.T, w *auditLogWatch, ua string, match func(*record.Record) bool) *record.Record {
	t.Helper()
	for _, r := range w.records(t, ua) {
		if match(r) {
			return r
		}
	}
	return nil
}

// TestKubeAuditGround checks what every audit test builds on: a create by the
// admin is audited with its request body in the log file and through the
// webhook backend (mTLS), and a forbidden request by the unprivileged user is
// audited with decision forbid.
func TestKubeAuditGround(t *testing.T) {
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	rcv := startAuditReceiver(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ns := fmt.Sprintf("ks-it-%d", time.Now().UnixNano())
	ua := "kubesift-integration-test/" + ns // this run's requests, in a log every run shares
	logw := watchAuditLog(t, k.AuditLog)
	admin := clientFor(t, k, k.AdminToken, ua)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
	}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := clientFor(t, k, k.UserToken, ua)
	_, err := user.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets as kubesift-user: got %v, want Forbidden", err)
	}

	podCreate := func(r *record.Record) bool {
		a := r.Audit
		return a != nil && a.Verb == "create" && a.Stage == "ResponseComplete" && a.ObjectRef != nil &&
			a.ObjectRef.Resource == "pods" && a.ObjectRef.Namespace == ns && a.ObjectRef.Name == "web"
	}
	forbidden := func(r *record.Record) bool {
		a := r.Audit
		return a != nil && a.UserAgent == ua && a.Verb == "list" && a.User.Username == "kubesift-user" && a.ObjectRef != nil &&
			a.ObjectRef.Resource == "secrets" && a.Annotations["authorization.k8s.io/decision"] == "forbid"
	}
	for _, c := range []struct {
		name  string
		match func(*record.Record) bool
	}{{"pod create", podCreate}, {"forbidden secrets list", forbidden}} {
		var inLog, inHook *record.Record
		testenv.WaitFor(t, c.name+" in the audit log", 30*time.Second, func() bool {
			inLog = findInLog(t, logw, ua, c.match)
			return inLog != nil
		})
		testenv.WaitFor(t, c.name+" at the webhook receiver", 30*time.Second, func() bool {
			inHook = rcv.find(c.match)
			return inHook != nil
		})
		if inLog.ID != inHook.ID {
			t.Errorf("%s: log and webhook disagree on the record id: %s vs %s", c.name, inLog.ID, inHook.ID)
		}
	}
	// The policy records pod creates at RequestResponse: the body is there.
	r := findInLog(t, logw, ua, podCreate)
	if r.Audit.RequestObject == nil || r.Audit.ResponseObject == nil {
		t.Errorf("pod create recorded without request/response object (level %s)", r.Audit.Level)
	}
	if r.Audit.User.Username != "kubesift-admin" {
		t.Errorf("pod create by %q, want kubesift-admin", r.Audit.User.Username)
	}
}
