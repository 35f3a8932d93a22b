package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// amHook is the webhook receiver of the real Alertmanager: it records the
// group notifications Alertmanager sends (its webhook body, AMPayload).
type amHook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []AMPayload
}

func newAMHook(t *testing.T) *amHook {
	h := &amHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p AMPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("alertmanager's webhook body: %v", err)
		}
		h.mu.Lock()
		h.got = append(h.got, p)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// groups returns, per status, the group labels ("cluster/rule_id") of the
// notifications received and how many alerts each had.
func (h *amHook) groups(status string) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, p := range h.got {
		if p.Status == status {
			out[p.GroupLabels["cluster"]+"/"+p.GroupLabels["rule_id"]] = len(p.Alerts)
		}
	}
	return out
}

// amAPIAlert is what GET /api/v2/alerts says of an alert (gettableAlert).
type amAPIAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(t *testing.T, am *testenv.Alertmanager) []amAPIAlert {
	t.Helper()
	res, err := http.Get(am.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []amAPIAlert
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v", err)
	}
	return out
}

// amConfig groups by kubesift's rule_id and cluster and sends every group,
// and its resolution, to the test's webhook receiver at once.
const amConfig = `
route:
  receiver: hook
  group_by: [rule_id, cluster]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s/hook
        send_resolved: true
`

// TestRealAlertmanager, against a real Prometheus Alertmanager (a process
// of its own, from the binary hack/testenv/build-alertmanager.sh builds):
// the alerts a Dispatcher flushes through the Alertmanager integration
// appear in its API with kubesift's labels and annotations; Alertmanager's
// own grouping on those labels sends its webhook one group per rule and
// cluster; and when kubesift's groups resolve, the alerts are resolved in
// Alertmanager (gone from its API, a "resolved" group notification).
func TestRealAlertmanager(t *testing.T) {
	hook := newAMHook(t)
	am := testenv.StartAlertmanager(t, fmt.Sprintf(amConfig, hook.srv.URL))
	integ, err := NewAlertmanager(config.AlertmanagerConfig{URLs: []string{am.URL}, EndAfter: time.Hour}, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "am", GroupWait: dur(0), ResolveTimeout: dur(5 * time.Minute)}),
		Receivers: map[string][]Integration{"am": {{Name: "am/alertmanager[0]", Notifier: integ, SendResolved: true}}},
	})
	// Alerts of now: Alertmanager flushes a group at once, without
	// group_wait, when its first alert started longer ago than that.
	now := time.Now().UTC()
	alert := func(i int, name, rule, cluster string) rules.Alert {
		a := notifytest.PrivilegedPod(i, name)
		a.ID, a.RuleID, a.Cluster, a.Time = rule+"/"+cluster+"/"+name, rule, cluster, now.Add(time.Duration(i)*time.Millisecond)
		return a
	}
	sent := []rules.Alert{
		alert(0, "x", "k8s-privileged-pod", "prod-eu-1"), alert(1, "y", "k8s-privileged-pod", "prod-eu-1"),
		alert(2, "z", "k8s-exec-in-pod", "prod-eu-1"), alert(3, "w", "k8s-privileged-pod", "prod-us-1"),
	}
	for _, a := range sent {
		h.add(t, a)
	}
	h.tick(t, 0)
	h.waitDone(t)
	if n := h.states.count(StateDelivered); n != len(sent) {
		t.Fatalf("%d alerts delivered to Alertmanager, want %d", n, len(sent))
	}

	// In its API, with kubesift's labels and annotations, active.
	var got []amAPIAlert
	testenv.WaitFor(t, "4 alerts in Alertmanager's API", time.Minute, func() bool {
		got = amAlerts(t, am)
		return len(got) == len(sent)
	})
	var names []string
	for _, a := range got {
		l := a.Labels
		if l["alertname"] != l["rule_id"] || l["severity"] != "critical" || l["namespace"] != "payments" ||
			l["tag"] != "privileged,workload" || a.Annotations["summary"] != "Privileged pod created" ||
			!strings.HasPrefix(a.Annotations["alert_id"], l["rule_id"]+"/"+l["cluster"]+"/") || a.Status.State != "active" {
			t.Errorf("alert in Alertmanager: %+v", a)
		}
		names = append(names, l["name"])
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "w,x,y,z" {
		t.Errorf("alerts in Alertmanager: %v", names)
	}

	// Alertmanager grouped them by rule_id and cluster.
	want := map[string]int{"prod-eu-1/k8s-privileged-pod": 2, "prod-eu-1/k8s-exec-in-pod": 1, "prod-us-1/k8s-privileged-pod": 1}
	testenv.WaitForNil(t, "Alertmanager's firing group notifications", time.Minute, func() error {
		if g := hook.groups("firing"); fmt.Sprint(g) != fmt.Sprint(want) {
			return fmt.Errorf("firing groups %v, want %v", g, want)
		}
		return nil
	})

	// kubesift's groups go quiet and resolve: so do Alertmanager's alerts.
	h.tick(t, 5*time.Minute)
	testenv.WaitFor(t, "the alerts resolved in Alertmanager", time.Minute, func() bool { return len(amAlerts(t, am)) == 0 })
	testenv.WaitForNil(t, "Alertmanager's resolved group notifications", time.Minute, func() error {
		if g := hook.groups("resolved"); fmt.Sprint(g) != fmt.Sprint(want) {
			return fmt.Errorf("resolved groups %v, want %v", g, want)
		}
		return nil
	})
}
