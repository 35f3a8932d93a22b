package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink/report/reporttest"
)

// maxScenarioReport is the size the bundled scenario's page must stay
// under.
const maxScenarioReport = 2 << 20

// TestRunWritesReport: `kubesift run` on the bundled scenario writes
// <out>/report.html and prints its path; the page is under 2 MB and, in
// the real headless Chromium, loads without a console error with every
// chart drawn, the posture score and failing checks included. `kubesift report
// --from` builds the same page from the folder. Run with -v for the size
// and Chromium's load time.
func TestRunWritesReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out := t.TempDir()
	stdout, err := runForTest(t, ctx, out, "../../examples/scenario")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, "report.html")
	if !strings.Contains(stdout, path+"  report\n") {
		t.Errorf("the summary does not print the report's path:\n%s", stdout)
	}
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) >= maxScenarioReport {
		t.Errorf("the scenario's report is %d bytes, over %d", len(page), maxScenarioReport)
	}
	// The scenario's object snapshot gives the run posture findings and a
	// score, which the report draws.
	for _, chart := range []string{`data-chart="posture-score"`, `data-chart="failing-checks"`} {
		if !strings.Contains(string(page), chart) {
			t.Errorf("the report has no %s", chart)
		}
	}
	again := filepath.Join(t.TempDir(), "again.html")
	cliOut, _, code := runCLI(t, "", "report", "--from", out, "-o", again)
	if code != 0 || !strings.Contains(cliOut, "215 alerts, 1700 audit records, 28 Events") {
		t.Errorf("report --from: exit %d, %q", code, cliOut)
	}
	if st, err := os.Stat(again); err != nil || st.Size() != int64(len(page)) {
		t.Errorf("report --from wrote %v (%v), run wrote %d bytes", st, err, len(page))
	}

	p := reporttest.Open(t, path)
	t.Logf("scenario report: %d bytes (limit %d); Chromium load %.1f ms (target 2000 ms); screenshot %s",
		len(page), maxScenarioReport, p.LoadMillis, p.Screenshot)
	if len(p.Errors) > 0 {
		t.Errorf("console errors: %q", p.Errors)
	}
	for _, c := range []string{"timeline", "rules", "actors", "reasons", "alerts"} {
		if p.Charts[c] == 0 {
			t.Errorf("chart %s missing or empty (charts %v, empty %v)", c, p.Charts, p.Empty)
		}
	}
}

func TestReportBadInvocations(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no source", nil, "exactly one of --from DIR and --es URL"},
		{"two sources", []string{"--from", dir, "--es", "http://localhost:9200"}, "exactly one of"},
		{"negative since", []string{"--from", dir, "--since", "-1h"}, "--since: -1h0m0s is negative"},
		{"missing folder", []string{"--from", filepath.Join(dir, "nope")}, "no such file or directory"},
		{"a file", []string{"--from", file}, "is not a directory"},
		{"not a URL", []string{"--es", "localhost"}, `--es: "localhost" is not a URL`},
		{"credentials kept out", []string{"--es", "http://user:s3cret@%zz"}, "is not a URL"},
		{"cluster without digest", []string{"--from", dir, "--cluster", "prod"}, "--cluster, --until and --kafka are for --digest"},
		{"until without digest", []string{"--from", dir, "--until", "2026-12-07T08:00:00Z"}, "--cluster, --until and --kafka are for --digest"},
		{"kafka without digest", []string{"--from", dir, "--kafka", "localhost:9092"}, "--cluster, --until and --kafka are for --digest"},
		{"digest until", []string{"--digest", "--es", "http://localhost:9200", "-o", "json", "--until", "yesterday"}, `--until: "yesterday" is not an RFC 3339 time`},
		{"digest without es", []string{"--digest"}, "--digest reads Elasticsearch: give --es URL"},
		{"digest from a folder", []string{"--digest", "--from", dir, "--es", "http://localhost:9200"}, "(not --from)"},
		{"digest format", []string{"--digest", "--es", "http://localhost:9200"}, "r.html\" is not text, json or html"},
		{"digest negative since", []string{"--digest", "--es", "http://localhost:9200", "-o", "json", "--since", "-1h"}, "is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", append([]string{"report", "-o", filepath.Join(dir, "r.html")}, tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want an error with %q", code, stderr, tc.want)
			}
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("the error shows the password: %q", stderr)
			}
		})
	}
}

// TestReportFromES (real Elasticsearch): --es with the configuration's
// index names reads that cluster; names nothing was written to make an
// empty report, not an error.
func TestReportFromES(t *testing.T) {
	u := testenv.ElasticsearchURL(t)
	dir := t.TempDir()
	ns := fmt.Sprint(time.Now().UnixNano())
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sink:
  elasticsearch:
    streams: {audit: logs-ksreport.a-%[1]s, events: logs-ksreport.e-%[1]s}
    alerts_index: ksreport-alerts-%[1]s
    findings: {index: ksreport-findings-%[1]s, scores_stream: metrics-ksreport.s-%[1]s}
`, ns)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.html")
	stdout, stderr, code := runCLI(t, "", "report", "-c", cfg, "--es", u, "--since", "24h", "-o", out)
	if code != 0 || !strings.Contains(stdout, "0 alerts") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), u) || !strings.Contains(string(page), `data-posture="none"`) {
		t.Error("the page does not name the address or does not say there is no posture data")
	}
}

// TestReportDigestFromES (real Elasticsearch and Kafka): --digest -o json
// --until --kafka prints the known day of reporttest.DigestScenario for
// the named cluster with the dead letters of that day in the dead-letter
// topic, and text (the 24 hours before now) for every cluster found.
func TestReportDigestFromES(t *testing.T) {
	end := time.Now().UTC().Truncate(time.Hour)
	_, esCfg, want := reporttest.StoreDigestScenario(t, "prod", end)
	brokers := testenv.KafkaBrokers(t)
	dlq := fmt.Sprintf("it-report-dlq-%d", time.Now().UnixNano())
	testenv.CreateTopics(t, brokers[0], 1, dlq)
	dead := func(at time.Time) kafka.Message {
		return kafka.Message{Topic: dlq, Value: []byte("{"), Time: at, Headers: []kafka.Header{{Key: record.HeaderCluster, Value: []byte("prod")},
			{Key: pipeline.HeaderDLQSource, Value: []byte(pipeline.SourceProcessor)}, {Key: pipeline.HeaderDLQReason, Value: []byte("invalid_json")}}}
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, Transport: &kafka.Transport{}}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), dead(end.Add(-25*time.Hour)), dead(end.Add(-2*time.Hour)), dead(end.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	want.DeadRecords = 2
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sink:
  elasticsearch:
    streams: {audit: %s, events: %s}
    alerts_index: %s
    findings: {index: %s, transitions_stream: %s, scores_stream: %s}
kafka:
  topics: {dlq: %s}
`, esCfg.Streams.Audit, esCfg.Streams.Events, esCfg.AlertsIndex, esCfg.Findings.Index, esCfg.Findings.TransitionsStream, esCfg.Findings.ScoresStream, dlq)), 0o600); err != nil {
		t.Fatal(err)
	}
	u := esCfg.Addresses[0]
	testenv.WaitForNil(t, "the scenario's figures", 30*time.Second, func() error {
		stdout, stderr, code := runCLI(t, "", "report", "--digest", "-c", cfg, "--es", u, "--kafka", strings.Join(brokers, ","), "--cluster", "prod", "-o", "json", "--until", end.Format(time.RFC3339))
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, stderr)
		}
		var out struct{ Digests []json.RawMessage }
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || len(out.Digests) != 1 {
			return fmt.Errorf("output %s: %v", stdout, err)
		}
		// Elasticsearch shows new documents after its refresh interval.
		if got := reporttest.FiguresOfJSON(t, out.Digests[0]); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("figures\n got %+v\nwant %+v", got, want)
		}
		return nil
	})
	stdout, stderr, code := runCLI(t, "", "report", "--digest", "-c", cfg, "--es", u)
	if code != 0 || !strings.Contains(stdout, "kubesift digest: prod,") || !strings.Contains(stdout, "kubesift digest: prod-other,") ||
		!strings.Contains(stdout, "5 opened, 3 resolved, 5 open now") || !strings.Contains(stdout, "not counted (the dead-letter topic was not read)") {
		t.Errorf("exit %d: %s %s", code, stdout, stderr)
	}
}
