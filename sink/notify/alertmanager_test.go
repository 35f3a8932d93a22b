package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// fakeAM answers POST /api/v2/alerts with code after checking the body is
// a list of postable alerts, and records what it accepted.
type fakeAM struct {
	srv  *httptest.Server
	code int
	mu   sync.Mutex
	got  [][]AMPostableAlert
	auth []string
}

func newFakeAM(t *testing.T, code int) *fakeAM {
	f := &fakeAM{code: code}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []AMPostableAlert
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if r.Method != http.MethodPost || r.URL.Path != "/am/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" || dec.Decode(&as) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, as)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		w.WriteHeader(f.code)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAM) posts() ([][]AMPostableAlert, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]AMPostableAlert(nil), f.got...), append([]string(nil), f.auth...)
}

// TestAlertmanagerAlerts: labels are the routing labels (alertname = rule
// ID, multi-valued joined, empty dropped), annotations carry the texts and
// IDs, endsAt is end_after after the later of startsAt and now when firing
// and now when resolved, and generatorURL links Kibana.
func TestAlertmanagerAlerts(t *testing.T) {
	now := t0.Add(time.Hour)
	fresh := notifytest.PrivilegedPod(0, "a")
	fresh.Time = now.Add(-time.Minute)
	fresh.SourceIP, fresh.UserAgent, fresh.AuditID = "10.0.0.7", "kubectl/v1.37", "audit-1"
	old := notifytest.PrivilegedPod(0, "b") // an hour before now
	deadman := rules.Alert{ID: "d", RuleID: "kubesift-deadman", Title: "silent", Severity: rules.SeverityHigh, Cluster: "c", Time: now}
	huge := notifytest.PrivilegedPod(0, "h")
	huge.Time, huge.Message = now, strings.Repeat("m", 1<<20)
	tests := []struct {
		name             string
		alert            rules.Alert
		resolved         bool
		wantEnds         time.Time
		wantLabels       map[string]string
		absentLabels     []string
		wantAnnotations  map[string]string
		wantGeneratorURL bool
	}{
		{name: "firing", alert: fresh, wantEnds: now.Add(5 * time.Minute),
			wantLabels: map[string]string{"alertname": "k8s-privileged-pod", "rule_id": "k8s-privileged-pod", "severity": "critical",
				"cluster": "prod-eu-1", "namespace": "payments", "tag": "privileged,workload", "technique": "T1610,T1611", "source": "audit"},
			wantAnnotations: map[string]string{"summary": "Privileged pod created", "alert_id": fresh.ID, "record_id": "audit-a",
				"source_ip": "10.0.0.7", "user_agent": "kubectl/v1.37", "audit_id": "audit-1"},
			wantGeneratorURL: true},
		{name: "late alert still fires", alert: old, wantEnds: now.Add(5 * time.Minute)},
		{name: "resolved", alert: fresh, resolved: true, wantEnds: now},
		{name: "empty labels dropped", alert: deadman, wantEnds: now.Add(5 * time.Minute), absentLabels: []string{"source", "namespace", "tag", "user"}},
		{name: "huge message cut", alert: huge, wantEnds: now.Add(5 * time.Minute)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAM(t, http.StatusOK)
			a, err := NewAlertmanager(config.AlertmanagerConfig{URLs: []string{f.srv.URL + "/am/"}, EndAfter: 5 * time.Minute,
				KibanaURL: "https://kibana.example.com"}, f.srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			a.Now = func() time.Time { return now }
			n := testNotification(tc.alert)
			n.Resolved = tc.resolved
			if retry, err := a.Notify(context.Background(), n); err != nil || retry {
				t.Fatalf("Notify = %v, %v", retry, err)
			}
			posts, _ := f.posts()
			if len(posts) != 1 || len(posts[0]) != 1 {
				t.Fatalf("posts: %+v", posts)
			}
			p := posts[0][0]
			if !p.StartsAt.Equal(tc.alert.Time) || !p.EndsAt.Equal(tc.wantEnds) {
				t.Errorf("startsAt %v endsAt %v, want %v %v", p.StartsAt, p.EndsAt, tc.alert.Time, tc.wantEnds)
			}
			for k, v := range tc.wantLabels {
				if p.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, p.Labels[k], v)
				}
			}
			for _, k := range tc.absentLabels {
				if _, ok := p.Labels[k]; ok {
					t.Errorf("empty label %s posted", k)
				}
			}
			for k, v := range tc.wantAnnotations {
				if p.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, p.Annotations[k], v)
				}
			}
			for k, v := range p.Annotations {
				if len([]rune(v)) > maxAnnotation {
					t.Errorf("annotation %s has %d characters", k, len([]rune(v)))
				}
			}
			if tc.wantGeneratorURL && (!strings.HasPrefix(p.GeneratorURL, "https://kibana.example.com/app/discover#/") || p.Annotations["kibana_url"] != p.GeneratorURL) {
				t.Errorf("generatorURL %q", p.GeneratorURL)
			}
		})
	}
}

// TestAlertmanagerEveryURL: every Alertmanager gets the alerts; one
// acceptance is enough; all failing retryably is retried, one refusal for
// good is not; credentials go in the header and never in an error.
func TestAlertmanagerEveryURL(t *testing.T) {
	tests := []struct {
		name      string
		codes     []int
		wantRetry bool
		wantErr   bool
	}{
		{"all accept", []int{200, 200}, false, false},
		{"one accepts", []int{503, 200}, false, false},
		{"all down", []int{503, 429}, true, true},
		{"one refuses", []int{400, 503}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			var fakes []*fakeAM
			for _, c := range tc.codes {
				f := newFakeAM(t, c)
				fakes = append(fakes, f)
				urls = append(urls, f.srv.URL+"/am")
			}
			a, err := NewAlertmanager(config.AlertmanagerConfig{URLs: urls, EndAfter: time.Minute, BearerToken: "am-TOKEN-secret"}, http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			retry, err := a.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "a")))
			if retry != tc.wantRetry || (err != nil) != tc.wantErr {
				t.Fatalf("Notify = %v, %v; want retry %v, error %v", retry, err, tc.wantRetry, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "am-TOKEN-secret") || strings.Contains(err.Error(), "127.0.0.1")) {
				t.Errorf("error shows a credential or URL: %v", err)
			}
			for i, f := range fakes {
				posts, auth := f.posts()
				if len(posts) != 1 || auth[0] != "Bearer am-TOKEN-secret" {
					t.Errorf("alertmanager[%d]: %d posts, auth %v", i, len(posts), auth)
				}
			}
		})
	}
	// Basic auth.
	f := newFakeAM(t, 200)
	a, _ := NewAlertmanager(config.AlertmanagerConfig{URLs: []string{f.srv.URL + "/am"},
		BasicAuth: &config.BasicAuthConfig{Username: "kubesift", Password: "pw"}}, http.DefaultClient)
	if _, err := a.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "a"))); err != nil {
		t.Fatal(err)
	}
	if _, auth := f.posts(); len(auth) != 1 || auth[0] != "Basic a3ViZXNpZnQ6cHc=" {
		t.Errorf("basic auth header %v", auth)
	}
}
