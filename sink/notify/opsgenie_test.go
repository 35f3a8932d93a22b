package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

const ogAPIKey = "0gk3y-SECRET-1234-5678-abcdef012345"

// ogRequest is one request the fake Opsgenie accepted.
type ogRequest struct {
	path, identifierType string
	alert                OGAlert
	close                OGClose
}

// fakeOpsgenie is the Alert API as documented: it checks the GenieKey,
// the content type and every field's presence, enum and length, and
// answers like the service — 202 with its JSON, 401, 422 with a message,
// or what it is scripted to say.
type fakeOpsgenie struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []ogRequest
	scriptedAnswer
}

func newFakeOpsgenie(t *testing.T) *fakeOpsgenie {
	f := &fakeOpsgenie{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		answer := func(code int, msg string) {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"message":%q,"took":0.001,"requestId":"r-1"}`, msg)
		}
		if f.answered(w) {
			return
		}
		if r.Header.Get("Authorization") != "GenieKey "+ogAPIKey {
			answer(http.StatusUnauthorized, "Could not authenticate")
			return
		}
		if ct := r.Header.Get("Content-Type"); r.Method != http.MethodPost || ct != "application/json" {
			answer(http.StatusBadRequest, "POST application/json expected, got "+r.Method+" "+ct)
			return
		}
		req := ogRequest{path: r.URL.Path, identifierType: r.URL.Query().Get("identifierType")}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var problems []string
		switch {
		case r.URL.Path == "/v2/alerts":
			if err := dec.Decode(&req.alert); err != nil {
				answer(http.StatusBadRequest, err.Error())
				return
			}
			problems = validateOGAlert(req.alert)
		case strings.HasPrefix(r.URL.Path, "/v2/alerts/") && strings.HasSuffix(r.URL.Path, "/close"):
			if err := dec.Decode(&req.close); err != nil && err != io.EOF {
				answer(http.StatusBadRequest, err.Error())
				return
			}
			if req.identifierType != "alias" {
				problems = append(problems, "identifierType "+req.identifierType)
			}
			if len(req.close.Source) > 100 || len(req.close.Note) > 25000 {
				problems = append(problems, "close: source or note too long")
			}
		default:
			answer(http.StatusNotFound, "no such endpoint "+r.URL.Path)
			return
		}
		if len(problems) > 0 {
			answer(http.StatusUnprocessableEntity, strings.Join(problems, "; "))
			return
		}
		f.mu.Lock()
		f.got = append(f.got, req)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"result":"Request will be processed","took":0.302,"requestId":"43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpsgenie) requests() []ogRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ogRequest(nil), f.got...)
}

func validateOGAlert(a OGAlert) []string {
	var p []string
	n := func(s string) int { return len([]rune(s)) }
	if n(a.Message) == 0 || n(a.Message) > 130 {
		p = append(p, fmt.Sprintf("message must be 1 to 130 characters, got %d", n(a.Message)))
	}
	if n(a.Alias) > 512 || n(a.Description) > 15000 || n(a.Entity) > 512 || n(a.Source) > 100 {
		p = append(p, "alias, description, entity or source too long")
	}
	switch a.Priority {
	case "P1", "P2", "P3", "P4", "P5":
	default:
		p = append(p, "priority "+a.Priority)
	}
	if len(a.Tags) > 20 {
		p = append(p, "more than 20 tags")
	}
	for _, t := range a.Tags {
		if n(t) > 50 {
			p = append(p, "tag over 50 characters")
		}
	}
	for _, r := range a.Responders {
		switch r.Type {
		case "team", "teams", "user", "escalation", "schedule":
		default:
			p = append(p, "responder type "+r.Type)
		}
	}
	size := 0
	for k, v := range a.Details {
		size += n(k) + n(v)
	}
	if size > 8000 {
		p = append(p, "details over 8000 characters")
	}
	return p
}

func newTestOpsgenie(t *testing.T, url string, mod func(*config.OpsgenieConfig)) *Opsgenie {
	t.Helper()
	cfg := config.OpsgenieConfig{APIKey: ogAPIKey, APIURL: url, SendResolved: true}
	if mod != nil {
		mod(&cfg)
	}
	o, err := NewOpsgenie(cfg, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOpsgenieRequests: create and close of one group share the alias;
// the fields are within Opsgenie's limits whatever the alerts hold.
func TestOpsgenieRequests(t *testing.T) {
	huge := notifytest.PrivilegedPod(0, strings.Repeat("n", 3000))
	huge.Title, huge.Message, huge.Cluster = strings.Repeat("T", 3000), strings.Repeat("m", 1<<20), strings.Repeat("c", 3000)
	many := make([]rules.Alert, 40)
	for i := range many {
		many[i] = notifytest.PrivilegedPod(i, fmt.Sprint("p", i))
		many[i].Message = strings.Repeat("x", 1000)
	}
	base := testNotification(notifytest.PrivilegedPod(0, "a"), notifytest.PrivilegedPod(1, "b"))
	tests := []struct {
		name     string
		n        *Notification
		mod      func(*config.OpsgenieConfig)
		path     string
		priority string
		message  string // prefix
	}{
		{name: "create", n: base, path: "/v2/alerts", priority: "P1", message: "[critical] Privileged pod created in prod-eu-1 (2 alerts)"},
		{name: "close", n: resolvedOf(base), path: "/v2/alerts/" + GroupIncidentKey(base.Receiver, base.GroupKey) + "/close"},
		{name: "configured", n: base, path: "/v2/alerts", priority: "P3", message: "pod on prod-eu-1",
			mod: func(c *config.OpsgenieConfig) {
				c.Priority = map[string]string{"critical": "P3"}
				c.Message, c.Description = `pod on {{ .CommonLabels.cluster }}`, `{{ len .Alerts }} alerts`
				c.Responders = []config.OpsgenieResponder{{Name: "security", Type: "team"}, {Username: "alice@example.com", Type: "user"}}
				c.Tags, c.Entity, c.Source = []string{"kubesift", "k8s"}, "prod-eu-1", "kubesift-prod"
			}},
		{name: "huge alert", n: testNotification(huge), path: "/v2/alerts", priority: "P1", message: "[critical] TTT"},
		{name: "many alerts", n: testNotification(many...), path: "/v2/alerts", priority: "P1", message: "[critical] Privileged pod created in prod-eu-1 (40 alerts)"},
		{name: "no alert listed", n: testNotification(), path: "/v2/alerts", priority: "P5", message: "kubesift alerts of {}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeOpsgenie(t)
			o := newTestOpsgenie(t, f.srv.URL, tc.mod)
			if retry, err := o.Notify(context.Background(), tc.n); err != nil || retry {
				t.Fatalf("Notify = %v, %v", retry, err)
			}
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].path != tc.path {
				t.Fatalf("requests %+v, want one to %s", reqs, tc.path)
			}
			if tc.n.Resolved {
				if reqs[0].identifierType != "alias" {
					t.Errorf("identifierType %q", reqs[0].identifierType)
				}
				return
			}
			a := reqs[0].alert
			if a.Alias != GroupIncidentKey(tc.n.Receiver, tc.n.GroupKey) || a.Priority != tc.priority || !strings.HasPrefix(a.Message, tc.message) {
				t.Errorf("alias %q priority %q message %q", a.Alias, a.Priority, a.Message)
			}
			if a.Details["count"] != fmt.Sprint(tc.n.Count) {
				t.Errorf("details %v", a.Details)
			}
		})
	}
}

// TestOpsgenieAnswers: 202 is done; a bad key (401) and an invalid alert
// (422) are not retried; 429 and 5xx are; the key never shows.
func TestOpsgenieAnswers(t *testing.T) {
	tests := []struct {
		name      string
		key       string
		next      func() (int, string)
		wantRetry bool
		wantErr   string
	}{
		{name: "accepted", key: ogAPIKey},
		{name: "wrong key", key: "wrong-" + ogAPIKey, wantErr: "opsgenie create: HTTP 401"},
		{name: "invalid, echoing the key", key: ogAPIKey, wantErr: "HTTP 422",
			next: func() (int, string) { return 422, `{"message":"Key ` + ogAPIKey + ` is not valid","took":0}` }},
		{name: "rate limited", key: ogAPIKey, wantRetry: true, wantErr: "HTTP 429",
			next: func() (int, string) { return 429, `{"message":"Rate limit exceeded"}` }},
		{name: "server error", key: ogAPIKey, wantRetry: true, wantErr: "HTTP 502",
			next: func() (int, string) { return 502, `` }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeOpsgenie(t)
			f.script(tc.next)
			o := newTestOpsgenie(t, f.srv.URL, func(c *config.OpsgenieConfig) { c.APIKey = config.Secret(tc.key) })
			checkAnswer(t, o, tc.wantRetry, tc.wantErr, ogAPIKey)
		})
	}
}
