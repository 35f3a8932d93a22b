package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// recorder is an integration that keeps every notification it gets.
type recorder struct {
	mu  sync.Mutex
	got []*Notification
}

func (r *recorder) Notify(_ context.Context, n *Notification) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
	return false, nil
}

func (r *recorder) all() []*Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Notification(nil), r.got...)
}

// waitN waits until r has n notifications and returns them.
func (r *recorder) waitN(t *testing.T, what string, n int) []*Notification {
	t.Helper()
	testenv.WaitFor(t, what, time.Minute, func() bool { return len(r.all()) >= n })
	return r.all()
}

// firing reports whether the group of key waits to be resolved.
func (h *harness) firing(key string) (exists, firing bool) {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	g := h.d.groups[key]
	if g == nil {
		return false, false
	}
	return true, g.firing
}

// TestGroupResolves: a group that sent a notification and then took no
// alert for resolve_timeout sends one more, Resolved, with its last alerts,
// to the integrations with SendResolved only; the others see nothing new.
func TestGroupResolves(t *testing.T) {
	const key = `{}:{cluster="prod-eu-1",rule_id="k8s-privileged-pod"}`
	tests := []struct {
		name string
		// route timers (group_wait 30s, group_interval 5m)
		resolveTimeout, repeatInterval time.Duration
		// the ticks before the one that resolves, which must not
		steps []time.Duration
		// when it resolves, and whether the group is closed then
		resolveAt time.Duration
		closed    bool
	}{
		{name: "after resolve_timeout", resolveTimeout: 5 * time.Minute, repeatInterval: time.Hour,
			steps: []time.Duration{time.Minute, 5*time.Minute + 29*time.Second}, resolveAt: 5*time.Minute + 30*time.Second},
		{name: "at the latest when repeat_interval closes it", resolveTimeout: time.Hour, repeatInterval: 10 * time.Minute,
			steps: []time.Duration{9 * time.Minute}, resolveAt: 10 * time.Minute, closed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resolver, plain := &recorder{}, &recorder{}
			h := newHarness(t, Options{
				Route: rootRoute(t, config.RouteConfig{Receiver: "sec", ResolveTimeout: dur(tc.resolveTimeout), RepeatInterval: dur(tc.repeatInterval)}),
				Receivers: map[string][]Integration{"sec": {
					{Name: "sec/pagerduty[0]", Notifier: resolver, SendResolved: true},
					{Name: "sec/slack[0]", Notifier: plain},
				}},
			})
			h.add(t, notifytest.PrivilegedPod(0, "a"))
			h.add(t, notifytest.PrivilegedPod(0, "b"))
			h.tick(t, 30*time.Second)
			h.waitDone(t)
			first := resolver.waitN(t, "the firing notification", 1)[0]
			for _, at := range tc.steps {
				h.tick(t, at)
				if _, firing := h.firing(key); !firing {
					t.Fatalf("resolved at %v, before %v", at, tc.resolveAt)
				}
			}
			h.tick(t, tc.resolveAt)
			got := resolver.waitN(t, "the resolved notification", 2)
			r := got[1]
			if !r.Resolved || r.GroupKey != first.GroupKey || len(r.Alerts) != 2 || r.Alerts[0].ID != first.Alerts[0].ID ||
				r.Count != 2 || r.Seq != first.Seq || r.IdempotencyKey == first.IdempotencyKey || len(r.AlertIDs()) != 0 {
				t.Errorf("resolved notification: %+v", r)
			}
			if exists, firing := h.firing(key); firing || exists == tc.closed {
				t.Errorf("after resolving: group exists %v firing %v, want closed %v", exists, firing, tc.closed)
			}
			// A later notification of the plain integration arrives after
			// anything queued before it: none was resolved.
			a := notifytest.PrivilegedPod(1, "c")
			h.clock.Set(t0.Add(2 * time.Hour))
			h.add(t, a)
			h.tick(t, 2*time.Hour+time.Minute)
			h.waitDone(t)
			for _, n := range plain.waitN(t, "the plain integration's second notification", 2) {
				if n.Resolved {
					t.Errorf("an integration without send_resolved got a resolved notification")
				}
			}
			// Counted per integration, the resolved one included.
			sent := h.d.m.notifications.WithLabelValues("sec/pagerduty[0]", "sent")
			testenv.WaitFor(t, "3 notifications counted for sec/pagerduty[0]", time.Minute, func() bool { return testutil.ToFloat64(sent) == 3 })
			// Delivering a resolved notification changes no alert's state.
			if n := h.states.count(StateDelivered); n != 2*2+2*1 {
				t.Errorf("%d delivered states, want 6 (3 alerts × 2 integrations)", n)
			}
		})
	}
}

// TestGroupFiresAgainAfterResolving: an alert after the resolution fires
// the group again, which later resolves again; an alert before
// resolve_timeout postpones the resolution.
func TestGroupFiresAgainAfterResolving(t *testing.T) {
	const key = `{}:{cluster="prod-eu-1",rule_id="k8s-privileged-pod"}`
	resolver := &recorder{}
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", ResolveTimeout: dur(10 * time.Minute)}),
		Receivers: map[string][]Integration{"sec": {{Name: "sec/opsgenie[0]", Notifier: resolver, SendResolved: true}}},
	})
	h.add(t, notifytest.PrivilegedPod(0, "a"))
	h.tick(t, 30*time.Second)
	// Another alert at 8m, flushed by the tick at 8m30s: the group is
	// quiet from then on, not from its first notification.
	h.clock.Set(t0.Add(8 * time.Minute))
	h.add(t, notifytest.PrivilegedPod(480, "b"))
	h.tick(t, 8*time.Minute+30*time.Second)
	h.waitDone(t)
	h.tick(t, 18*time.Minute+29*time.Second)
	if _, firing := h.firing(key); !firing {
		t.Fatal("resolved less than resolve_timeout after the last notification")
	}
	h.tick(t, 18*time.Minute+30*time.Second)
	// It resolves every alert the group reported, not only the last
	// notification's: Alertmanager holds each one open.
	got := resolver.waitN(t, "the first resolution", 3)
	if r := got[2]; !r.Resolved || len(r.Alerts) != 2 || r.Alerts[0].Name != "a" || r.Alerts[1].Name != "b" || r.Count != 2 {
		t.Fatalf("first resolution: %+v", r)
	}
	// Fires again, resolves again.
	h.clock.Set(t0.Add(20 * time.Minute))
	h.add(t, notifytest.PrivilegedPod(1200, "c"))
	h.tick(t, 20*time.Minute)
	h.waitDone(t)
	h.tick(t, 30*time.Minute)
	got = resolver.waitN(t, "the second resolution", 5)
	if got[3].Resolved || got[3].Alerts[0].Name != "c" || !got[4].Resolved || got[4].Alerts[0].Name != "c" {
		t.Errorf("after firing again: %+v, %+v", got[3], got[4])
	}
}

// TestMutedGroupDoesNotResolve: a group whose alerts were all silenced sent
// nothing, so it has nothing to resolve.
func TestMutedGroupDoesNotResolve(t *testing.T) {
	const key = `{}:{cluster="prod-eu-1",rule_id="k8s-privileged-pod"}`
	sil, _ := match.ParseAll([]string{"cluster=prod-eu-1"})
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec"}),
		Receivers: map[string][]Integration{"sec": {{Name: "sec/pagerduty[0]", Notifier: &recorder{}, SendResolved: true}}},
		Silences:  muteAll{sil},
	})
	h.add(t, notifytest.PrivilegedPod(0, "a"))
	h.tick(t, 30*time.Second)
	h.waitDone(t)
	if exists, firing := h.firing(key); !exists || firing {
		t.Errorf("silenced group: exists %v firing %v, want an idle group", exists, firing)
	}
}

// TestResolvedNotificationWaitsForRoom: a resolved notification that finds
// its integration's queue full is postponed, not dropped.
func TestResolvedNotificationWaitsForRoom(t *testing.T) {
	release := make(chan struct{})
	var holding atomic.Bool
	var mu sync.Mutex
	var got []*Notification
	slow := NotifierFunc(func(ctx context.Context, n *Notification) (bool, error) {
		if !n.Resolved && n.Alerts[0].Name == "block" {
			holding.Store(true)
			select {
			case <-release:
			case <-ctx.Done():
				return true, ctx.Err()
			}
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
		return false, nil
	})
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupBy: []string{"cluster", "name"}, ResolveTimeout: dur(time.Minute)}),
		Receivers: map[string][]Integration{"sec": {{Name: "sec/pagerduty[0]", Notifier: slow, SendResolved: true}}},
		QueueSize: 1,
	})
	resolved := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, x := range got {
			if x.Resolved {
				n++
			}
		}
		return n
	}
	h.add(t, notifytest.PrivilegedPod(0, "a"))
	h.tick(t, 0)
	testenv.WaitFor(t, "a's notification", time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	// "block" holds the sender; "filler" then fills the queue of 1.
	h.clock.Set(t0.Add(50 * time.Second))
	h.add(t, notifytest.PrivilegedPod(50, "block"))
	h.tick(t, 50*time.Second)
	testenv.WaitFor(t, "the sender to hold block", time.Minute, holding.Load)
	h.add(t, notifytest.PrivilegedPod(50, "filler"))
	h.tick(t, 50*time.Second)
	if n := len(h.d.queues["sec"][0].ch); n != 1 {
		t.Fatalf("queue holds %d, want 1", n)
	}
	postponed := testutil.ToFloat64(h.d.m.postponed)
	h.tick(t, 2*time.Minute) // every group is due to resolve: no room
	if now := testutil.ToFloat64(h.d.m.postponed); now <= postponed || resolved() != 0 {
		t.Fatalf("resolution with a full queue: postponed %v → %v, resolved %d", postponed, now, resolved())
	}
	close(release)
	next := 2*time.Minute + time.Second
	testenv.WaitFor(t, "every group resolved once the queue drained", time.Minute, func() bool {
		if resolved() == 3 {
			return true
		}
		h.tick(t, next)
		next += time.Second
		return false
	})
}

// TestResolvedRendering: with send_resolved, Slack says "resolved" in a
// green bar, a kubesift/v1 webhook carries "resolved": true and the
// Alertmanager format status "resolved" with endsAt; a firing notification
// is unchanged (no "resolved" field at all).
func TestResolvedRendering(t *testing.T) {
	firing := testNotification(notifytest.PrivilegedPod(0, "a"))
	resolved := resolvedOf(firing)
	s, err := NewSlack(config.SlackConfig{URL: "http://x/", MaxAlerts: 10}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWebhook(config.WebhookConfig{URL: "http://x/"}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		render      func(n *Notification) string
		firing, res string // substring of each rendering
		notInFiring string
	}{
		{name: "slack", render: func(n *Notification) string { b, _ := json.Marshal(s.Message(n)); return string(b) },
			firing: severityColor[rules.SeverityCritical], res: `"color":"` + resolvedColor, notInFiring: "resolved"},
		{name: "webhook kubesift/v1", render: func(n *Notification) string { b, _ := json.Marshal(w.payload(n, t0)); return string(b) },
			firing: `"seq":1`, res: `"resolved":true`, notInFiring: "resolved"},
		{name: "webhook alertmanager", render: func(n *Notification) string { b, _ := json.Marshal(AlertmanagerPayload(n, 10)); return string(b) },
			firing: `"status":"firing"`, res: `"status":"resolved"`, notInFiring: `"status":"resolved"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, r := tc.render(firing), tc.render(resolved)
			if !strings.Contains(f, tc.firing) || strings.Contains(f, tc.notInFiring) {
				t.Errorf("firing: %s", f)
			}
			if !strings.Contains(r, tc.res) {
				t.Errorf("resolved: %s", r)
			}
		})
	}
	if p := AlertmanagerPayload(resolved, 10); !p.Alerts[0].EndsAt.Equal(resolved.Time) {
		t.Errorf("resolved endsAt %v, want %v", p.Alerts[0].EndsAt, resolved.Time)
	}
}

// TestEvictedGroup: a group evicted for max_groups while idle is resolved
// as it goes; one evicted with alerts pending is flushed, not resolved (its
// incident would close as it opens).
func TestEvictedGroup(t *testing.T) {
	resolver := &recorder{}
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec"}),
		Receivers: map[string][]Integration{"sec": {{Name: "sec/pagerduty[0]", Notifier: resolver, SendResolved: true}}},
		MaxGroups: 1,
	})
	inCluster := func(i int, cluster string) rules.Alert {
		a := notifytest.PrivilegedPod(i, cluster)
		a.Cluster = cluster
		return a
	}
	h.add(t, inCluster(0, "a"))
	h.tick(t, 30*time.Second) // a fires
	h.clock.Set(t0.Add(time.Minute))
	h.add(t, inCluster(60, "b")) // evicts idle a: resolved
	got := resolver.waitN(t, "a's notification and resolution", 2)
	if got[1].GroupLabels["cluster"] != "a" || !got[1].Resolved {
		t.Fatalf("after evicting idle a: %+v", got[1])
	}
	h.add(t, inCluster(60, "c")) // evicts b, still pending: flushed only
	got = resolver.waitN(t, "b's early flush", 3)
	if got[2].GroupLabels["cluster"] != "b" || got[2].Resolved {
		t.Fatalf("after evicting pending b: %+v", got[2])
	}
	h.tick(t, 2*time.Minute) // c fires
	h.waitDone(t)
	got = resolver.waitN(t, "c's notification", 4)
	if got[3].GroupLabels["cluster"] != "c" || got[3].Resolved {
		t.Errorf("c: %+v", got[3])
	}
}
