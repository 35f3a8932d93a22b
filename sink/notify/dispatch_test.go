package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// fakeClock is the dispatcher's clock in tests: time moves only when the
// test says so, so nothing depends on how fast a loaded machine runs.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// states records every state change.
type states struct {
	mu sync.Mutex
	by map[string][]string // alert id -> "state: reason"
	n  map[State]int
}

func newStates() *states { return &states{by: map[string][]string{}, n: map[State]int{}} }

func (s *states) AlertState(id string, st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.by[id] = append(s.by[id], string(st)+": "+reason)
	s.n[st]++
}

func (s *states) count(st State) int { s.mu.Lock(); defer s.mu.Unlock(); return s.n[st] }

// webhookReceiver is a real HTTP receiver in-process that records kubesift/v1
// payloads.
type webhookReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []WebhookPayload
	keys []string
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p WebhookPayload
		if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, p)
		r.keys = append(r.keys, req.Header.Get(IdempotencyHeader))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *webhookReceiver) payloads() []WebhookPayload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WebhookPayload(nil), r.got...)
}

func dur(d time.Duration) *time.Duration { return &d }

func rootRoute(t *testing.T, cfg config.RouteConfig) *Route {
	t.Helper()
	if cfg.GroupBy == nil {
		cfg.GroupBy = []string{"cluster", "rule_id"}
	}
	if cfg.GroupWait == nil {
		cfg.GroupWait = dur(30 * time.Second)
	}
	if cfg.GroupInterval == nil {
		cfg.GroupInterval = dur(5 * time.Minute)
	}
	if cfg.RepeatInterval == nil {
		cfg.RepeatInterval = dur(time.Hour)
	}
	r, err := NewRoute(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func webhookIntegration(t *testing.T, name, url string) Integration {
	w, err := NewWebhook(config.WebhookConfig{URL: config.Secret(url)}, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return Integration{Name: name, Notifier: w}
}

type harness struct {
	d      *Dispatcher
	clock  *fakeClock
	states *states
	ctx    context.Context
	done   sync.WaitGroup
}

func newHarness(t *testing.T, opt Options) *harness {
	t.Helper()
	h := &harness{clock: &fakeClock{t: t0}, states: newStates()}
	opt.Now, opt.States = h.clock.Now, h.states
	if opt.MaxGroups == 0 {
		opt.MaxGroups = 100
	}
	if opt.MaxAlertsPerGroup == 0 {
		opt.MaxAlertsPerGroup = 1000
	}
	if opt.QueueSize == 0 {
		opt.QueueSize = 10
	}
	if opt.Backoff.Initial == 0 {
		opt.Backoff = backoff.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	}
	if opt.GiveUpAfter == 0 {
		opt.GiveUpAfter = time.Minute
	}
	d, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := d.startSenders(ctx)
	t.Cleanup(func() { cancel(); wait() })
	h.d, h.ctx = d, ctx
	return h
}

func (h *harness) add(t *testing.T, a rules.Alert) {
	t.Helper()
	h.done.Add(1)
	if err := h.d.Add(h.ctx, a, h.done.Done); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) tick(t *testing.T, at time.Duration) {
	t.Helper()
	h.clock.Set(t0.Add(at))
	if _, err := h.d.tick(h.ctx, t0.Add(at)); err != nil {
		t.Fatal(err)
	}
}

// waitDone waits for every added alert's done. It only bounds a hang; no
// assertion depends on how long it takes.
func (h *harness) waitDone(t *testing.T) {
	t.Helper()
	ch := make(chan struct{})
	go func() { h.done.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(2 * time.Minute):
		t.Fatal("alerts not final after 2 minutes")
	}
}

// TestBurstOfOneRuleIsGrouped: 1,000 alerts of one rule
// on one group key (plus 200 re-deliveries of some of them) produce at most
// the configured number of notifications, with the right counts.
func TestBurstOfOneRuleIsGrouped(t *testing.T) {
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route:             rootRoute(t, config.RouteConfig{Receiver: "sec"}),
		Receivers:         map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		MaxAlertsPerGroup: 100,
	})
	// 1,000 distinct alerts over 20 s, and 200 duplicates of the first 200.
	for i := range 1000 {
		h.clock.Set(t0.Add(time.Duration(i) * 20 * time.Millisecond))
		h.add(t, notifytest.PrivilegedPod(i, fmt.Sprint("p-", i)))
		if i%5 == 0 && i < 1000 {
			h.add(t, notifytest.PrivilegedPod(i/5, fmt.Sprint("p-", i/5)))
		}
	}
	h.tick(t, 29*time.Second) // before group_wait: nothing
	h.tick(t, 30*time.Second) // first notification
	h.waitDone(t)

	// 500 more during group_interval go into the second notification.
	for i := 1000; i < 1500; i++ {
		h.clock.Set(t0.Add(time.Minute))
		h.add(t, notifytest.PrivilegedPod(i, fmt.Sprint("p-", i)))
	}
	h.tick(t, 2*time.Minute)                // inside group_interval: nothing
	h.tick(t, 30*time.Second+5*time.Minute) // second notification
	h.waitDone(t)

	got := rcv.payloads()
	if len(got) != 2 {
		t.Fatalf("%d notifications, want 2", len(got))
	}
	for i, want := range []struct{ count, total, listed int }{{1000, 1000, 100}, {500, 1500, 100}} {
		p := got[i]
		if p.Count != want.count || p.Total != want.total || len(p.Alerts) != want.listed || p.Truncated != want.count-want.listed || p.Seq != i+1 {
			t.Errorf("notification %d: count %d total %d listed %d truncated %d seq %d, want %+v",
				i, p.Count, p.Total, len(p.Alerts), p.Truncated, p.Seq, want)
		}
		if p.GroupLabels["rule_id"] != "k8s-privileged-pod" || p.GroupLabels["cluster"] != "prod-eu-1" {
			t.Errorf("group labels %v", p.GroupLabels)
		}
	}
	if n := h.states.count(StateDelivered); n != 1500 {
		t.Errorf("%d delivered states, want 1500", n)
	}
	if n := h.states.count(StateGrouped); n != 1500 {
		t.Errorf("%d grouped states, want 1500 (duplicates are not new alerts)", n)
	}
}

func TestRoutingContinueAndInheritance(t *testing.T) {
	r := rootRoute(t, config.RouteConfig{Receiver: "default", Routes: []config.RouteConfig{
		{Receiver: "pager", Matchers: []string{"severity=critical"}, Continue: true, GroupWait: dur(0)},
		{Receiver: "sec", Matchers: []string{`tag=~"priv.*"`}, GroupBy: []string{"namespace", "cluster"},
			Routes: []config.RouteConfig{{Matchers: []string{"cluster=dev"}, Receiver: "dev"}}},
		{Receiver: "never", Matchers: []string{"tag=workload"}},
	}})
	crit := notifytest.PrivilegedPod(0, "x")
	routes := r.Match(Labels(&crit))
	if len(routes) != 2 || routes[0].Receiver != "pager" || routes[1].Receiver != "sec" {
		t.Fatalf("routes: %+v", routes)
	}
	if routes[0].GroupWait != 0 || routes[0].GroupInterval != 5*time.Minute || strings.Join(routes[0].GroupBy, ",") != "cluster,rule_id" {
		t.Errorf("pager route did not inherit: %+v", routes[0])
	}
	if strings.Join(routes[1].GroupBy, ",") != "cluster,namespace" || routes[1].GroupWait != 30*time.Second {
		t.Errorf("sec route: %+v", routes[1])
	}
	dev := crit
	dev.Cluster, dev.Severity = "dev", rules.SeverityLow
	if rs := r.Match(Labels(&dev)); len(rs) != 1 || rs[0].Receiver != "dev" || strings.Join(rs[0].GroupBy, ",") != "cluster,namespace" {
		t.Errorf("dev: %+v", rs)
	}
	other := rules.Alert{RuleID: "x", Severity: rules.SeverityInfo, Cluster: "c"}
	if rs := r.Match(Labels(&other)); len(rs) != 1 || rs[0].Receiver != "default" {
		t.Errorf("fallback: %+v", rs)
	}
	if k0, k1 := routes[0].Key(), routes[1].Key(); k0 == k1 || !strings.HasPrefix(k0, "{}/0{") {
		t.Errorf("route keys %q %q", k0, k1)
	}
}

type muteAll struct{ ms []*match.Matcher }

func (m muteAll) Mutes(l match.Labels, _ *rules.Alert, _ time.Time) (string, bool) {
	if match.All(m.ms, l) {
		return "silence s-1", true
	}
	return "", false
}

func TestSilenceAndInhibition(t *testing.T) {
	rcv := newWebhookReceiver(t)
	inh, err := NewInhibitor([]config.InhibitRuleConfig{{
		SourceMatchers: []string{"severity=critical"}, TargetMatchers: []string{"severity=medium"},
		Equal: []string{"cluster", "namespace", "resource", "name"}, Window: time.Hour,
	}})
	if err != nil {
		t.Fatal(err)
	}
	sil, _ := match.ParseAll([]string{"namespace=kube-system"})
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupBy: []string{"cluster"}}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		Inhibitor: inh, Silences: muteAll{sil},
	})
	crit := notifytest.PrivilegedPod(0, "web")
	med := crit
	med.ID, med.RuleID, med.Severity = "medium-on-web", "k8s-pod-exec", rules.SeverityMedium
	medOther := med
	medOther.ID, medOther.Name = "medium-on-db", "db"
	silenced := crit
	silenced.ID, silenced.Namespace = "in-kube-system", "kube-system"
	// The target arrives before its source: inhibition is decided at flush.
	h.add(t, med)
	h.add(t, crit)
	h.add(t, medOther)
	h.add(t, silenced)
	h.tick(t, 30*time.Second)
	h.waitDone(t)
	got := rcv.payloads()
	if len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("payloads: %+v", got)
	}
	ids := []string{got[0].Alerts[0].ID, got[0].Alerts[1].ID}
	if !(ids[0] == crit.ID && ids[1] == medOther.ID) && !(ids[1] == crit.ID && ids[0] == medOther.ID) {
		t.Errorf("delivered %v", ids)
	}
	h.states.mu.Lock()
	defer h.states.mu.Unlock()
	if s := h.states.by[med.ID]; len(s) != 2 || !strings.HasPrefix(s[1], "inhibited: inhibited by alert "+crit.ID) {
		t.Errorf("medium-on-web states: %v", s)
	}
	if s := h.states.by[silenced.ID]; len(s) != 2 || s[1] != "silenced: silence s-1" {
		t.Errorf("silenced states: %v", s)
	}
}

func TestFailedDeliveryIsFinalWithReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
	defer srv.Close()
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", srv.URL+"/hook?token=SECRET")}},
	})
	h.add(t, notifytest.PrivilegedPod(0, "a"))
	h.tick(t, 0)
	h.waitDone(t)
	h.states.mu.Lock()
	defer h.states.mu.Unlock()
	s := h.states.by[notifytest.PrivilegedPod(0, "a").ID]
	if len(s) != 2 || !strings.HasPrefix(s[1], "failed: sec/webhook[0]: webhook post: HTTP 400 Bad Request") || strings.Contains(s[1], "SECRET") {
		t.Errorf("states: %v", s)
	}
}

func TestGroupEvictionFlushesEarly(t *testing.T) {
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec"}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		MaxGroups: 2,
	})
	for i, c := range []string{"a", "b", "c"} {
		a := notifytest.PrivilegedPod(i, c)
		a.Cluster = c
		h.clock.Set(t0.Add(time.Duration(i) * time.Second))
		h.add(t, a)
	}
	// Cluster a's group was evicted to make room for c: flushed at once.
	testenv.WaitFor(t, "the evicted group's notification", time.Minute, func() bool { return len(rcv.payloads()) >= 1 })
	got := rcv.payloads()
	if len(got) != 1 || got[0].GroupLabels["cluster"] != "a" {
		t.Fatalf("after eviction: %+v", got)
	}
	h.tick(t, time.Minute)
	h.waitDone(t)
	if n := len(rcv.payloads()); n != 3 {
		t.Errorf("%d notifications, want 3", n)
	}
}

func TestIdleGroupCloses(t *testing.T) {
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", RepeatInterval: dur(10 * time.Minute)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
	})
	h.add(t, notifytest.PrivilegedPod(0, "a"))
	h.tick(t, 30*time.Second)
	h.tick(t, 10*time.Minute+time.Second) // idle for repeat_interval: closed
	h.d.mu.Lock()
	n := len(h.d.groups)
	h.d.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d groups left", n)
	}
	// A new alert opens a new group that waits group_wait again.
	h.clock.Set(t0.Add(11 * time.Minute))
	h.add(t, notifytest.PrivilegedPod(1, "b"))
	h.tick(t, 11*time.Minute+29*time.Second)
	h.tick(t, 11*time.Minute+30*time.Second)
	h.waitDone(t)
	got := rcv.payloads()
	if len(got) != 2 || got[1].Seq != 1 || got[1].Total != 1 {
		t.Errorf("payloads: %+v", got)
	}
}

// TestReceiverDownThenUp: the receiver's port refuses connections for a
// while; the notification is retried until it is back, nothing is lost, and
// every attempt carries the same idempotency key.
func TestReceiverDownThenUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down
	var mu sync.Mutex
	var keys []string
	var counts int
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupInterval: dur(time.Second)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", "http://"+addr+"/hook")}},
	})
	for i := range 50 {
		h.add(t, notifytest.PrivilegedPod(i, fmt.Sprint("p", i)))
	}
	h.tick(t, 0)
	// Let the retry stage fail a few times against the closed port.
	retries := h.d.m.retries.WithLabelValues("sec/webhook[0]")
	testenv.WaitFor(t, "4 retries against the closed port", time.Minute, func() bool { return testutil.ToFloat64(retries) >= 4 })
	// Up again on the same address; its first two answers are 503, so the
	// receiver sees duplicates — all with one idempotency key.
	l = testenv.Relisten(t, addr)
	requests := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p WebhookPayload
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get(IdempotencyHeader))
		if requests++; requests <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		counts += p.Count
	})}
	go srv.Serve(l)
	defer srv.Close()
	h.waitDone(t)
	mu.Lock()
	defer mu.Unlock()
	if counts != 50 || len(keys) != 3 || keys[0] != keys[1] || keys[1] != keys[2] || keys[0] == "" {
		t.Errorf("accepted %d alerts; keys of the %d requests %v; want 50 alerts, 3 requests, one key", counts, len(keys), keys)
	}
	if n := h.states.count(StateDelivered); n != 50 {
		t.Errorf("%d delivered", n)
	}
}

// TestRunDelivers drives the real flush loop (real clock): with group_wait
// 0 an alert goes out without any tick from the test.
func TestRunDelivers(t *testing.T) {
	rcv := newWebhookReceiver(t)
	d, err := New(Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupInterval: dur(50 * time.Millisecond)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		MaxGroups: 10, MaxAlertsPerGroup: 10, QueueSize: 1, Backoff: backoff.Policy{Initial: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { d.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	done := make(chan struct{}, 3)
	for i := range 3 {
		if err := d.Add(ctx, notifytest.PrivilegedPod(i, fmt.Sprint("p", i)), func() { done <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("not delivered within a minute")
		}
	}
	n := 0
	for _, p := range rcv.payloads() {
		n += p.Count
	}
	if n != 3 {
		t.Errorf("%d alerts received, want 3", n)
	}
}

// TestDownReceiverDoesNotBlockOthers: one receiver's integration hangs and
// its queue fills; the groups of another receiver are still flushed and
// delivered, and the hanging receiver's groups wait (postponed, not lost).
func TestDownReceiverDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	var stuck atomic.Int32
	hang := NotifierFunc(func(ctx context.Context, n *Notification) (bool, error) {
		stuck.Add(1)
		select {
		case <-release:
			return false, nil
		case <-ctx.Done():
			return true, ctx.Err()
		}
	})
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route: rootRoute(t, config.RouteConfig{Receiver: "ok", GroupWait: dur(0), GroupBy: []string{"cluster", "name"},
			Routes: []config.RouteConfig{{Receiver: "down", Matchers: []string{"cluster=a"}}}}),
		Receivers: map[string][]Integration{
			"down": {{Name: "down/hang", Notifier: hang}},
			"ok":   {webhookIntegration(t, "ok/webhook[0]", rcv.srv.URL)},
		},
		QueueSize: 1,
	})
	addTo := func(cluster, name string) {
		a := notifytest.PrivilegedPod(0, name)
		a.ID, a.Cluster = cluster+"-"+name, cluster
		h.add(t, a)
	}
	// a1 is taken by the hanging sender, a2 fills its queue of 1, a3 has
	// no room.
	addTo("a", "1")
	h.tick(t, 0)
	testenv.WaitFor(t, "the hanging sender to get a1", time.Minute, func() bool { return stuck.Load() != 0 })
	addTo("a", "2")
	addTo("a", "3")
	addTo("b", "1")
	h.tick(t, time.Second) // must not block on the full queue
	testenv.WaitFor(t, "receiver ok to get a notification while receiver down hangs", time.Minute, func() bool { return len(rcv.payloads()) > 0 })
	if got := testutil.ToFloat64(h.d.m.postponed); got < 1 {
		t.Errorf("postponed = %v", got)
	}
	close(release)
	// The postponed group goes out once the queue has room: keep ticking
	// (the sender drains at its own pace) until every alert is final.
	next := 2 * time.Second
	testenv.WaitFor(t, "the postponed group delivered", time.Minute, func() bool {
		if h.states.count(StateDelivered) >= 4 {
			return true
		}
		h.tick(t, next)
		next += time.Second
		return false
	})
	h.waitDone(t)
	if n := h.states.count(StateDelivered); n != 4 {
		t.Errorf("%d delivered, want 4", n)
	}
}
