package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// badEvent is an audit event with auditID %s and a request body of the
// ConfigMap blob %s.
const badEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":%q,"stage":"ResponseComplete",` +
	`"requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},` +
	`"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.37.2","objectRef":{"resource":"configmaps","namespace":"default","name":"big","apiVersion":"v1"},` +
	`"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"big"},"data":{"blob":%q}},` +
	`"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.010000Z"}`

func badInputEvent(id string, blob int) string {
	return fmt.Sprintf(badEvent, id, strings.Repeat("b", blob))
}

// postAudit posts body to the collector's webhook at addr as kube-apiserver
// does and returns the answer's status and text.
func postAudit(t testing.TB, hc *http.Client, addr, body string) (int, []byte) {
	t.Helper()
	res, err := hc.Post("https://"+addr+"/audit", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, bytes.TrimSpace(msg)
}

// auditEventList is the body kube-apiserver's webhook posts: the items in
// an EventList.
func auditEventList(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
}

// TestCollectBadInput feeds `kubesift collect` malformed, truncated and
// 20 MB inputs on both audit paths — lines of a tailed file, and webhook
// POSTs made with kube-apiserver's audit client certificate — and checks:
// each bad input is a dead letter on the DLQ topic with its reason and where
// it came from (file, byte offset and line for the tail), the errors are
// counted, a 20 MB event within the limits is published with its bodies
// dropped (flagged truncated), the process keeps running, and the good
// records around the bad ones all arrive.
func TestCollectBadInput(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	k := testenv.KubeAPIServer(t) // for the webhook certificates only
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	id := func(s string) string { return "bad-" + run + "-" + s }

	// The tailed file: good, bad, good. Offsets and lines as the DLQ must
	// report them.
	logPath := filepath.Join(t.TempDir(), "audit.log")
	type line struct {
		text, reason string // reason: "" for a good line
	}
	lines := []line{
		{badInputEvent(id("tail-good-1"), 10), ""},
		{`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"cut-off-here`, "syntax"}, // truncated
		{`this is not JSON`, "syntax"},
		{`{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","verb":"get"}`, "field"}, // no auditID
		{badInputEvent(id("tail-20mb"), 20<<20), "too_large"},                                                // over max_line_bytes (16 MiB)
		{badInputEvent(id("tail-12mb"), 12<<20), ""},                                                         // within: bodies dropped
		{badInputEvent(id("tail-good-2"), 10), ""},
	}
	var file bytes.Buffer
	offsets := make([]int, len(lines))
	for i, l := range lines {
		offsets[i] = file.Len()
		file.WriteString(l.text)
		file.WriteByte('\n')
	}
	// Its own address: kube-apiserver does not post here, the test does.
	hookAddr := testenv.FreeAddr(t)
	e := newCollectEnv(t, "bad", brokers, k, colOpts{
		webhookListen: hookAddr, tailPaths: []string{logPath}, startAt: "beginning",
	})
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.start("collect")
	// Written after the start, in two appends, the way a log grows.
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := offsets[4]
	f.Write(file.Bytes()[:half])
	f.Write(file.Bytes()[half:])
	f.Close()

	// The webhook: what kube-apiserver would post, and what it would not.
	hc := webhookClient(t, k)
	list := auditEventList
	big := list(badInputEvent(id("hook-20mb"), 20<<20))
	posts := []struct {
		name, body string
		code       int
		reason     string // dead letter expected
	}{
		{"not JSON", `{not json`, 200, "syntax"},
		{"truncated list", list(badInputEvent(id("hook-cut"), 10))[:150], 200, "syntax"},
		{"bad item among good", list(badInputEvent(id("hook-good-1"), 10), `{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}`), 200, "field"},
		{"20 MB event", big, 200, ""},
		{"20 MB truncated", big[:20<<20], 200, "syntax"},
		{"over max_body_bytes (32 MiB)", list(badInputEvent(id("hook-33mb"), 33<<20)), 413, "too_large"},
		{"good after all that", list(badInputEvent(id("hook-good-2"), 10)), 200, ""},
	}
	for _, p := range posts {
		if code, msg := postAudit(t, hc, hookAddr, p.body); code != p.code {
			t.Errorf("%s: HTTP %d %s, want %d", p.name, code, msg, p.code)
		}
	}
	// No client certificate: 401, counted.
	tc, _ := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(filepath.Dir(k.WebhookClientCA), "audit-webhook-ca.crt")}})
	anon := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone()}}
	if res, err := anon.Post("https://"+hookAddr+"/audit", "application/json", strings.NewReader(list(badInputEvent(id("anon"), 1)))); err != nil {
		t.Fatal(err)
	} else if res.Body.Close(); res.StatusCode != 401 {
		t.Errorf("no client certificate: HTTP %d, want 401", res.StatusCode)
	}

	// The good records (and the 20 MB ones within limits) arrive.
	wantRecs := map[string]string{ // record id -> origin
		id("tail-good-1") + ":ResponseComplete": "audit-tail", id("tail-12mb") + ":ResponseComplete": "audit-tail",
		id("tail-good-2") + ":ResponseComplete": "audit-tail", id("hook-good-1") + ":ResponseComplete": "audit-webhook",
		id("hook-20mb") + ":ResponseComplete": "audit-webhook", id("hook-good-2") + ":ResponseComplete": "audit-webhook",
	}
	var audit []kafka.Message
	testenv.WaitFor(t, "the good records on the audit topic", 2*time.Minute, func() bool {
		audit = testenv.ReadTopic(t, e.broker, e.topics.audit)
		got := 0
		for _, m := range audit {
			if o, ok := wantRecs[colHeader(m, record.HeaderID)]; ok && o == colHeader(m, publish.HeaderOrigin) {
				got++
			}
		}
		return got >= len(wantRecs)
	})
	for _, m := range audit {
		rid := colHeader(m, record.HeaderID)
		if _, ok := wantRecs[rid]; !ok {
			t.Errorf("unexpected record %s on the audit topic", rid)
			continue
		}
		r, err := record.Unmarshal(m.Value)
		if err != nil {
			t.Fatalf("%s: %v", rid, err)
		}
		large := strings.Contains(rid, "mb:")
		if r.Flags.Truncated != large || (large && r.Audit.RequestObject != nil) {
			t.Errorf("%s: truncated=%v, request body kept=%v (want truncated only for the large ones)", rid, r.Flags.Truncated, r.Audit.RequestObject != nil)
		}
		if len(m.Value) > 1<<20 {
			t.Errorf("%s: %d bytes on the topic", rid, len(m.Value))
		}
	}

	// Every bad input is a dead letter saying what and where.
	var dlq []kafka.Message
	wantDL := 0
	for _, l := range lines {
		if l.reason != "" {
			wantDL++
		}
	}
	for _, p := range posts {
		if p.reason != "" {
			wantDL++
		}
	}
	testenv.WaitForNil(t, fmt.Sprintf("%d dead letters", wantDL), time.Minute, func() error {
		dlq = testenv.ReadTopic(t, e.broker, e.topics.dlq)
		if len(dlq) >= wantDL {
			return nil
		}
		var seen strings.Builder
		for _, m := range dlq {
			fmt.Fprintf(&seen, "\ndead letter: source %s reason %s offset %s: %s", colHeader(m, publish.HeaderDLQSource),
				colHeader(m, publish.HeaderDLQReason), colHeader(m, publish.HeaderDLQOffset), colHeader(m, publish.HeaderDLQError))
		}
		return fmt.Errorf("%d so far:%s", len(dlq), seen.String())
	})
	if len(dlq) != wantDL {
		t.Errorf("%d dead letters, want %d", len(dlq), wantDL)
	}
	tailDL := map[string]kafka.Message{} // offset -> dead letter
	hookReasons := map[string]int{}
	for _, m := range dlq {
		switch colHeader(m, publish.HeaderDLQSource) {
		case "audit-tail":
			tailDL[colHeader(m, publish.HeaderDLQOffset)] = m
		case "audit-webhook":
			hookReasons[colHeader(m, publish.HeaderDLQReason)]++
			if o := colHeader(m, publish.HeaderDLQOrigin); !strings.HasPrefix(o, "127.0.0.1:") {
				t.Errorf("webhook dead letter origin %q, want the client address", o)
			}
		default:
			t.Errorf("dead letter from %q", colHeader(m, publish.HeaderDLQSource))
		}
		if colHeader(m, publish.HeaderDLQError) == "" || colHeader(m, record.HeaderCluster) != "it-bad" {
			t.Errorf("dead letter without error or cluster: %v", m.Headers)
		}
		if len(m.Value) > 64<<10 {
			t.Errorf("dead letter of %d bytes (dead_letter_max_bytes is 64 KiB)", len(m.Value))
		}
	}
	for i, l := range lines {
		if l.reason == "" {
			continue
		}
		m, ok := tailDL[strconv.Itoa(offsets[i])]
		if !ok {
			t.Errorf("line %d (offset %d, %s): no dead letter", i+1, offsets[i], l.reason)
			continue
		}
		for h, want := range map[string]string{
			publish.HeaderDLQOrigin: logPath, publish.HeaderDLQLine: strconv.Itoa(i + 1), publish.HeaderDLQReason: l.reason,
		} {
			if got := colHeader(m, h); got != want {
				t.Errorf("line %d: dead letter header %s = %q, want %q", i+1, h, got, want)
			}
		}
		if head := min(len(l.text), 40); !bytes.HasPrefix(m.Value, []byte(l.text[:head])) {
			t.Errorf("line %d: dead letter value %.60q does not start with the line", i+1, m.Value)
		}
		t.Logf("tail line %d: %s", i+1, colHeader(m, publish.HeaderDLQError))
	}
	for _, p := range posts {
		if p.reason != "" {
			hookReasons[p.reason]--
		}
	}
	for r, n := range hookReasons {
		if n != 0 {
			t.Errorf("webhook dead letters with reason %s: %+d against the expected", r, n)
		}
	}

	// Counted, and the collector still runs.
	for _, mc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// Lines 2-4, and the over-long line 5 (the tail counts it as malformed).
		{"kubesift_collector_rejected_total", []string{`source="audit-tail"`, `reason="malformed"`}, 4},
		{"kubesift_collector_dead_letters_total", []string{`source="audit-tail"`, `reason="too_large"`}, 1},
		{"kubesift_collector_dead_letters_total", []string{`source="audit-tail"`}, 4},
		{"kubesift_collector_dead_letters_total", []string{`source="audit-webhook"`}, 5},
		{"kubesift_collector_rejected_total", []string{`source="audit-webhook"`, `reason="size"`}, 1},
		{"kubesift_collector_rejected_total", []string{`source="audit-webhook"`, `reason="auth"`}, 1},
		{"kubesift_collector_webhook_requests_total", []string{`code="413"`}, 1},
		{"kubesift_collector_truncated_total", nil, 2},
		{"kubesift_collector_publish_dead_letters_total", nil, float64(wantDL)},
	} {
		if got := e.metric(mc.name, mc.labels...); got != mc.want {
			t.Errorf("%s%v = %v, want %v", mc.name, mc.labels, got, mc.want)
		}
	}
	if c.Exited() {
		t.Fatal("the collector exited")
	}
	res, err := http.Get("http://" + e.metrics + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("/healthz after the bad input: %v %v", res, err)
	}
	res.Body.Close()
	if err := c.Stop(time.Minute); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	t.Logf("%d dead letters (tail %d, webhook %d); collector peak RSS %d KiB after 20 MB, 12 MB and 33 MiB inputs",
		len(dlq), len(tailDL), len(dlq)-len(tailDL), c.PeakRSSKiB())
}
