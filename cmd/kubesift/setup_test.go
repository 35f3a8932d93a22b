package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

func TestSetupESRefusesBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("sink:\n  elasticsearch:\n    streams:\n      audit: kubesift-audit\n"), 0o644)
	_, errs, code := runCLI(t, "", "setup", "es", "-c", bad)
	if code == 0 || !strings.Contains(errs, "sink.elasticsearch.streams.audit") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// TestSetupES runs `kubesift setup es` twice against the test ground's
// Elasticsearch: both succeed (the second changes nothing) and the data
// streams exist.
func TestSetupES(t *testing.T) {
	testenv.Short(t)
	url := testenv.ElasticsearchURL(t)
	ns := fmt.Sprint("cmdsetup", time.Now().UnixNano())
	streams := []string{"logs-kstest.audit-" + ns, "logs-kstest.events-" + ns, "logs-kstest.posture-" + ns}
	alerts := "kstest-alerts-" + ns
	t.Cleanup(func() {
		for _, p := range []string{"/_data_stream/" + strings.Join(streams, ","), "/" + alerts,
			"/_index_template/kubesift-" + streams[0], "/_index_template/kubesift-" + streams[1],
			"/_index_template/kubesift-" + streams[2], "/_index_template/kubesift-" + alerts} {
			req, _ := http.NewRequest(http.MethodDelete, url+p, nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
	})
	cfg := filepath.Join(t.TempDir(), "es.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`sink:
  elasticsearch:
    addresses: [%q]
    streams: {audit: %s, events: %s, posture: %s}
    alerts_index: %s
    ilm: {policy: kstest-%s}
`, url, streams[0], streams[1], streams[2], alerts, ns)), 0o644)
	for run := 1; run <= 2; run++ {
		out, errs, code := runCLI(t, "", "setup", "es", "-c", cfg)
		if code != 0 || !strings.Contains(out, "elasticsearch: set up "+streams[0]) {
			t.Fatalf("run %d: exit %d\nstdout %s\nstderr %s", run, code, out, errs)
		}
		if !strings.Contains(errs, "no index lifecycle management") {
			t.Errorf("run %d: no ILM warning on a cluster without ILM: %s", run, errs)
		}
	}
	res, err := http.Get(url + "/_data_stream/" + strings.Join(streams, ","))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("data streams: HTTP %d", res.StatusCode)
	}
}
