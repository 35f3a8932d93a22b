package notify

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// TestFlushSendsWaitingGroupsNow: a group waiting group_wait, and one
// waiting group_interval after its first notification, both go out at the
// next flush pass after Flush, with the clock standing still.
func TestFlushSendsWaitingGroupsNow(t *testing.T) {
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(30 * time.Second), GroupInterval: dur(5 * time.Minute)}),
		Receivers: map[string][]Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
	})
	steps := []struct {
		name string
		pod  string
	}{
		{"a new group waiting group_wait", "p0"},
		{"the same group waiting group_interval", "p1"},
	}
	for i, st := range steps {
		h.add(t, notifytest.PrivilegedPod(i, st.pod))
		h.tick(t, time.Second)
		if got := len(rcv.payloads()); got != i {
			t.Fatalf("%s: %d notifications before Flush, want %d", st.name, got, i)
		}
		if groups, _ := h.d.Status(); groups != 1 {
			t.Fatalf("%s: Status says %d groups waiting, want 1", st.name, groups)
		}
		h.d.Flush()
		h.tick(t, time.Second)
		testenv.WaitFor(t, st.name+": sent after Flush", time.Minute, func() bool { return len(rcv.payloads()) == i+1 })
	}
	h.waitDone(t)
	groups, ints := h.d.Status()
	if groups != 0 || len(ints) != 1 || ints[0].Sent != 2 || ints[0].Failing || ints[0].Pending() != 0 {
		t.Errorf("Status after delivery: %d groups waiting, %+v", groups, ints)
	}
}

// TestStatusShowsFailingIntegration: while a receiver is down its status
// says failing with the last error — which names no URL path — and the
// notification as pending; once retries give up it counts as failed, and
// a receiver that works beside it shows sent.
func TestStatusShowsFailingIntegration(t *testing.T) {
	down := httptest.NewServer(nil)
	downURL := down.URL + "/hooks/T0KEN-IN-PATH"
	down.Close()
	rcv := newWebhookReceiver(t)
	h := newHarness(t, Options{
		Route: rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0),
			Routes: []config.RouteConfig{{Receiver: "ok", Continue: true}, {Receiver: "sec"}}}),
		Receivers: map[string][]Integration{
			"sec": {webhookIntegration(t, "sec/webhook[0]", downURL)},
			"ok":  {webhookIntegration(t, "ok/webhook[0]", rcv.srv.URL)},
		},
		GiveUpAfter: 2 * time.Second,
	})
	h.add(t, notifytest.PrivilegedPod(0, "p"))
	h.tick(t, 0)
	status := func(name string) DeliveryStatus {
		_, ints := h.d.Status()
		for _, s := range ints {
			if s.Integration == name {
				return s
			}
		}
		t.Fatalf("no status for %s in %+v", name, ints)
		return DeliveryStatus{}
	}
	testenv.WaitFor(t, "the down receiver to be failing", time.Minute, func() bool {
		s := status("sec/webhook[0]")
		return s.Failing && s.Pending() == 1
	})
	if s := status("sec/webhook[0]"); s.LastError == "" || strings.Contains(s.LastError, "T0KEN") || s.Since.IsZero() {
		t.Errorf("failing status %+v: want the last error, without the URL's path, and since when", s)
	}
	testenv.WaitFor(t, "retries to give up", time.Minute, func() bool { return status("sec/webhook[0]").Failed == 1 })
	h.waitDone(t)
	tests := []struct {
		integration          string
		sent, failed, queued int
		failing              bool
	}{
		{"sec/webhook[0]", 0, 1, 0, true},
		{"ok/webhook[0]", 1, 0, 0, false},
	}
	for _, tc := range tests {
		s := status(tc.integration)
		if s.Sent != tc.sent || s.Failed != tc.failed || s.Pending() != tc.queued || s.Failing != tc.failing {
			t.Errorf("%s: %+v, want sent %d, failed %d, pending %d, failing %v", tc.integration, s, tc.sent, tc.failed, tc.queued, tc.failing)
		}
	}
}
