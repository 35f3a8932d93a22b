package obs

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStallWatch(t *testing.T) {
	const after = time.Minute
	steps := []struct {
		name      string
		advance   time.Duration
		progress  Progress
		wantReady bool
	}{
		{"idle at start", 0, Progress{Position: 100}, true},
		{"idle for long is not a stall", 2 * after, Progress{Position: 100}, true},
		{"input waiting, not for long", after / 2, Progress{Position: 100, Pending: 50}, true},
		{"input waiting, position still", after, Progress{Position: 100, Pending: 50}, false},
		{"still stalled", after, Progress{Position: 100, Pending: 80}, false},
		{"moves again", time.Second, Progress{Position: 120, Pending: 60}, true},
		{"stuck again, not yet", after - time.Second, Progress{Position: 120, Pending: 60}, true},
		{"stuck again", time.Second, Progress{Position: 120, Pending: 60}, false},
		{"caught up", time.Second, Progress{Position: 120}, true},
	}
	clock := time.Unix(1_790_000_000, 0)
	var cur Progress
	checks := map[string]error{}
	reg := prometheus.NewRegistry()
	w, err := NewStallWatch(after, reg, func(name string, err error) { checks[name] = err })
	if err != nil {
		t.Fatal(err)
	}
	w.now = func() time.Time { return clock }
	cur = steps[0].progress
	w.Add("audit-tail:/var/log/audit.log", func() Progress { return cur })
	for _, s := range steps {
		clock = clock.Add(s.advance)
		cur = s.progress
		w.Check()
		err := checks["audit-tail:/var/log/audit.log"]
		if (err == nil) != s.wantReady {
			t.Fatalf("%s: readiness error %v, want ready=%v", s.name, err, s.wantReady)
		}
		if err != nil && !strings.Contains(err.Error(), "stalled") {
			t.Errorf("%s: error %q does not say stalled", s.name, err)
		}
		want := 0.0
		if !s.wantReady {
			want = 1
		}
		if got := testutil.ToFloat64(w.stalled.WithLabelValues("audit-tail:/var/log/audit.log")); got != want {
			t.Errorf("%s: kubesift_source_stalled = %v, want %v", s.name, got, want)
		}
	}
	if _, err := NewStallWatch(0, nil, func(string, error) {}); err == nil {
		t.Error("stall_after 0 accepted")
	}
}
