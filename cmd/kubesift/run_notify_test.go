package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
)

// TestRunFileReplayWithReceiver runs `kubesift run` on the sample audit
// log with a configured webhook receiver whose route waits ten minutes
// (group_wait, group_interval): a replay does not wait for those timers.
// With the receiver up the run ends with every alert delivered; with it
// down the run ends once --notify-wait has passed, exits 1, and the
// summary and the progress line name the receiver's integration and its
// error — never its URL.
func TestRunFileReplayWithReceiver(t *testing.T) {
	total := 0
	for _, n := range evalCounts(t, sampleAuditPath) {
		total += n
	}
	var mu sync.Mutex
	received := 0
	up := httptest.NewServer(alertsReceiver(func(_ string, alerts []rules.Alert) {
		mu.Lock()
		received += len(alerts)
		mu.Unlock()
	}))
	defer up.Close()
	down := httptest.NewServer(nil)
	downURL := down.URL + "/hooks/T0KEN-IN-PATH"
	down.Close()

	tests := []struct {
		name       string
		url        string
		notifyWait time.Duration
		wantErr    []string // in the error; none: success
		wantOut    []string // in the summary
		wantLine   string   // in the progress line
	}{
		{name: "receiver up", url: up.URL, notifyWait: time.Minute},
		{name: "receiver down", url: downURL, notifyWait: 3 * time.Second,
			wantErr:  []string{"notifications not delivered", "ops/webhook[0]", "connection refused"},
			wantOut:  []string{"UNDELIVERED (waited up to --notify-wait 3s)", "ops/webhook[0]", "connection refused"},
			wantLine: "failing (ops/webhook[0]: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			received = 0
			mu.Unlock()
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
notify:
  route: {receiver: ops, group_wait: 10m, group_interval: 10m}
  receivers:
    - name: ops
      webhook_configs: [{url: %q}]
`, tc.url)), "run.yaml", func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr testenv.Buffer
			o := &runOptions{paths: []string{sampleAuditPath}, out: t.TempDir(), progress: "always", notifyWait: tc.notifyWait,
				stdout: &stdout, stderr: &stderr}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			err = runAll(ctx, cfg, o, slog.New(slog.DiscardHandler))
			elapsed := time.Since(start)
			defer func() {
				if t.Failed() {
					t.Logf("after %s: err %v\nstdout:\n%s\nstderr:\n%s", elapsed, err, stdout.String(), stderr.String())
				}
			}()
			if ctx.Err() != nil {
				t.Fatal("run did not finish within 2 minutes: it waited for the route's timers")
			}
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if received != total {
					t.Errorf("the receiver got %d alerts, want all %d", received, total)
				}
				if strings.Contains(stdout.String(), "UNDELIVERED") {
					t.Error("the summary lists undelivered notifications")
				}
				return
			}
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("run: %v (exit %d), want exit 1", err, exitCode(err))
			}
			if elapsed < tc.notifyWait {
				t.Errorf("run ended after %s, before --notify-wait %s", elapsed, tc.notifyWait)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("summary lacks %q", w)
				}
			}
			if !strings.Contains(stderr.String(), tc.wantLine) {
				t.Errorf("no progress line shows %q", tc.wantLine)
			}
			for _, out := range []string{stdout.String(), stderr.String(), err.Error()} {
				if strings.Contains(out, "T0KEN") {
					t.Error("the receiver's URL is shown")
				}
			}
		})
	}
}
