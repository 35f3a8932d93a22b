package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

func TestDecodeSilenceRequest(t *testing.T) {
	now := t0
	for _, tc := range []struct{ name, body, want string }{
		{"ok duration", `{"matchers":["rule_id=k8s-privileged-pod"],"duration":"2h","created_by":"bob","comment":"maintenance"}`, ""},
		{"ok ends_at", `{"matchers":["cluster=~\"dev-.*\""],"ends_at":"2026-12-01T00:00:00Z","created_by":"bob","comment":"x"}`, ""},
		{"unknown field", `{"matchers":["a=b"],"duration":"1h","created_by":"b","comment":"c","endsAt":"x"}`, `unknown field "endsAt"`},
		{"bad matcher", `{"matchers":["rule_id=~("],"duration":"1h","created_by":"b","comment":"c"}`, "matchers[0]: label rule_id: invalid regular expression"},
		{"unknown label", `{"matchers":["rule=x"],"duration":"1h","created_by":"b","comment":"c"}`, `matchers[0]: label "rule" is not one of`},
		{"mutes all", `{"matchers":["rule_id=~\".*\""],"duration":"1h","created_by":"b","comment":"c"}`, "would silence every alert"},
		{"mutes all by meaning", `{"matchers":["rule_id=~.+"],"duration":"1h","created_by":"b","comment":"c"}`, `would silence every alert (rule_id=~.+ matches every alert); narrow the matchers, or set "force": true`},
		{"forced", `{"matchers":["rule_id=~.+"],"duration":"1h","created_by":"b","comment":"c","force":true}`, ""},
		{"no matchers", `{"matchers":[],"duration":"1h","created_by":"b","comment":"c"}`, "matchers: at least one"},
		{"both ends", `{"matchers":["rule_id=x"],"duration":"1h","ends_at":"2027-01-01T00:00:00Z","created_by":"b","comment":"c"}`, "give one, not both"},
		{"no end", `{"matchers":["rule_id=x"],"created_by":"b","comment":"c"}`, "ends_at or duration: required"},
		{"past", `{"matchers":["rule_id=x"],"ends_at":"2020-01-01T00:00:00Z","created_by":"b","comment":"c"}`, "already in the past"},
		{"bad duration", `{"matchers":["rule_id=x"],"duration":"-1h","created_by":"b","comment":"c"}`, "not a positive duration"},
		{"no author", `{"matchers":["rule_id=x"],"duration":"1h","comment":"c"}`, "created_by: required"},
		{"no comment", `{"matchers":["rule_id=x"],"duration":"1h","created_by":"b"}`, "comment: required"},
		{"two values", `{"matchers":["rule_id=x"],"duration":"1h","created_by":"b","comment":"c"} {}`, "more than one JSON value"},
		{"not json", `matchers=x`, "body: invalid character"},
		{"start after end", `{"matchers":["rule_id=x"],"starts_at":"2027-01-01T00:00:00Z","ends_at":"2026-12-31T00:00:00Z","created_by":"b","comment":"c"}`, "ends_at: must be after starts_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := DecodeSilenceRequest(strings.NewReader(tc.body), now)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !s.EndsAt.After(now) || len(s.Matchers) != 1 {
					t.Errorf("silence %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeSilenceRequest: any body either decodes to a valid silence
// that ends in the future, or is refused with an error — never a panic.
func FuzzDecodeSilenceRequest(f *testing.F) {
	f.Add(`{"matchers":["rule_id=k8s-privileged-pod"],"duration":"2h","created_by":"bob","comment":"m"}`)
	f.Add(`{"matchers":["tag!~\"a|b\"","severity=critical"],"starts_at":"2026-11-30T14:00:00Z","ends_at":"2026-12-30T14:00:00Z","created_by":"b","comment":"c"}`)
	f.Add(`{"matchers":null}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		s, err := DecodeSilenceRequest(strings.NewReader(body), t0)
		if err != nil {
			return
		}
		if verr := s.Validate(); verr != nil {
			t.Fatalf("accepted an invalid silence: %v", verr)
		}
		if !s.EndsAt.After(t0) {
			t.Fatalf("accepted a silence that already ended: %v", s.EndsAt)
		}
		if _, err := json.Marshal(&s); err != nil {
			t.Fatalf("accepted silence does not encode: %v", err)
		}
	})
}

// esStore opens a silence store on the real test Elasticsearch in an index
// of its own.
func esStore(t *testing.T, index string) *ESSilences {
	t.Helper()
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewESSilences(ctx, es, index)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })
	return s
}

// esURL is the test Elasticsearch, with the test ground's shared lock held
// so that no fault test stops Elasticsearch under this test.
func esURL(t testing.TB) string {
	t.Helper()
	u := testenv.ElasticsearchURL(t)
	testenv.SharedLock(t)
	return u
}

func testIndex(t *testing.T) string {
	return fmt.Sprintf("kubesift-silences-test-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

func silenceFor(t *testing.T, dur time.Duration, matchers ...string) Silence {
	t.Helper()
	ms, err := match.ParseAll(matchers)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(dur), CreatedBy: "test", Comment: "maintenance window"}
}

// TestSilencesSurviveRestart (real Elasticsearch): a silence created before
// a restart still suppresses after it (a new store and silencer on the same
// index, as a restarted or another replica would open); an expired silence
// does not; and a silence stops suppressing when its time is up.
func TestSilencesSurviveRestart(t *testing.T) {
	index := testIndex(t)
	// The store first: opening it waits for the test ground's shared lock,
	// which a fault test (Elasticsearch stopped for 2 minutes) may hold;
	// the deadline is for the test's own calls, not for that wait.
	before := NewSilencer(esStore(t, index), time.Minute, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := before.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	kept, err := before.Create(ctx, silenceFor(t, 2*time.Hour, "rule_id=k8s-privileged-pod", "namespace=payments"))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := before.Create(ctx, silenceFor(t, 2*time.Hour, "cluster=prod-eu-1", "namespace=kube-system"))
	if err != nil {
		t.Fatal(err)
	}
	if err := before.Expire(ctx, expired.ID); err != nil {
		t.Fatal(err)
	}
	if err := before.Expire(ctx, "no-such-silence"); !errors.Is(err, ErrSilenceNotFound) {
		t.Errorf("expire unknown: %v", err)
	}

	// "Restart": a fresh store (re-opening the existing index) and cache.
	after := NewSilencer(esStore(t, index), time.Minute, nil)
	if err := after.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	pod := notifytest.PrivilegedPod(0, "web")
	reason, muted := after.Mutes(Labels(&pod), &pod, now)
	if !muted || !strings.Contains(reason, kept.ID) {
		t.Errorf("after restart: muted %v (%s), want muted by %s", muted, reason, kept.ID)
	}
	sys := pod
	sys.ID, sys.Namespace = "k8s-privileged-pod:audit-sys", "kube-system"
	if reason, muted := after.Mutes(Labels(&sys), &sys, now); muted {
		t.Errorf("expired silence still mutes: %s", reason)
	}
	if _, muted := after.Mutes(Labels(&pod), &pod, now.Add(3*time.Hour)); muted {
		t.Error("silence mutes after its ends_at")
	}
	list := after.List(now, true)
	if len(list) != 2 || list[0].ID != kept.ID || list[1].Status(now) != "expired" {
		t.Errorf("list: %+v", list)
	}
	if active := after.List(now, false); len(active) != 1 {
		t.Errorf("active list: %+v", active)
	}

	// And through the dispatcher: the reopened silences mute at flush.
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		Silences:  after,
	})
	h.clock.Set(now)
	h.add(t, pod)
	h.add(t, sys)
	h.d.tick(h.ctx, now)
	h.waitDone(t)
	if got := rcv.payloads(); len(got) != 1 || got[0].Count != 1 || got[0].Alerts[0].Namespace != "kube-system" {
		t.Errorf("delivered %+v", got)
	}
	if h.states.count(StateSilenced) != 1 {
		t.Errorf("silenced states: %d", h.states.count(StateSilenced))
	}
}

// TestSilenceAPI drives the HTTP API and the CLI's client against the real
// Elasticsearch store.
func TestSilenceAPI(t *testing.T) {
	sil := NewSilencer(esStore(t, testIndex(t)), time.Minute, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sil.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var logs testenv.Buffer
	h, err := NewSilenceAPI(sil, "api-token", slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	// Unauthenticated and wrong-token requests are refused, counted by
	// reason and logged without the token; the scheme is case-insensitive
	// (RFC 9110 §11.1).
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer api-token-and-more", http.StatusUnauthorized},
		{"api-token", http.StatusUnauthorized},
		{"Basic YXBpLXRva2Vu", http.StatusUnauthorized},
		{"Bearer api-token", http.StatusOK},
		{"bearer api-token", http.StatusOK},
		{"BEARER  api-token", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/silences", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("auth %q: HTTP %d, want %d", tc.auth, res.StatusCode, tc.status)
		}
	}
	msrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer msrv.Close()
	m, err := testenv.Metrics(ctx, strings.TrimPrefix(msrv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float64{"missing": 3, "wrong": 2} {
		if got := testenv.Sum(m, "kubesift_listener_auth_rejected_total", `listener="silence-api"`, `reason="`+reason+`"`); got != want {
			t.Errorf("rejected{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if l := logs.String(); !strings.Contains(l, "bearer token missing") || !strings.Contains(l, "bearer token wrong") ||
		!strings.Contains(l, "remote=127.0.0.1:") || strings.Contains(l, "api-token") {
		t.Errorf("refusals not logged as they should be:\n%s", l)
	}

	c := &SilenceClient{URL: srv.URL, Token: "api-token", HTTP: srv.Client()}
	created, err := c.Create(ctx, SilenceRequest{Matchers: []string{"rule_id=k8s-privileged-pod"}, Duration: "1h", CreatedBy: "alice", Comment: "rollout"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, SilenceRequest{Matchers: []string{"rule_id=~.*"}, Duration: "1h", CreatedBy: "a", Comment: "c"}); err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "would silence every alert") {
		t.Errorf("mute-all: %v", err)
	}
	// The guardrail reads the matchers' meaning: .+ on a label every alert
	// has mutes everything too. force overrides it.
	if _, err := c.Create(ctx, SilenceRequest{Matchers: []string{"rule_id=~.+"}, Duration: "1h", CreatedBy: "a", Comment: "c"}); err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "rule_id=~.+") {
		t.Errorf("mute-all with .+: %v", err)
	}
	list, err := c.List(ctx, false)
	if err != nil || len(list) != 1 || list[0].ID != created.ID || list[0].Status != "active" {
		t.Fatalf("list: %+v %v", list, err)
	}
	forced, err := c.Create(ctx, SilenceRequest{Matchers: []string{"rule_id=~.+"}, Duration: "1h", CreatedBy: "a", Comment: "incident: page by phone", Force: true})
	if err != nil {
		t.Fatalf("forced: %v", err)
	}
	if !strings.Contains(logs.String(), "silence created with force") {
		t.Errorf("forced silence not logged as such:\n%s", logs.String())
	}
	if pod := notifytest.PrivilegedPod(0, "y"); !func() bool { _, m := sil.Mutes(Labels(&pod), &pod, time.Now()); return m }() {
		t.Error("forced silence does not mute")
	}
	if err := c.Expire(ctx, forced.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Expire(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Expire(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("expire unknown: %v", err)
	}
	if list, err := c.List(ctx, false); err != nil || len(list) != 0 {
		t.Errorf("after expire: %+v %v", list, err)
	}
	if list, err := c.List(ctx, true); err != nil || len(list) != 2 || list[0].Status != "expired" {
		t.Errorf("with expired: %+v %v", list, err)
	}
	pod := notifytest.PrivilegedPod(0, "x")
	if _, muted := sil.Mutes(Labels(&pod), &pod, time.Now()); muted {
		t.Error("expired silence mutes")
	}
	// A body over the cap is refused.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/silences", io.LimitReader(strings.NewReader(`{"comment":"`+strings.Repeat("x", 100<<10)+`"}`), 200<<10))
	req.Header.Set("Authorization", "Bearer api-token")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("large body: HTTP %d", res.StatusCode)
	}
}
