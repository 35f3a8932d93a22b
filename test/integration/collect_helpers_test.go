package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The end-to-end tests of `kubesift collect` run the real binary
// (testenv.Start) against the test ground: kube-apiserver's audit webhook
// backend posting over mTLS to the collector on the ground's webhook address,
// the collector tailing the ground's --audit-log-path, real Kafka topics of
// their own. The audit log file is the ground truth: a test's requests are
// found in it by a user agent unique to the run (the log is shared with every
// other test of the ground).

// colTopics are the Kafka topics of one test.
type colTopics struct{ audit, events, objects, alerts, dlq string }

func (c colTopics) all() []string { return []string{c.audit, c.events, c.objects, c.alerts, c.dlq} }

// collectEnv is one collector set-up: its topics, directories and config.
type collectEnv struct {
	t       testing.TB
	broker  string
	topics  colTopics
	dir     string // spool, positions, config
	metrics string // host:port of /metrics, /readyz
	cfgPath string
}

// colOpts shape the collector's config.
type colOpts struct {
	webhookListen  string     // "" = no webhook receiver
	tailPaths      []string   // nil = no tail
	startAt        string     // audit_tail.start_at (default end)
	maxBodyBytes   int64      // audit_webhook.max_body_bytes (0: default)
	kubeconfig     string     // collector.kubeconfig (cluster UID)
	publishExtra   string     // extra YAML lines of the publish section (indented 2)
	tailExtra      string     // extra YAML lines of the audit_tail section (indented 4)
	collectorExtra string     // extra YAML lines of the collector section (indented 2)
	topics         *colTopics // the topics to publish to (nil: the env's own)
}

// newCollectEnv creates the test's topics (4 partitions) and writes the
// collector's config. brokers come from testenv.KafkaBrokers or, in a fault
// test, testenv.Need.
func newCollectEnv(t testing.TB, name string, brokers []string, k testenv.Kube, o colOpts) *collectEnv {
	t.Helper()
	prefix := fmt.Sprintf("it-collect-%s-%d", name, time.Now().UnixNano())
	e := &collectEnv{
		t: t, broker: brokers[0], dir: t.TempDir(), metrics: testenv.FreeAddr(t),
		topics: colTopics{audit: prefix + ".audit", events: prefix + ".events", objects: prefix + ".objects",
			alerts: prefix + ".alerts", dlq: prefix + ".dlq"},
	}
	if o.topics != nil {
		e.topics = *o.topics
	}
	testenv.CreateTopics(t, e.broker, 4, e.topics.all()...)
	if o.startAt == "" {
		o.startAt = "end"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: {name: it-%s}\n", name)
	fmt.Fprintf(&b, "log: {level: info, format: json}\n")
	fmt.Fprintf(&b, "server: {listen: %q}\n", e.metrics)
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  client_id: kubesift-it\n", quoteAll(brokers))
	fmt.Fprintf(&b, "  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}\n",
		e.topics.audit, e.topics.events, e.topics.objects, e.topics.alerts, e.topics.dlq)
	fmt.Fprintf(&b, "collector:\n")
	if o.kubeconfig != "" {
		fmt.Fprintf(&b, "  kubeconfig: %q\n", o.kubeconfig)
	}
	b.WriteString(o.collectorExtra)
	if o.webhookListen != "" {
		fmt.Fprintf(&b, "  audit_webhook:\n    enabled: true\n    listen: %q\n    tls_cert_file: %q\n    tls_key_file: %q\n    client_ca_file: %q\n",
			o.webhookListen, k.WebhookCert, k.WebhookKey, k.WebhookClientCA)
		if o.maxBodyBytes > 0 {
			fmt.Fprintf(&b, "    max_body_bytes: %d\n", o.maxBodyBytes)
		}
	}
	if len(o.tailPaths) > 0 {
		fmt.Fprintf(&b, "  audit_tail:\n    enabled: true\n    paths: [%s]\n    positions_file: %q\n    start_at: %s\n",
			quoteAll(o.tailPaths), filepath.Join(e.dir, "positions.yaml"), o.startAt)
		// Fast polls and frequent checkpoints: a kill -9 then re-reads
		// little, and the test waits less.
		fmt.Fprintf(&b, "    poll_interval: 50ms\n    batch_wait: 50ms\n    positions_sync_interval: 500ms\n")
		if x := strings.TrimRight(o.tailExtra, "\n"); x != "" {
			b.WriteString(x + "\n")
		}
	}
	fmt.Fprintf(&b, "publish:\n  ack_timeout: 5s\n  write_timeout: 5s\n  max_attempts: 2\n")
	fmt.Fprintf(&b, "  spool: {dir: %q, fsync: always, retry_backoff: 250ms}\n", filepath.Join(e.dir, "spool"))
	b.WriteString(o.publishExtra)
	e.cfgPath = filepath.Join(e.dir, "collector.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs `kubesift collect` and waits until /readyz answers 200.
func (e *collectEnv) start(name string) *testenv.Proc {
	e.t.Helper()
	p := testenv.Start(e.t, name, nil, "collect", "-c", e.cfgPath)
	testenv.WaitFor(e.t, name+" ready", time.Minute, func() bool {
		if p.Exited() {
			e.t.Fatalf("%s exited during start-up:\n%s", name, testenv.Tail(p.LogPath, 30))
		}
		res, err := http.Get("http://" + e.metrics + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return p
}

// metric scrapes the running collector; missing endpoint: -1.
func (e *collectEnv) metric(name string, labels ...string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := testenv.Metrics(ctx, e.metrics)
	if err != nil {
		return -1
	}
	return testenv.Sum(m, name, labels...)
}

// ---------------------------------------------------------------- Kafka

func colKafkaClient(broker string) (*kafka.Client, func()) {
	// Its own transport: kafka-go's default one pools connections
	// process-wide, and one from before a broker restart fails.
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: tr}, tr.CloseIdleConnections
}

func colHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// pathCopies indexes the audit topic by delivering source (kubesift-origin)
// and record ID.
type pathCopies struct {
	byPath map[string]map[string][]kafka.Message // origin -> id -> copies
}

func indexAudit(t *testing.T, msgs []kafka.Message) pathCopies {
	t.Helper()
	pc := pathCopies{byPath: map[string]map[string][]kafka.Message{}}
	for _, m := range msgs {
		id, origin := colHeader(m, record.HeaderID), colHeader(m, publish.HeaderOrigin)
		if id == "" {
			t.Fatalf("message %d/%d without %s", m.Partition, m.Offset, record.HeaderID)
		}
		if pc.byPath[origin] == nil {
			pc.byPath[origin] = map[string][]kafka.Message{}
		}
		pc.byPath[origin][id] = append(pc.byPath[origin][id], m)
	}
	return pc
}

// missing returns the ids of want that origin did not deliver.
func (pc pathCopies) missing(origin string, want []string) []string {
	var out []string
	for _, id := range want {
		if len(pc.byPath[origin][id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// checkCopies checks that every copy of one record ID delivered by one path
// is the same record: same envelope ID, same audit event (the object). It
// returns the number of extra copies.
func (pc pathCopies) checkCopies(t *testing.T, origin string, ids []string) int {
	t.Helper()
	dups := 0
	for _, id := range ids {
		copies := pc.byPath[origin][id]
		if len(copies) < 2 {
			continue
		}
		dups += len(copies) - 1
		first, err := record.Unmarshal(copies[0].Value)
		if err != nil {
			t.Fatalf("%s copy of %s: %v", origin, id, err)
		}
		for _, c := range copies[1:] {
			r, err := record.Unmarshal(c.Value)
			if err != nil {
				t.Fatalf("%s copy of %s: %v", origin, id, err)
			}
			if r.ID != id || string(r.Object) != string(first.Object) {
				t.Errorf("%s delivered %s twice with different contents", origin, id)
			}
		}
	}
	return dups
}

// ------------------------------------------------------- the audit log

// auditLogWatch reads the ground's audit log independently of the
// collector: what was appended since it was created. It keeps the file open,
// so a rotation meanwhile (--audit-log-maxsize) still reads the rest of the
// old file, and the new file from its start.
type auditLogWatch struct {
	path  string
	f     *os.File
	start int64
}

func watchAuditLog(t *testing.T, path string) *auditLogWatch {
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
	return &auditLogWatch{path: path, f: f, start: fi.Size()}
}

// records returns the records of requests made with user agent ua, by ID.
func (w *auditLogWatch) records(t *testing.T, ua string) map[string]*record.Record {
	t.Helper()
	out := map[string]*record.Record{}
	collect := func(r io.Reader) {
		// Only complete lines: kube-apiserver may be writing the last one.
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var lines strings.Builder
		for sc.Scan() {
			line := sc.Bytes()
			if !strings.Contains(string(line), ua) {
				continue
			}
			lines.Write(line)
			lines.WriteByte('\n')
		}
		recs, errs := record.DecodeAll([]byte(lines.String()), w.path, record.DecodeOptions{})
		for _, err := range errs {
			t.Fatalf("audit log: %v", err)
		}
		for _, r := range recs {
			if r.Audit != nil && r.Audit.UserAgent == ua {
				out[r.ID] = r
			}
		}
	}
	collect(io.NewSectionReader(w.f, w.start, 1<<62))
	if cur, err := os.Stat(w.path); err == nil {
		if old, err := w.f.Stat(); err == nil && !os.SameFile(cur, old) {
			if f, err := os.Open(w.path); err == nil { // rotated: the new file too
				collect(f)
				f.Close()
			}
		}
	}
	return out
}

func sortedIDs(m map[string]*record.Record) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// apiserverAuditErrors reads kube-apiserver's apiserver_audit_error_total
// for the webhook backend: audit events it gave up on (retries exhausted, or
// its buffer full).
func apiserverAuditErrors(t *testing.T, k testenv.Kube) float64 {
	t.Helper()
	c := colKubeHTTP(t, k)
	req, _ := http.NewRequest(http.MethodGet, k.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+k.AdminToken)
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("kube-apiserver /metrics: %v", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `apiserver_audit_error_total{plugin="webhook"} `); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// webhookDrop is an audit event kube-apiserver's webhook backend gave up on
// (its log: "Error in audit plugin 'webhook' affecting N audit events",
// then one "AUDIT: id=… user-agent=…" line per event).
type webhookDrop struct {
	at        time.Time // the event's timestamp
	id, agent string
}

// apiserverLog follows kube-apiserver's own log (next to its audit log).
type apiserverLog struct {
	path  string
	start int64
}

func watchAPIServerLog(t *testing.T, k testenv.Kube) *apiserverLog {
	t.Helper()
	path := filepath.Join(filepath.Dir(k.AuditLog), "kube-apiserver.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("kube-apiserver log: %v", err)
	}
	return &apiserverLog{path: path, start: fi.Size()}
}

// webhookDrops returns the events the webhook backend dropped since the
// watch began.
func (l *apiserverLog) webhookDrops(t *testing.T) []webhookDrop {
	t.Helper()
	f, err := os.Open(l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.NewSectionReader(f, l.start, 1<<62))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var out []webhookDrop
	impacted := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Error in audit plugin 'webhook'"):
			impacted = true
		case impacted && strings.Contains(line, " AUDIT: id="):
			ts, rest, _ := strings.Cut(line, " AUDIT: ")
			at, _ := time.Parse(time.RFC3339Nano, ts)
			out = append(out, webhookDrop{at: at, id: logField(rest, "id"), agent: logField(rest, "user-agent")})
		case impacted && line != "Impacted events:":
			impacted = false
		}
	}
	return out
}

// logField extracts key="value" (Go-quoted) from an AUDIT: line.
func logField(s, key string) string {
	i := strings.Index(s, key+`="`)
	if i < 0 {
		return ""
	}
	v, err := strconv.QuotedPrefix(s[i+len(key)+1:])
	if err != nil {
		return ""
	}
	u, _ := strconv.Unquote(v)
	return u
}

func colKubeHTTP(t *testing.T, k testenv.Kube) *http.Client {
	t.Helper()
	tc, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// webhookClient is an HTTPS client presenting kube-apiserver's audit client
// certificate (generated next to the client CA by hack/testenv/kube.sh), to
// post to the collector as the API server does.
func webhookClient(t *testing.T, k testenv.Kube) *http.Client {
	t.Helper()
	pki := filepath.Dir(k.WebhookClientCA)
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "audit-client.crt"), filepath.Join(pki, "audit-client.key"))
	if err != nil {
		t.Fatalf("the API server's audit client certificate: %v", err)
	}
	tc, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(pki, "audit-webhook-ca.crt")}})
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}
}

// ------------------------------------------------ driving the API server

// The namespace and ServiceAccount that hack/testenv/kube/audit-policy.yaml
// records at RequestResponse (Secrets, ConfigMaps, TokenRequests there; and
// TokenReviews made by the ServiceAccount), so planted secrets really reach
// the audit bodies.
const (
	colRedactionNS = "kubesift-redaction-test"
	colReviewerSA  = "kubesift-redaction-reviewer"
)

func colKubeClient(t *testing.T, k testenv.Kube, token, ua string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: k.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		UserAgent: ua, QPS: 1000, Burst: 2000, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// colSetupRedactionNS creates (once per ground) the namespace, the reviewer
// ServiceAccount and its right to create TokenReviews.
func colSetupRedactionNS(ctx context.Context, t *testing.T, cs *kubernetes.Clientset) {
	t.Helper()
	ok := func(err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: colRedactionNS}}, metav1.CreateOptions{})
	ok(err)
	_, err = cs.CoreV1().ServiceAccounts(colRedactionNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: colReviewerSA}}, metav1.CreateOptions{})
	ok(err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubesift-redaction-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: colReviewerSA, Namespace: colRedactionNS}},
	}, metav1.CreateOptions{})
	ok(err)
}

// plants holds the secret values a test wrote to the API server. Values it
// makes up start with plantPrefix, so searching for the prefix (plain, or
// base64 at each of the three alignments) finds any of them, also inside
// longer base64 text; real tokens (TokenRequest JWTs) are searched one by one.
type plants struct {
	mu  sync.Mutex
	n   int
	raw []string
}

const plantPrefix = "PLANTED-SECRET-"

// plantNeedles are the byte strings whose presence in a message means a
// planted value leaked: the prefix, and its base64 forms at the three
// possible alignments (only the characters fully determined by the prefix).
var plantNeedles = func() []string {
	out := []string{plantPrefix}
	for shift := 0; shift < 3; shift++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", shift) + plantPrefix + "\x00\x00\x00"))
		// 3-byte groups lying wholly inside the prefix.
		first := (shift + 2) / 3
		last := (shift + len(plantPrefix)) / 3 // exclusive
		if last > first {
			out = append(out, enc[4*first:4*last])
		}
	}
	return out
}()

func (p *plants) add(v string) string {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	return plantPrefix + v
}

func (p *plants) addRaw(v string) {
	p.mu.Lock()
	p.raw = append(p.raw, v)
	p.mu.Unlock()
}

func (p *plants) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n + len(p.raw)
}

// find returns the planted value (or form of it) found in b, or "".
func (p *plants) find(b []byte) string {
	s := string(b)
	for _, m := range plantNeedles {
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

// scanForPlants checks every message of every topic (key, value, header
// values) for planted values and returns how many messages it scanned and
// how many message parts held one.
func scanForPlants(t *testing.T, broker string, topics []string, p *plants) (scanned, found int) {
	t.Helper()
	n := 0
	for _, tp := range topics {
		for _, m := range testenv.ReadTopic(t, broker, tp) {
			n++
			parts := [][]byte{m.Key, m.Value}
			for _, h := range m.Headers {
				parts = append(parts, h.Value)
			}
			for _, b := range parts {
				if v := p.find(b); v != "" {
					found++
					t.Errorf("topic %s, message %d/%d (%s) holds a planted secret: %q", tp, m.Partition, m.Offset,
						colHeader(m, record.HeaderID), v)
				}
			}
		}
	}
	return n, found
}

// apiDriver makes API requests as one user agent, planting secret values
// everywhere the collector must redact them.
type apiDriver struct {
	t      *testing.T
	k      testenv.Kube
	cs     *kubernetes.Clientset
	ua     string
	run    string
	plants *plants
	count  atomic.Int64 // requests made
}

func newAPIDriver(t *testing.T, k testenv.Kube, run string) *apiDriver {
	ua := "kubesift-collect-e2e/" + run
	d := &apiDriver{t: t, k: k, ua: ua, run: run, plants: &plants{}, cs: colKubeClient(t, k, k.AdminToken, ua)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	colSetupRedactionNS(ctx, t, d.cs)
	return d
}

// drive makes about n requests with workers goroutines, paced so that each
// worker makes at most perSecond requests per second (0: as fast as the API
// server answers), and returns the first error.
func (d *apiDriver) drive(ctx context.Context, n, workers int, perSecond float64) error {
	const perIter = 10
	iters := (n + perIter*workers - 1) / (perIter * workers)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
	}
	for w := range workers {
		wg.Go(func() {
			var tick *time.Ticker
			if perSecond > 0 {
				tick = time.NewTicker(time.Duration(float64(time.Second) * perIter / perSecond))
				defer tick.Stop()
			}
			for i := range iters {
				if tick != nil {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
				if err := d.iteration(ctx, w, i); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// iteration makes perIter (10) requests: a ConfigMap with credential keys
// (create, get, update), a Secret with data, stringData and last-applied
// (create, get, patch), a list with ?token= in the query, a list or get, and
// two deletes (the delete responses carry the objects). Every 25th one also
// makes a TokenRequest and a TokenReview of the real token (2 more).
func (d *apiDriver) iteration(ctx context.Context, w, i int) error {
	cs, p := d.cs, d.plants
	n := fmt.Sprintf("%s-%d-%d", d.run, w, i)
	labels := map[string]string{"kubesift-run": d.run}
	cmName, secName := "cm-"+n, "sec-"+n
	do := func(err error) error {
		d.count.Add(1)
		if err != nil {
			return fmt.Errorf("request %d of %s: %w", d.count.Load(), n, err)
		}
		return nil
	}
	cms, secs := cs.CoreV1().ConfigMaps(colRedactionNS), cs.CoreV1().Secrets(colRedactionNS)
	_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cmName, Labels: labels},
		Data: map[string]string{"db_password": p.add("cmpw-" + n), "log_level": "info"}}, metav1.CreateOptions{})
	if err := do(err); err != nil {
		return err
	}
	got, err := cms.Get(ctx, cmName, metav1.GetOptions{})
	if err := do(err); err != nil {
		return err
	}
	got.Data["db_password"] = p.add("cmpw2-" + n)
	got.Data["api_key"] = p.add("cmkey-" + n)
	_, err = cms.Update(ctx, got, metav1.UpdateOptions{})
	if err := do(err); err != nil {
		return err
	}
	la := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":%q},"stringData":{"password":%q}}`, secName, p.add("lastapplied-"+n))
	_, err = secs.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secName, Labels: labels,
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": la}},
		Data:       map[string][]byte{"password": []byte(p.add("secdata-" + n))},
		StringData: map[string]string{"token": p.add("secstr-" + n)}}, metav1.CreateOptions{})
	if err := do(err); err != nil {
		return err
	}
	_, err = secs.Get(ctx, secName, metav1.GetOptions{})
	if err := do(err); err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"stringData":{"password":%q}}`, p.add("secpatch-"+n))
	_, err = secs.Patch(ctx, secName, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	if err := do(err); err != nil {
		return err
	}
	err = cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/"+colRedactionNS+"/configmaps").
		Param("limit", "1").Param("token", p.add("uritoken-"+n)).Do(ctx).Error()
	if err := do(err); err != nil {
		return err
	}
	if i%10 == 0 {
		_, err = secs.List(ctx, metav1.ListOptions{LabelSelector: "kubesift-run=" + d.run, Limit: 20})
	} else {
		_, err = cms.Get(ctx, cmName, metav1.GetOptions{})
	}
	if err := do(err); err != nil {
		return err
	}
	if err := do(secs.Delete(ctx, secName, metav1.DeleteOptions{})); err != nil {
		return err
	}
	if err := do(cms.Delete(ctx, cmName, metav1.DeleteOptions{})); err != nil {
		return err
	}
	if i%25 != 0 {
		return nil
	}
	// A TokenRequest (the response holds a real ServiceAccount token) and a
	// TokenReview of it by the reviewer ServiceAccount (the request holds it).
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(colRedactionNS).CreateToken(ctx, colReviewerSA,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err := do(err); err != nil {
		return err
	}
	parts := strings.Split(tr.Status.Token, ".")
	p.addRaw(parts[len(parts)-1]) // the JWT signature is unique per token
	reviewer := colKubeClient(d.t, d.k, tr.Status.Token, d.ua)
	_, err = reviewer.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
	return do(err)
}
