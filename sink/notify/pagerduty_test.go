package notify

import (
	"context"
	"encoding/json"
	"fmt"
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

// pdRoutingKey is 32 characters, like a real integration key.
const pdRoutingKey = "R0UT1NGKEY0123456789abcdefSECRET"

// fakePagerDuty is the Events API v2 as documented: it validates each
// event (content type, required fields, enums, lengths) and answers like
// the service — 202 with its JSON, 400 with errors, or what it is scripted
// to say.
type fakePagerDuty struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []PDEvent
	scriptedAnswer
}

func newFakePagerDuty(t *testing.T) *fakePagerDuty {
	f := &fakePagerDuty{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if f.answered(w) {
			return
		}
		ev, problems := validatePDEvent(r)
		if len(problems) > 0 {
			b, _ := json.Marshal(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": problems})
			w.WriteHeader(http.StatusBadRequest)
			w.Write(b)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, ev)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"status":"success","message":"Event processed","dedup_key":%q}`, ev.DedupKey)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePagerDuty) events() []PDEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PDEvent(nil), f.got...)
}

func validatePDEvent(r *http.Request) (PDEvent, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" {
		bad("%s %s: not the enqueue endpoint", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		bad("Content-Type %q", ct)
	}
	var ev PDEvent
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		bad("body: %v", err)
		return ev, problems
	}
	if len(ev.RoutingKey) != 32 {
		bad("Length of 'routing_key' is incorrect (should be 32 characters)")
	}
	if len(ev.DedupKey) == 0 || len(ev.DedupKey) > 255 {
		bad("dedup_key must be 1 to 255 characters, got %d", len(ev.DedupKey))
	}
	switch ev.EventAction {
	case "trigger":
		p := ev.Payload
		if p == nil {
			bad("'payload' is missing or blank")
			break
		}
		if p.Summary == "" || len([]rune(p.Summary)) > 1024 {
			bad("'payload.summary' must be 1 to 1024 characters, got %d", len([]rune(p.Summary)))
		}
		if p.Source == "" {
			bad("'payload.source' is missing or blank")
		}
		switch p.Severity {
		case "critical", "error", "warning", "info":
		default:
			bad("'payload.severity' is invalid: %q", p.Severity)
		}
		if p.Timestamp != "" {
			if _, err := time.Parse(time.RFC3339, p.Timestamp); err != nil {
				bad("'payload.timestamp' is not ISO 8601: %q", p.Timestamp)
			}
		}
	case "resolve", "acknowledge":
	default:
		bad("'event_action' is invalid: %q", ev.EventAction)
	}
	return ev, problems
}

func newTestPagerDuty(t *testing.T, url string, mod func(*config.PagerDutyConfig)) *PagerDuty {
	t.Helper()
	cfg := config.PagerDutyConfig{RoutingKey: pdRoutingKey, URL: url + "/v2/enqueue", SendResolved: true}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewPagerDuty(cfg, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func resolvedOf(n *Notification) *Notification {
	r := *n
	r.Resolved = true
	return &r
}

// TestPagerDutyEvents: trigger and resolve of one group share a dedup_key
// (another group's differs), and what PagerDuty would refuse is never sent:
// an empty or huge alert still makes a valid event.
func TestPagerDutyEvents(t *testing.T) {
	huge := notifytest.PrivilegedPod(0, strings.Repeat("n", 5000))
	huge.Title, huge.Message, huge.Cluster = strings.Repeat("T", 3000), strings.Repeat("m", 1<<20), strings.Repeat("c", 2000)
	empty := rules.Alert{ID: "x", Severity: rules.SeverityInfo}
	base := testNotification(notifytest.PrivilegedPod(0, "a"), notifytest.PrivilegedPod(1, "b"))
	counted := testNotification()
	counted.Count, counted.ids = 5, []string{"1", "2", "3", "4", "5"}
	tests := []struct {
		name     string
		n        *Notification
		mod      func(*config.PagerDutyConfig)
		action   string
		severity string
		summary  string // prefix
		source   string
	}{
		{name: "trigger", n: base, action: "trigger", severity: "critical",
			summary: "[critical] Privileged pod created in prod-eu-1 (2 alerts)", source: "prod-eu-1"},
		{name: "resolve", n: resolvedOf(base), action: "resolve"},
		{name: "mapped severity and fields", n: base, action: "trigger", severity: "warning", summary: "rule k8s-privileged-pod", source: "kubesift-prod",
			mod: func(c *config.PagerDutyConfig) {
				c.Severity = map[string]string{"critical": "warning"}
				c.Summary = `rule {{ .GroupLabels.rule_id }}`
				c.Source, c.Component, c.Group, c.Class = "kubesift-prod", "pods", "payments", "audit"
			}},
		{name: "huge fields are cut", n: testNotification(huge), action: "trigger", severity: "critical", summary: "[critical] TTT"},
		{name: "empty alert", n: testNotification(empty), action: "trigger", severity: "info", summary: "[info]", source: "kubesift"},
		{name: "only counted alerts", n: counted, action: "trigger", severity: "info", summary: "kubesift alerts of {}", source: "kubesift"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePagerDuty(t)
			p := newTestPagerDuty(t, f.srv.URL, tc.mod)
			if retry, err := p.Notify(context.Background(), tc.n); err != nil || retry {
				t.Fatalf("Notify = %v, %v", retry, err)
			}
			evs := f.events()
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			ev := evs[0]
			if ev.EventAction != tc.action || ev.RoutingKey != pdRoutingKey || ev.DedupKey != GroupIncidentKey(tc.n.Receiver, tc.n.GroupKey) {
				t.Errorf("event %s dedup %s", ev.EventAction, ev.DedupKey)
			}
			if tc.action == "resolve" {
				if ev.Payload != nil {
					t.Errorf("resolve carries a payload: %+v", ev.Payload)
				}
				return
			}
			pl := ev.Payload
			if pl.Severity != tc.severity || !strings.HasPrefix(pl.Summary, tc.summary) || (tc.source != "" && pl.Source != tc.source) {
				t.Errorf("payload severity %q summary %.80q source %.40q", pl.Severity, pl.Summary, pl.Source)
			}
			if c := pl.CustomDetails; c["count"] != float64(tc.n.Count) || c["truncated"] != float64(tc.n.Count-len(tc.n.Alerts)) {
				t.Errorf("custom_details count %v truncated %v", c["count"], c["truncated"])
			}
			if ev.Client != "kubesift" {
				t.Errorf("client %q", ev.Client)
			}
		})
	}
	if a, b := GroupIncidentKey("r", "{}:{a}"), GroupIncidentKey("r", "{}:{b}"); a == b || len(a) > pdDedupKeyMax {
		t.Errorf("dedup keys %q %q", a, b)
	}
}

// TestPagerDutyAnswers: 202 is done, 400 is not retried, 429 and 5xx are,
// a dead endpoint is; no error carries the routing key, even when the
// service echoes it.
func TestPagerDutyAnswers(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		body      string
		wantRetry bool
		wantErr   string
	}{
		{"accepted", 202, `{"status":"success","message":"Event processed","dedup_key":"x"}`, false, ""},
		{"invalid, echoing the key", 400, `{"status":"invalid event","message":"bad routing_key ` + pdRoutingKey + `"}`, false, "pagerduty trigger: HTTP 400 Bad Request"},
		{"rate limited", 429, `{"status":"throttle event","message":"Requests for this service are arriving too quickly."}`, true, "HTTP 429"},
		{"server error", 503, ``, true, "HTTP 503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePagerDuty(t)
			f.script(func() (int, string) { return tc.code, tc.body })
			checkAnswer(t, newTestPagerDuty(t, f.srv.URL, nil), tc.wantRetry, tc.wantErr, pdRoutingKey)
		})
	}
	// Nobody listening: retried, and neither URL nor key in the error.
	f := newFakePagerDuty(t)
	url := f.srv.URL
	f.srv.Close()
	retry, err := newTestPagerDuty(t, url, nil).Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "a")))
	if !retry || err == nil || strings.Contains(err.Error(), pdRoutingKey) || strings.Contains(err.Error(), url) {
		t.Errorf("dead endpoint: %v, %v", retry, err)
	}
}

func TestPagerDutyBadTemplate(t *testing.T) {
	_, err := NewPagerDuty(config.PagerDutyConfig{RoutingKey: pdRoutingKey, Summary: "{{ .Nope"}, http.DefaultClient)
	if err == nil || !strings.Contains(err.Error(), "template summary") || strings.Contains(err.Error(), pdRoutingKey) {
		t.Errorf("err = %v", err)
	}
	// A field that does not exist fails the notification, not silently.
	p, err := NewPagerDuty(config.PagerDutyConfig{RoutingKey: pdRoutingKey, Summary: "{{ .GroupLabels.nope }}"}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Event(testNotification(notifytest.PrivilegedPod(0, "a"))); err == nil {
		t.Error("missing key rendered without error")
	}
}
