package notify

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = notifytest.T0

func testNotification(alerts ...rules.Alert) *Notification {
	n := &Notification{
		Receiver: "security", GroupKey: `{}:{cluster="prod-eu-1",rule_id="k8s-privileged-pod"}`,
		GroupLabels: map[string]string{"cluster": "prod-eu-1", "rule_id": "k8s-privileged-pod"},
		Alerts:      alerts, Count: len(alerts), Total: len(alerts), Seq: 1, Time: t0,
	}
	for _, a := range alerts {
		n.ids = append(n.ids, a.ID)
	}
	n.IdempotencyKey = IdempotencyKey(n.Receiver, n.GroupKey, n.ids)
	return n
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n--- got\n%s", name, got)
	}
}

func TestSlackGoldenPrivilegedPod(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, err := NewSlack(config.SlackConfig{
		URL: config.Secret(srv.URL + "/services/T000/B000/XXXX"), Channel: "#k8s-security",
		KibanaURL: "https://kibana.example.com/", KibanaDataView: "kubesift-alerts", MaxAlerts: 10,
	}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	n := testNotification(notifytest.PrivilegedPod(0, "evil-0"), notifytest.PrivilegedPod(1, "evil-1"), notifytest.PrivilegedPod(2, "evil-2"))
	if retry, err := s.Notify(context.Background(), n); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	var pretty map[string]any
	if err := json.Unmarshal(got, &pretty); err != nil {
		t.Fatalf("Slack got invalid JSON: %v", err)
	}
	out, _ := json.MarshalIndent(pretty, "", "  ")
	golden(t, "slack-privileged-pod.golden.json", append(out, '\n'))
}

func TestSlackEscapesAttackerControlledText(t *testing.T) {
	s, _ := NewSlack(config.SlackConfig{URL: "http://x/", MaxAlerts: 10}, http.DefaultClient)
	a := notifytest.PrivilegedPod(0, "<!channel>")
	a.User = "<https://evil.example|click me>"
	a.Message = "pod <!here> & more"
	b, _ := json.Marshal(s.Message(testNotification(a, a)))
	for _, bad := range []string{"<!channel>", "<!here>", "<https://evil"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("message contains unescaped %q", bad)
		}
	}
	if !strings.Contains(string(b), "\\u0026lt;!channel\\u0026gt;") {
		t.Errorf("escaped name missing: %s", b)
	}
}

func TestSlackLongTextIsCut(t *testing.T) {
	s, _ := NewSlack(config.SlackConfig{URL: "http://x/", MaxAlerts: 10}, http.DefaultClient)
	a := notifytest.PrivilegedPod(0, "p")
	a.Title = strings.Repeat("T", 400)
	a.Message = strings.Repeat("m", 5000)
	m := s.Message(testNotification(a))
	blocks := m.Attachments[0].Blocks
	if n := len([]rune(blocks[0].Text.Text)); n > slackHeaderMax {
		t.Errorf("header %d runes", n)
	}
	if n := len([]rune(blocks[1].Text.Text)); n > slackSectionMax {
		t.Errorf("section %d runes", n)
	}
}

// TestRetryHonoursRetryAfter: a 429 with Retry-After is retried after that
// wait (not the backoff), through the one retry stage, and then succeeds.
func TestRetryHonoursRetryAfter(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "rate_limited")
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, _ := NewSlack(config.SlackConfig{URL: config.Secret(srv.URL + "/services/SECRET"), MaxAlerts: 10}, srv.Client())
	var retried []error
	// Initial backoff far below Retry-After: the wait must come from the header.
	err := Retry(context.Background(), backoff.Policy{Initial: time.Millisecond, Max: 10 * time.Second}, s,
		testNotification(notifytest.PrivilegedPod(0, "p")), func(_ int, err error) { retried = append(retried, err) })
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || len(retried) != 1 {
		t.Fatalf("calls %d, retries %d", calls.Load(), len(retried))
	}
	var se *sink.StatusError
	if !errors.As(retried[0], &se) || se.StatusCode != 429 || se.After != time.Second || se.Detail != "rate_limited" {
		t.Errorf("retried error = %#v", retried[0])
	}
	// A lower bound only (a loaded machine can only make it later).
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want >= Retry-After 1s", gap)
	}
}

func TestStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		status int
		retry  bool
	}{{200, false}, {204, false}, {400, false}, {404, false}, {410, false}, {429, true}, {500, true}, {503, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) }))
		w, _ := NewWebhook(config.WebhookConfig{URL: config.Secret(srv.URL + "/hook?token=SECRETTOKEN")}, srv.Client())
		retry, err := w.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "p")))
		srv.Close()
		if retry != tc.retry || (err == nil) != (tc.status < 300) {
			t.Errorf("HTTP %d: retry %v err %v", tc.status, retry, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETTOKEN") {
			t.Errorf("HTTP %d: error shows the URL: %v", tc.status, err)
		}
	}
}

// TestNetworkErrorsHideTheURL: net/http's *url.Error prints the URL, whose
// path is a Slack webhook's credential; ours must not.
func TestNetworkErrorsHideTheURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused
	for _, target := range []string{
		"http://" + addr + "/services/T0/B0/SECRETPATH",
		"http://" + addr + "/hook?token=SECRETPATH",
	} {
		s, _ := NewSlack(config.SlackConfig{URL: config.Secret(target), MaxAlerts: 10}, &http.Client{Timeout: time.Second})
		retry, err := s.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "p")))
		if err == nil || !retry {
			t.Fatalf("refused connection: retry %v err %v", retry, err)
		}
		if strings.Contains(err.Error(), "SECRETPATH") {
			t.Errorf("error shows the URL: %v", err)
		}
	}
	// A timeout stays retryable and is still recognisable.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the handler
	s, _ := NewSlack(config.SlackConfig{URL: config.Secret(srv.URL + "/SECRETPATH"), MaxAlerts: 10}, &http.Client{Timeout: 50 * time.Millisecond})
	retry, err := s.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "p")))
	if !retry || err == nil || strings.Contains(err.Error(), "SECRETPATH") {
		t.Errorf("timeout: retry %v err %v", retry, err)
	}
}

func TestWebhookSignatureAndIdempotency(t *testing.T) {
	secret := []byte("s3cret")
	type got struct {
		body []byte
		h    http.Header
	}
	ch := make(chan got, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{b, r.Header.Clone()}
	}))
	defer srv.Close()
	w, err := NewWebhook(config.WebhookConfig{
		URL: config.Secret(srv.URL), Secret: config.Secret(secret),
		Headers: map[string]config.Secret{"Authorization": "Bearer abc"},
	}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	w.Now = func() time.Time { return t0 }
	n := testNotification(notifytest.PrivilegedPod(0, "a"), notifytest.PrivilegedPod(1, "b"))
	if _, err := w.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	g := <-ch
	sig := g.h.Get(SignatureHeader)
	if g.h.Get(IdempotencyHeader) != n.IdempotencyKey || g.h.Get("Authorization") != "Bearer abc" {
		t.Errorf("headers: %v", g.h)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, g.body, t0.Add(time.Minute), nil},
		{"other secret", []byte("guess"), g.body, t0, ErrSignatureMismatch},
		{"tampered body", secret, append([]byte(" "), g.body...), t0, ErrSignatureMismatch},
		{"replayed later", secret, g.body, t0.Add(10 * time.Minute), ErrSignatureExpired},
		{"from the future", secret, g.body, t0.Add(-10 * time.Minute), ErrSignatureExpired},
	} {
		if err := VerifySignature(tc.secret, sig, tc.body, tc.now, 5*time.Minute); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, h := range []string{"", "t=1", "v1=00", "t=x,v1=00", "garbage"} {
		if err := VerifySignature(secret, h, g.body, t0, time.Minute); !errors.Is(err, ErrSignatureMissing) {
			t.Errorf("header %q: got %v", h, err)
		}
	}
	var p WebhookPayload
	if err := json.Unmarshal(g.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Version != "kubesift/v1" || p.Count != 2 || len(p.Alerts) != 2 || p.Alerts[1].Name != "b" || p.IdempotencyKey != n.IdempotencyKey {
		t.Errorf("payload: %+v", p)
	}
	// A retry of the same notification carries the same key; the key does
	// not depend on the order of the alerts.
	if _, err := w.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if g2 := <-ch; g2.h.Get(IdempotencyHeader) != n.IdempotencyKey {
		t.Error("retry has another idempotency key")
	}
	if IdempotencyKey("security", n.GroupKey, []string{n.ids[1], n.ids[0]}) != n.IdempotencyKey {
		t.Error("key depends on alert order")
	}
	if IdempotencyKey("other", n.GroupKey, n.ids) == n.IdempotencyKey || IdempotencyKey("security", n.GroupKey, n.ids[:1]) == n.IdempotencyKey {
		t.Error("key ignores the receiver or the alert set")
	}
}

func TestAlertmanagerPayload(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	w, _ := NewWebhook(config.WebhookConfig{URL: config.Secret(srv.URL), Format: config.WebhookFormatAlertmanager, MaxAlerts: 2}, srv.Client())
	n := testNotification(notifytest.PrivilegedPod(0, "a"), notifytest.PrivilegedPod(1, "b"), notifytest.PrivilegedPod(2, "c"))
	if _, err := w.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	// Decode into the shape Alertmanager's own template.Data has.
	var p struct {
		Version, GroupKey, Status, Receiver, ExternalURL string
		TruncatedAlerts                                  int
		GroupLabels, CommonLabels, CommonAnnotations     map[string]string
		Alerts                                           []struct {
			Status                    string
			Labels, Annotations       map[string]string
			StartsAt, EndsAt          time.Time
			GeneratorURL, Fingerprint string
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if p.Version != "4" || p.Status != "firing" || p.TruncatedAlerts != 1 || len(p.Alerts) != 2 {
		t.Errorf("payload: %+v", p)
	}
	a := p.Alerts[0]
	if a.Labels["alertname"] != "k8s-privileged-pod" || a.Labels["tag"] != "privileged,workload" || a.Labels["severity"] != "critical" ||
		a.Annotations["summary"] != "Privileged pod created" || !a.StartsAt.Equal(t0) || a.Fingerprint == "" {
		t.Errorf("alert: %+v", a)
	}
	if p.CommonLabels["name"] != "" || p.CommonLabels["cluster"] != "prod-eu-1" {
		t.Errorf("common labels: %v", p.CommonLabels)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second}, {now.Add(-time.Hour).Format(http.TimeFormat), 0}} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzVerifySignature: arbitrary headers never panic and never verify
// without the secret's HMAC.
func FuzzVerifySignature(f *testing.F) {
	body := []byte(`{"version":"kubesift/v1"}`)
	f.Add(Sign([]byte("k"), t0, body))
	f.Add("t=1,v1=zz")
	f.Add("t=,v1=,v1=00")
	f.Fuzz(func(t *testing.T, h string) {
		err := VerifySignature([]byte("other-key"), h, body, t0, time.Hour)
		if err == nil {
			t.Fatalf("header %q verified with the wrong key", h)
		}
	})
}
