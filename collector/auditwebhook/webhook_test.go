package auditwebhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/record"
)

const testToken = "s3cr3t-webhook-token"

func event(id string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}`, id)
}

func eventList(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

type env struct {
	t    testing.TB
	pki  *pki
	pub  *fakePub
	rcv  *Receiver
	reg  *prometheus.Registry
	url  string
	stop context.CancelFunc
	done chan error
	// skew moves the receiver's clock on (nanoseconds), for the
	// certificate check interval.
	skew *atomic.Int64
}

type envOpt func(*config.AuditWebhookConfig)

func withToken(c *config.AuditWebhookConfig) { c.BearerToken = testToken }
func withoutCA(c *config.AuditWebhookConfig) { c.ClientCAFile = "" }
func maxBody(n int64) envOpt                 { return func(c *config.AuditWebhookConfig) { c.MaxBodyBytes = n } }
func maxInFlight(n int) envOpt               { return func(c *config.AuditWebhookConfig) { c.MaxInFlight = n } }
func grace(d time.Duration) envOpt           { return func(c *config.AuditWebhookConfig) { c.ShutdownGrace = d } }

// start runs a Receiver on a loopback port with mTLS (and whatever opts add),
// publishing to a fakePub.
func start(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	pub := &fakePub{}
	e := startWith(t, pub, prometheus.NewRegistry(), opts...)
	e.pub = pub
	return e
}

// startWith is start with the Receiver publishing to pub and registering
// its metrics with reg.
func startWith(t testing.TB, pub collector.Publisher, reg *prometheus.Registry, opts ...envOpt) *env {
	t.Helper()
	p := newPKI(t)
	cfg := config.Default().Collector
	wc := cfg.AuditWebhook
	wc.Enabled, wc.Listen, wc.TLSCertFile, wc.TLSKeyFile, wc.ClientCAFile = true, "127.0.0.1:0", p.serverCert, p.serverKey, p.clientCA
	wc.ShutdownGrace = 5 * time.Second
	for _, o := range opts {
		o(&wc)
	}
	san, err := redact.New(cfg.Redaction, cfg.Size, 1024, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	skew := new(atomic.Int64)
	rcv, err := New(Options{Config: wc, Publisher: pub, Sanitizer: san, Cluster: record.Cluster{Name: "c1", UID: "u1"},
		DeadLetterMaxBytes: 1024, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, pki: p, rcv: rcv, reg: reg, url: "https://" + ln.Addr().String() + "/audit", stop: cancel, done: make(chan error, 1), skew: skew}
	go func() { e.done <- rcv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return e
}

func (e *env) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: e.pki.serverCA}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
}

func (e *env) post(c *http.Client, body string, hdr ...string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("POST: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name     string
		opts     []envOpt
		cert     string // good, rogue, noeku, none
		auth     string
		wantCode int
	}{
		{"mTLS with the trusted client CA", nil, "good", "", 200},
		{"client cert from another CA", nil, "rogue", "", 403},
		{"client cert without clientAuth usage", nil, "noeku", "", 403},
		{"no credentials (mTLS only)", nil, "none", "", 401},
		{"bearer token ok", []envOpt{withToken, withoutCA}, "none", "Bearer " + testToken, 200},
		{"bearer scheme is case-insensitive", []envOpt{withToken, withoutCA}, "none", "bearer " + testToken, 200},
		{"wrong bearer token", []envOpt{withToken, withoutCA}, "none", "Bearer nope", 403},
		{"token with a different length", []envOpt{withToken, withoutCA}, "none", "Bearer " + testToken + "x", 403},
		{"basic auth is not accepted", []envOpt{withToken, withoutCA}, "none", "Basic " + testToken, 403},
		{"no token", []envOpt{withToken, withoutCA}, "none", "", 401},
		{"token-only: a client cert alone is not enough", []envOpt{withToken, withoutCA}, "good", "", 401},
		{"both configured: cert suffices", []envOpt{withToken}, "good", "", 200},
		{"both configured: token suffices", []envOpt{withToken}, "none", "Bearer " + testToken, 200},
		{"both configured: rogue cert and good token", []envOpt{withToken}, "rogue", "Bearer " + testToken, 200},
		{"both configured: rogue cert, no token", []envOpt{withToken}, "rogue", "", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tc.opts...)
			var cert *tls.Certificate
			switch tc.cert {
			case "good":
				cert = &e.pki.goodClient
			case "rogue":
				cert = &e.pki.rogueClient
			case "noeku":
				cert = &e.pki.goodClientNoClientAuthEKU
			}
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			resp := e.post(e.client(cert), eventList(event("a1")), hdr...)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			ids := e.pub.ids()
			rejected := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("auth"))
			if tc.wantCode == 200 {
				if len(ids) != 1 || ids[0] != "a1:ResponseComplete" || rejected != 0 {
					t.Errorf("published %v, rejected %v", ids, rejected)
				}
			} else {
				if len(ids) != 0 || rejected != 1 {
					t.Errorf("rejected request published %v (rejected counter %v)", ids, rejected)
				}
				if tc.wantCode == 401 && e.rcv.tokenHash != nil && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
}

func TestBodySizeLimit(t *testing.T) {
	e := start(t, maxBody(2000))
	big := eventList(event("a1"), event("a2"), event("a3"), event("a4"), event("a5"), event("a6"), event("a7"), event("a8"), event("a9"))
	resp := e.post(e.client(&e.pki.goodClient), big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if ids := e.pub.ids(); len(ids) != 0 {
		t.Errorf("published %v", ids)
	}
	dls := e.pub.deadLetters()
	if len(dls) != 1 || dls[0].Reason != "too_large" || dls[0].Source != Source || len(dls[0].Data) == 0 || len(dls[0].Data) > 1024 {
		t.Fatalf("dead letters %+v", dls)
	}
	if !bytes.HasPrefix(dls[0].Data, []byte(`{"kind":"EventList"`)) {
		t.Errorf("dead letter does not hold the head of the body: %.80s", dls[0].Data)
	}
	if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("size")); got != 1 {
		t.Errorf("rejected{size} = %v", got)
	}
	// Within the limit the same receiver accepts.
	if resp := e.post(e.client(&e.pki.goodClient), eventList(event("b1"))); resp.StatusCode != 200 {
		t.Errorf("small body: %d", resp.StatusCode)
	}
}

func TestMalformedItemsBecomeDeadLetters(t *testing.T) {
	badField := strings.Replace(event("bad1"), `"username":"alice"`, `"username":5`, 1)
	unknown := `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"not-an-event"}}`
	tests := []struct {
		name        string
		body        string
		wantIDs     []string
		wantReasons []string
		wantData    []string // substrings of each dead letter's data
	}{
		{"bad items among good ones", eventList(event("g1"), badField, event("g2"), unknown),
			[]string{"g1:ResponseComplete", "g2:ResponseComplete"}, []string{"field", "unknown_kind"}, []string{`"auditID":"bad1"`, "not-an-event"}},
		{"not JSON at all", "this is not json", nil, []string{"syntax"}, []string{"this is not json"}},
		{"truncated body", eventList(event("t1"))[:100], nil, []string{"syntax"}, []string{`"kind":"EventList"`}},
		{"blocking mode: one event per list", eventList(event("b1")), []string{"b1:ResponseComplete"}, nil, nil},
		{"single event without a list", event("s1"), []string{"s1:ResponseComplete"}, nil, nil},
		{"empty list", eventList(), nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			resp := e.post(e.client(&e.pki.goodClient), tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := strings.Join(e.pub.ids(), ","); got != strings.Join(tc.wantIDs, ",") {
				t.Errorf("published %q, want %q", got, strings.Join(tc.wantIDs, ","))
			}
			dls := e.pub.deadLetters()
			if len(dls) != len(tc.wantReasons) {
				t.Fatalf("%d dead letters, want %d: %+v", len(dls), len(tc.wantReasons), dls)
			}
			for i, dl := range dls {
				if dl.Reason != tc.wantReasons[i] || !strings.Contains(string(dl.Data), tc.wantData[i]) || dl.Error == "" ||
					dl.Offset != -1 || dl.Origin == "" || dl.Cluster.Name != "c1" {
					t.Errorf("dead letter %d: %+v (data %s)", i, dl, dl.Data)
				}
			}
			if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("malformed")); got != float64(len(tc.wantReasons)) {
				t.Errorf("rejected{malformed} = %v", got)
			}
		})
	}
}

func TestBackpressureAndErrors(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		dlErr     error
		body      string
		wantCode  int
		wantRetry bool
	}{
		{"backpressure on records", collector.ErrBackpressure, nil, eventList(event("a1")), 429, true},
		{"wrapped backpressure", fmt.Errorf("spool: %w", collector.ErrBackpressure), nil, eventList(event("a1")), 429, true},
		{"backpressure on a dead letter", nil, collector.ErrBackpressure, eventList(event("a1"), `{"kind":"Pod"}`), 429, true},
		{"other publisher error", errors.New("closed"), nil, eventList(event("a1")), 500, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			e.pub.err, e.pub.dlErr = tc.err, tc.dlErr
			resp := e.post(e.client(&e.pki.goodClient), tc.body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if ra := resp.Header.Get("Retry-After"); tc.wantRetry && ra != "1" {
				t.Errorf("Retry-After %q", ra)
			}
			if ids := e.pub.ids(); len(ids) != 0 {
				t.Errorf("published %v", ids)
			}
			// Once the publisher recovers, the retried batch goes through.
			e.pub.mu.Lock()
			e.pub.err, e.pub.dlErr = nil, nil
			e.pub.mu.Unlock()
			if resp := e.post(e.client(&e.pki.goodClient), tc.body); resp.StatusCode != 200 {
				t.Errorf("retry: %d", resp.StatusCode)
			}
		})
	}
}

// The answer must not be sent before Publish returned.
func TestAcknowledgesOnlyAfterPublish(t *testing.T) {
	e := start(t)
	e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
	got := make(chan int, 1)
	go func() { got <- e.post(e.client(&e.pki.goodClient), eventList(event("a1"))).StatusCode }()
	<-e.pub.entered
	select {
	case code := <-got:
		t.Fatalf("answered %d while Publish was still running", code)
	case <-time.After(300 * time.Millisecond):
	}
	close(e.pub.block)
	if code := <-got; code != 200 {
		t.Fatalf("status %d", code)
	}
	if ids := e.pub.ids(); len(ids) != 1 {
		t.Errorf("published %v", ids)
	}
}

func TestMaxInFlight(t *testing.T) {
	e := start(t, maxInFlight(1))
	e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
	first := make(chan int, 1)
	go func() { first <- e.post(e.client(&e.pki.goodClient), eventList(event("a1"))).StatusCode }()
	<-e.pub.entered
	start := time.Now()
	resp := e.post(e.client(&e.pki.goodClient), eventList(event("a2")))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("429 took %s; must be immediate", time.Since(start))
	}
	close(e.pub.block)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d", code)
	}
}

func TestShutdown(t *testing.T) {
	e := start(t, grace(5*time.Second))
	e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
	first := make(chan int, 1)
	go func() { first <- e.post(e.client(&e.pki.goodClient), eventList(event("a1"))).StatusCode }()
	<-e.pub.entered
	e.stop()
	// A request reaching the handler while draining gets 503 + Retry-After.
	testenv.WaitFor(t, "the receiver draining", time.Minute, e.rcv.draining.Load)
	rec := httptest.NewRecorder()
	e.rcv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/audit", strings.NewReader(eventList(event("a2")))))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("while draining: %d", rec.Code)
	}
	// The request in flight still completes within the grace period.
	close(e.pub.block)
	if code := <-first; code != 200 {
		t.Errorf("in-flight request: %d", code)
	}
	if err := <-e.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	e.done <- nil // for the cleanup
}

func TestMethodAndEncoding(t *testing.T) {
	e := start(t)
	c := e.client(&e.pki.goodClient)
	resp, err := c.Get(e.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if resp := e.post(c, eventList(event("a1")), "Content-Encoding", "gzip"); resp.StatusCode != 415 {
		t.Errorf("gzip: %d", resp.StatusCode)
	}
}

func TestRecordsAreRedactedAndStamped(t *testing.T) {
	e := start(t)
	secret := `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"},"data":{"password":"cGxhbnRlZC12YWx1ZS14eXo="}}`
	ev := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"s1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets?token=planted-uri-token","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"default","name":"s","apiVersion":"v1"},"requestObject":%s,"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}`, secret)
	if resp := e.post(e.client(&e.pki.goodClient), eventList(ev)); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	if len(e.pub.recs) != 1 {
		t.Fatalf("%d records", len(e.pub.recs))
	}
	r := e.pub.recs[0]
	out, _ := record.Marshal(r)
	if strings.Contains(string(out), "cGxhbnRlZC12YWx1ZS14eXo") || strings.Contains(string(out), "planted-uri-token") {
		t.Errorf("secret published: %s", out)
	}
	if r.Cluster != (record.Cluster{Name: "c1", UID: "u1"}) || len(r.Flags.Redacted) != 2 {
		t.Errorf("cluster %+v flags %+v", r.Cluster, r.Flags)
	}
}

func TestNewValidates(t *testing.T) {
	p := newPKI(t)
	base := config.Default().Collector.AuditWebhook
	base.TLSCertFile, base.TLSKeyFile, base.ClientCAFile = p.serverCert, p.serverKey, p.clientCA
	cfg := config.Default().Collector
	san, _ := redact.New(cfg.Redaction, cfg.Size, 0, nil, nil)
	tests := []struct {
		name string
		mut  func(*config.AuditWebhookConfig)
		want string
	}{
		{"missing cert", func(c *config.AuditWebhookConfig) { c.TLSCertFile = "/nonexistent" }, "tls_cert_file"},
		{"CA file without certificates", func(c *config.AuditWebhookConfig) { c.ClientCAFile = p.serverKey }, "client_ca_file: " + p.serverKey + " holds no PEM certificate"},
		{"no authentication", func(c *config.AuditWebhookConfig) { c.ClientCAFile = "" }, "neither client_ca_file nor bearer_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mut(&c)
			_, err := New(Options{Config: c, Publisher: &fakePub{}, Sanitizer: san})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCertificateRenewal: a certificate renewed in place (the Secret's files
// replaced, here by one from another CA so the client can tell) is served
// on the next handshake after the check interval, without a restart, and
// the expiry metric follows it.
func TestCertificateRenewal(t *testing.T) {
	e := start(t)
	if r := e.post(e.client(&e.pki.goodClient), eventList(event("before"))); r.StatusCode != http.StatusOK {
		t.Fatalf("before renewal: %d", r.StatusCode)
	}
	newCA := testenv.NewKeyPair(t, testenv.CertSpec{CN: "renewed-ca", IsCA: true})
	renewed := testenv.NewKeyPair(t, testenv.CertSpec{CN: "receiver", Parent: newCA, NotAfter: time.Now().Add(48 * time.Hour),
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	dir := t.TempDir()
	certFile, keyFile := renewed.Write(t, dir, "renewed")
	for _, f := range [][2]string{{certFile, e.pki.serverCert}, {keyFile, e.pki.serverKey}} {
		if err := os.Rename(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	e.skew.Store(int64(tlsfiles.DefaultCheckInterval))
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: newCA.Pool(), Certificates: []tls.Certificate{e.pki.goodClient}}}}
	if r := e.post(c, eventList(event("after"))); r.StatusCode != http.StatusOK {
		t.Fatalf("after renewal: %d", r.StatusCode)
	}
	if got := strings.Join(e.pub.ids(), ","); !strings.Contains(got, "after") || !strings.Contains(got, "before") {
		t.Errorf("published %s", got)
	}
	want := fmt.Sprintf(`
# HELP kubesift_tls_certificate_expiry_timestamp_seconds When the certificate a kubesift listener serves expires (Unix time).
# TYPE kubesift_tls_certificate_expiry_timestamp_seconds gauge
kubesift_tls_certificate_expiry_timestamp_seconds{listener="audit-webhook"} %d
`, renewed.Cert.NotAfter.Unix())
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "kubesift_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

// TestConnectionCap: connections over max_connections are closed as soon as
// they are accepted, so idle clients cannot hold the descriptors the API
// server's batches need; once one of them goes, a batch is served again.
func TestConnectionCap(t *testing.T) {
	e := start(t, func(c *config.AuditWebhookConfig) { c.MaxConnections = 2 })
	addr := strings.TrimSuffix(strings.TrimPrefix(e.url, "https://"), "/audit")
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	testenv.WaitFor(t, "two connections open", 10*time.Second, func() bool {
		return testenv.Metric(t, e.reg, "kubesift_listener_connections_open") == 2
	})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pki.serverCA,
		Certificates: []tls.Certificate{e.pki.goodClient}}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(eventList(event("cap1"))))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served (%d), want it closed", resp.StatusCode)
	}
	if testenv.Metric(t, e.reg, "kubesift_listener_connections_refused_total") < 1 {
		t.Fatal("refused connection not counted")
	}
	idle[0].Close()
	testenv.WaitFor(t, "an idle connection's slot freed", 10*time.Second, func() bool {
		return testenv.Metric(t, e.reg, "kubesift_listener_connections_open") < 2
	})
	if resp := e.post(c, eventList(event("cap2"))); resp.StatusCode != http.StatusOK {
		t.Fatalf("after a slot was freed: %d", resp.StatusCode)
	}
	idle[1].Close()
}
