package auditwebhook_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/auditwebhook"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The namespace and ServiceAccount that hack/testenv/kube/audit-policy.yaml
// records at RequestResponse (Secrets, ConfigMaps, TokenRequests there; and
// TokenReviews made by the ServiceAccount).
const (
	redactionNS = "kubesift-redaction-test"
	reviewerSA  = "kubesift-redaction-reviewer"
)

// collectingPub keeps every published record's wire form and every dead
// letter, per path.
type collectingPub struct {
	mu   sync.Mutex
	recs map[string]*record.Record // id -> record
	wire []string
	dls  []collector.DeadLetter
}

func newCollectingPub() *collectingPub { return &collectingPub{recs: map[string]*record.Record{}} }

func (p *collectingPub) Publish(_ context.Context, recs []*record.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range recs {
		b, err := record.Marshal(r)
		if err != nil {
			return err
		}
		p.recs[r.ID] = r
		p.wire = append(p.wire, string(b))
	}
	return nil
}

func (p *collectingPub) PublishDeadLetters(_ context.Context, dls []collector.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dls = append(p.dls, dls...)
	return nil
}

func (p *collectingPub) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.recs[id]
	return ok
}

// TestRealAPIServerBothPaths runs the webhook receiver (mTLS, on the address
// the test kube-apiserver posts to) and the tail of its real audit log, drives
// ~2,000 API requests with client-go — ConfigMaps with credential keys,
// Secrets, TokenRequests, TokenReviews, a ?token= query, all carrying planted
// values — and checks that every auditID of those requests in the audit log
// (read independently) arrives through both paths, and that no planted value
// appears in any published record or dead letter.
func TestRealAPIServerBothPaths(t *testing.T) {
	testenv.Short(t)
	k := testenv.KubeAPIServer(t)
	testenv.LockWebhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	cc := config.Default().Collector
	reg := prometheus.NewRegistry()
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("KUBESIFT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cluster := record.Cluster{Name: "it", UID: "it-uid"}

	// Webhook receiver, mTLS with the ground's certificates.
	hookPub := newCollectingPub()
	wc := cc.AuditWebhook
	wc.Enabled, wc.Listen, wc.TLSCertFile, wc.TLSKeyFile, wc.ClientCAFile = true, k.WebhookAddr, k.WebhookCert, k.WebhookKey, k.WebhookClientCA
	rcv, err := auditwebhook.New(auditwebhook.Options{Config: wc, Publisher: hookPub, Sanitizer: san, Cluster: cluster,
		DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", k.WebhookAddr)
	if err != nil {
		t.Fatalf("listen on the audit webhook address: %v", err)
	}
	hookCtx, hookStop := context.WithCancel(context.Background())
	hookDone := make(chan error, 1)
	go func() { hookDone <- rcv.Serve(hookCtx, ln) }()
	defer func() {
		hookStop()
		if err := <-hookDone; err != nil {
			t.Errorf("webhook: %v", err)
		}
	}()

	// Tail of the real audit log, from its current end.
	tailPub := newCollectingPub()
	tc := cc.AuditTail
	tc.Enabled, tc.Paths, tc.PositionsFile, tc.StartAt = true, []string{k.AuditLog}, filepath.Join(t.TempDir(), "positions.yaml"), "end"
	tl, err := audittail.New(audittail.Options{Config: tc, Publisher: tailPub, Sanitizer: san, Cluster: cluster,
		DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tailCtx, tailStop := context.WithCancel(context.Background())
	tailDone := make(chan error, 1)
	go func() { tailDone <- tl.Run(tailCtx) }()
	defer func() {
		tailStop()
		if err := <-tailDone; err != nil {
			t.Errorf("tail: %v", err)
		}
	}()
	<-tl.Started()

	// Read the audit log independently from here on.
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	ua := "kubesift-collector-it/" + run
	logw := watchLog(t, k.AuditLog, ua)

	// Drive the API server.
	admin := client(t, k, k.AdminToken, ua)
	setupRedactionNamespace(ctx, t, admin)
	plants := &plantSet{}
	t0 := time.Now()
	requests := drive(ctx, t, k, admin, ua, run, plants)
	t.Logf("%d API requests in %s, %d planted values", requests, time.Since(t0).Round(time.Millisecond), plants.len())

	// Every auditID of our requests in the log must arrive through both paths.
	var want []string
	start := time.Now()
	// kube-apiserver posts a webhook batch at least every second
	// (--audit-webhook-batch-max-wait=1s, hack/testenv/kube.sh) and the tail
	// polls every 250 ms: seconds suffice on an idle machine, and the rest of
	// the bound is for a test ground shared with other tests.
	testenv.WaitForNil(t, "every audit record of the test's requests on both paths", 3*time.Minute, func() error {
		want = logw.ids(t)
		var noHook, noTail int
		for _, id := range want {
			if !hookPub.has(id) {
				noHook++
			}
			if !tailPub.has(id) {
				noTail++
			}
		}
		if noHook > 0 || noTail > 0 || len(want) < requests {
			return fmt.Errorf("%d records in the audit log for %d requests; %d of them not yet through the webhook, %d not through the tail", len(want), requests, noHook, noTail)
		}
		return nil
	})
	t.Logf("%d audit records of the test's requests; all arrived through the webhook and the tail (%s after the last request)", len(want), time.Since(start).Round(time.Millisecond))

	// No planted value in any published record or dead letter.
	for name, p := range map[string]*collectingPub{"webhook": hookPub, "tail": tailPub} {
		p.mu.Lock()
		for _, w := range p.wire {
			if v := plants.find(w); v != "" {
				t.Errorf("%s published a planted value %q in %.300s", name, v, w)
				break
			}
		}
		for _, dl := range p.dls {
			if v := plants.find(string(dl.Data)); v != "" {
				t.Errorf("%s dead letter holds planted value %q", name, v)
			}
			t.Errorf("%s dead letter (the API server writes valid events): %s %s", name, dl.Reason, dl.Error)
		}
		p.mu.Unlock()
	}

	// The test proves something only if the bodies were really there: check
	// that every kind of redaction happened on real records.
	kinds := map[string]int{}
	bodies := 0
	hookPub.mu.Lock()
	for _, id := range want {
		r := hookPub.recs[id]
		for _, kd := range r.Flags.Redacted {
			kinds[kd]++
		}
		if r.Audit.ObjectRef != nil && r.Audit.ObjectRef.Resource == "secrets" && (r.Audit.RequestObject != nil || r.Audit.ResponseObject != nil) {
			bodies++
		}
	}
	hookPub.mu.Unlock()
	t.Logf("redactions by kind: %v; Secret records with bodies: %d", kinds, bodies)
	if bodies == 0 {
		t.Fatalf("no Secret record carries a body: the running kube-apiserver does not use the audit policy with the %s rule; restart the ground (hack/testenv/kube.sh stop && hack/testenv/kube.sh start && hack/testenv/kube.sh wait)", redactionNS)
	}
	for _, kd := range []string{redact.KindSecretData, redact.KindSecretLastApplied, redact.KindConfigMapCredential,
		redact.KindTokenRequest, redact.KindTokenReview, redact.KindURIQuery} {
		if kinds[kd] == 0 {
			t.Errorf("no record was redacted for %s", kd)
		}
	}
}

// plantSet holds the secret values the test wrote to the API server. Values
// it makes up start with plantPrefix, so one search for the prefix (plain,
// or base64 as in Secret data, where the value starts the encoded bytes)
// finds any of them; real tokens (JWT signatures) are searched one by one.
type plantSet struct {
	mu  sync.Mutex
	n   int
	raw []string
}

const plantPrefix = "PLANTED-SECRET-"

var plantPrefixB64 = base64.StdEncoding.EncodeToString([]byte(plantPrefix))[:16] // whole 3-byte groups only

// add returns a new planted value containing v.
func (p *plantSet) add(v string) string {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	return plantPrefix + v
}

// addRaw plants a value the test did not make up (a real token).
func (p *plantSet) addRaw(v string) {
	p.mu.Lock()
	p.raw = append(p.raw, v)
	p.mu.Unlock()
}

func (p *plantSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n + len(p.raw)
}

// find returns the planted value (or its base64 form) found in s, or "".
func (p *plantSet) find(s string) string {
	for _, m := range []string{plantPrefix, plantPrefixB64} {
		if i := strings.Index(s, m); i >= 0 {
			return s[i:min(len(s), i+60)]
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.raw {
		if strings.Contains(s, v) {
			return v
		}
	}
	return ""
}

func client(t *testing.T, k testenv.Kube, token, ua string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: k.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		UserAgent: ua, QPS: 500, Burst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// setupRedactionNamespace creates (once per ground) the namespace, the
// reviewer ServiceAccount (no controller creates them here) and its right to
// create TokenReviews.
func setupRedactionNamespace(ctx context.Context, t *testing.T, cs *kubernetes.Clientset) {
	t.Helper()
	ignoreExists := func(err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: redactionNS}}, metav1.CreateOptions{})
	ignoreExists(err)
	_, err = cs.CoreV1().ServiceAccounts(redactionNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: reviewerSA}}, metav1.CreateOptions{})
	ignoreExists(err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubesift-redaction-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: reviewerSA, Namespace: redactionNS}},
	}, metav1.CreateOptions{})
	ignoreExists(err)
}

// drive makes the API requests, planting secret values everywhere the
// collector must redact them, and returns how many requests it made.
func drive(ctx context.Context, t *testing.T, k testenv.Kube, cs *kubernetes.Clientset, ua, run string, plants *plantSet) int {
	t.Helper()
	const workers, perWorker = 4, 50 // 4 × 50 × 10 requests
	var mu sync.Mutex
	count := 0
	var firstErr error
	note := func(err error) bool {
		mu.Lock()
		defer mu.Unlock()
		count++
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return err == nil
	}
	labels := map[string]string{"kubesift-run": run}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				n := fmt.Sprintf("%s-%d-%d", run, w, i)
				cmName, secName := "cm-"+n, "sec-"+n
				// ConfigMap with a credential key (created, read, updated, patched).
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cmName, Labels: labels},
					Data: map[string]string{"db_password": plants.add("cmpw-" + n), "log_level": "info"}}
				_, err := cs.CoreV1().ConfigMaps(redactionNS).Create(ctx, cm, metav1.CreateOptions{})
				if !note(err) {
					return
				}
				got, err := cs.CoreV1().ConfigMaps(redactionNS).Get(ctx, cmName, metav1.GetOptions{})
				if !note(err) {
					return
				}
				got.Data["db_password"] = plants.add("cmpw2-" + n)
				got.Data["api_key"] = plants.add("cmkey-" + n)
				_, err = cs.CoreV1().ConfigMaps(redactionNS).Update(ctx, got, metav1.UpdateOptions{})
				note(err)
				// A Secret with data, stringData and kubectl's last-applied annotation.
				la := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":%q},"stringData":{"password":%q}}`, secName, plants.add("lastapplied-"+n))
				sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secName, Labels: labels,
					Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": la}},
					Data:       map[string][]byte{"password": []byte(plants.add("secdata-" + n))},
					StringData: map[string]string{"token": plants.add("secstr-" + n)}}
				_, err = cs.CoreV1().Secrets(redactionNS).Create(ctx, sec, metav1.CreateOptions{})
				if !note(err) {
					return
				}
				_, err = cs.CoreV1().Secrets(redactionNS).Get(ctx, secName, metav1.GetOptions{})
				note(err)
				patch := fmt.Sprintf(`{"stringData":{"password":%q}}`, plants.add("secpatch-"+n))
				_, err = cs.CoreV1().Secrets(redactionNS).Patch(ctx, secName, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
				note(err)
				// A bearer token in a query string (list ConfigMaps with it).
				err = cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/"+redactionNS+"/configmaps").
					Param("limit", "1").Param("token", plants.add("uritoken-"+n)).Do(ctx).Error()
				note(err)
				// SecretList of this run's Secrets (every item has data).
				if i%10 == 0 {
					_, err = cs.CoreV1().Secrets(redactionNS).List(ctx, metav1.ListOptions{LabelSelector: "kubesift-run=" + run})
					note(err)
				} else {
					_, err = cs.CoreV1().ConfigMaps(redactionNS).Get(ctx, cmName, metav1.GetOptions{})
					note(err)
				}
				// Delete the Secret: the response carries it, data included.
				note(cs.CoreV1().Secrets(redactionNS).Delete(ctx, secName, metav1.DeleteOptions{}))
				note(cs.CoreV1().ConfigMaps(redactionNS).Delete(ctx, cmName, metav1.DeleteOptions{}))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("driving the API server: %v", firstErr)
	}
	// TokenRequests (the response holds a real service account token) and
	// TokenReviews by the reviewer ServiceAccount (the request holds one).
	for i := range 10 {
		exp := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(redactionNS).CreateToken(ctx, reviewerSA,
			&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if !note(err) {
			t.Fatalf("TokenRequest: %v", err)
		}
		// The JWT's signature part is unique per token.
		parts := strings.Split(tr.Status.Token, ".")
		plants.addRaw(parts[len(parts)-1])
		reviewer := client(t, k, tr.Status.Token, ua)
		for _, tok := range []string{tr.Status.Token, plants.add(fmt.Sprintf("fake-reviewed-token-%s-%d", run, i))} {
			_, err := reviewer.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
			if !note(err) {
				t.Fatalf("TokenReview: %v", err)
			}
		}
	}
	return count
}

// logWatcher reads the audit log independently of the tail: what was
// appended since it was created, by requests with one user agent. It keeps
// the file open, so if kube-apiserver rotates the log meanwhile
// (--audit-log-maxsize), the rest of the old file is still read, and the new
// file at the path from its start. The open file is decoded only once, line
// by complete line, as it grows: the test polls it several times a second
// while other tests append to the same log.
type logWatcher struct {
	path string
	ua   string
	f    *os.File
	off  int64    // f is decoded up to here, the end of a complete line
	seen []string // the record IDs of ua's requests in f before off
}

func watchLog(t *testing.T, path, ua string) *logWatcher {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &logWatcher{path: path, ua: ua, f: f, off: fi.Size()}
}

// ids returns the record IDs of the requests made with the watcher's user
// agent so far.
func (w *logWatcher) ids(t *testing.T) []string {
	t.Helper()
	collect := func(r io.Reader, name string, ids []string) []string {
		d := record.NewDecoder(r, name, record.DecodeOptions{})
		for {
			rec, err := d.Next()
			if errors.Is(err, io.EOF) {
				return ids
			}
			if err != nil {
				t.Fatalf("audit log: %v", err)
			}
			if rec.Audit != nil && rec.Audit.UserAgent == w.ua {
				ids = append(ids, rec.ID)
			}
		}
	}
	fi, err := w.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > w.off {
		added := make([]byte, fi.Size()-w.off)
		n, err := w.f.ReadAt(added, w.off)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("audit log: %v", err)
		}
		if i := bytes.LastIndexByte(added[:n], '\n'); i >= 0 {
			w.seen = collect(bytes.NewReader(added[:i+1]), w.path, w.seen)
			w.off += int64(i + 1)
		}
	}
	ids := slices.Clone(w.seen)
	if cur, err := os.Stat(w.path); err == nil {
		if old, err := w.f.Stat(); err == nil && !os.SameFile(cur, old) {
			f, err := os.Open(w.path) // rotated: the new file too
			if err == nil {
				ids = collect(f, w.path, ids)
				f.Close()
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
