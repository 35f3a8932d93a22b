package integration

import (
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

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// metadataEvent is an audit event at Metadata level (no bodies) with the
// auditID and requestURI given.
const metadataEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",` +
	`"requestURI":%q,"verb":"list","user":{"username":"mallory","groups":["system:unauthenticated"]},` +
	`"sourceIPs":["10.0.0.66"],"userAgent":"curl/8","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},` +
	`"responseStatus":{"metadata":{},"code":401},` +
	`"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.010000Z"}`

// TestCollectOversizedMetadata runs `kubesift collect` against the real
// Kafka with, on both audit paths, a record whose metadata alone is over
// Kafka's limit between good ones: a request line of 1.05 MB (what
// kube-apiserver accepts from an unauthenticated client and logs at
// Metadata level), which is cut to fit, and an auditID of 1.1 MB, which
// cannot be cut and is dead-lettered by the publisher. The neighbours
// arrive, the webhook answers 200, the tail's position moves past both and
// a restart goes on from there, /readyz stays green, and all of it is
// counted.
func TestCollectOversizedMetadata(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	k := testenv.KubeAPIServer(t) // for the webhook certificates only
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	id := func(s string) string { return "big-" + run + "-" + s }
	rid := func(s string) string { return id(s) + ":ResponseComplete" }
	hugeURI := "/api/v1/namespaces/default/pods?labelSelector=" + strings.Repeat("a", 1_050_000)
	hugeID := func(s string) string { return id(s) + strings.Repeat("i", 1_100_000) }
	ev := func(auditID, uri string) string { return fmt.Sprintf(metadataEvent, auditID, uri) }
	const plainURI = "/api/v1/namespaces/default/pods"

	logPath := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hookAddr := testenv.FreeAddr(t)
	e := newCollectEnv(t, "big", brokers, k, colOpts{webhookListen: hookAddr, tailPaths: []string{logPath}, startAt: "beginning"})
	c := e.start("collect")
	appendTo := func(lines ...string) {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, l := range lines {
			if _, err := f.WriteString(l + "\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendTo(ev(id("tail-good-1"), plainURI), ev(id("tail-uri"), hugeURI), ev(id("tail-good-2"), plainURI),
		ev(hugeID("tail-id"), plainURI), ev(id("tail-good-3"), plainURI))

	hc := webhookClient(t, k)
	list := auditEventList
	for _, body := range []string{
		list(ev(id("hook-good-1"), plainURI), ev(id("hook-uri"), hugeURI), ev(id("hook-good-2"), plainURI)),
		list(ev(id("hook-good-3"), plainURI), ev(hugeID("hook-id"), plainURI), ev(id("hook-good-4"), plainURI)),
	} {
		if code, msg := postAudit(t, hc, hookAddr, body); code != http.StatusOK {
			t.Errorf("webhook: HTTP %d %s, want 200", code, msg)
		}
	}

	want := map[string]string{} // record id -> origin
	for _, s := range []string{"tail-good-1", "tail-uri", "tail-good-2", "tail-good-3"} {
		want[rid(s)] = "audit-tail"
	}
	for _, s := range []string{"hook-good-1", "hook-uri", "hook-good-2", "hook-good-3", "hook-good-4"} {
		want[rid(s)] = "audit-webhook"
	}
	waitRecords := func(what string, want map[string]string) []kafka.Message {
		var audit []kafka.Message
		testenv.WaitFor(t, what, 2*time.Minute, func() bool {
			audit = testenv.ReadTopic(t, e.broker, e.topics.audit)
			got := 0
			for _, m := range audit {
				if o, ok := want[colHeader(m, record.HeaderID)]; ok && o == colHeader(m, publish.HeaderOrigin) {
					got++
				}
			}
			return got >= len(want)
		})
		return audit
	}
	for _, m := range waitRecords("every record but the two with a 1.1 MB ID on the audit topic", want) {
		r, err := record.Unmarshal(m.Value)
		if err != nil {
			t.Fatalf("%s: %v", colHeader(m, record.HeaderID), err)
		}
		cut := strings.HasSuffix(r.ID, "-uri:ResponseComplete")
		note := r.Audit.Annotations[redact.TruncatedFieldsAnnotation]
		if r.Flags.Truncated != cut || cut != strings.HasPrefix(note, "requestURI="+strconv.Itoa(len(hugeURI))) {
			t.Errorf("%s: truncated=%v, annotation %q (want both only for the 1.05 MB request lines)", r.ID, r.Flags.Truncated, note)
		}
		if len(m.Value) > 1_000_000 {
			t.Errorf("%s: %d bytes on the topic", r.ID, len(m.Value))
		}
	}

	// The records with a 1.1 MB auditID: dead letters of the publisher, in
	// their place, naming them and the path that delivered them.
	var dlq []kafka.Message
	testenv.WaitFor(t, "two dead letters", time.Minute, func() bool {
		dlq = testenv.ReadTopic(t, e.broker, e.topics.dlq)
		return len(dlq) >= 2
	})
	origins := map[string]bool{}
	for _, m := range dlq {
		origins[colHeader(m, publish.HeaderOrigin)] = true
		if colHeader(m, publish.HeaderDLQSource) != "publish" || colHeader(m, publish.HeaderDLQReason) != "too_large" ||
			!strings.HasPrefix(colHeader(m, record.HeaderID), id("")) || len(m.Value) == 0 || colHeader(m, publish.HeaderDLQTruncated) == "" {
			t.Errorf("dead letter: source %q reason %q id %.40q, %d bytes, truncated %q", colHeader(m, publish.HeaderDLQSource),
				colHeader(m, publish.HeaderDLQReason), colHeader(m, record.HeaderID), len(m.Value), colHeader(m, publish.HeaderDLQTruncated))
		}
	}
	if len(dlq) != 2 || !origins["audit-tail"] || !origins["audit-webhook"] {
		t.Errorf("%d dead letters from %v, want one per audit path", len(dlq), origins)
	}

	for _, mc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kubesift_collector_fitted_total", nil, 2},
		{"kubesift_collector_oversize_total", nil, 2},
		{"kubesift_collector_publish_refused_records_total", []string{`reason="too_large"`}, 2},
		{"kubesift_collector_publish_dead_letters_total", nil, 2},
		{"kubesift_collector_webhook_requests_total", []string{`code="500"`}, 0},
		{"kubesift_source_stalled", nil, 0},
	} {
		if got := e.metric(mc.name, mc.labels...); got != mc.want {
			t.Errorf("%s%v = %v, want %v", mc.name, mc.labels, got, mc.want)
		}
	}
	res, err := http.Get("http://" + e.metrics + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "[+] audit-tail:"+logPath) {
		t.Errorf("/readyz: %d %s", res.StatusCode, body)
	}

	// A restart goes on after the big lines, and does not send them again.
	if err := c.Stop(time.Minute); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	appendTo(ev(id("tail-good-4"), plainURI))
	c = e.start("collect-2")
	waitRecords("the line written after the restart", map[string]string{rid("tail-good-4"): "audit-tail"})
	if got := e.metric("kubesift_collector_fitted_total"); got != 0 {
		t.Errorf("after the restart: fitted_total = %v, want 0 (nothing read again)", got)
	}
	if n := len(testenv.ReadTopic(t, e.broker, e.topics.dlq)); n != 2 {
		t.Errorf("%d dead letters after the restart, want still 2", n)
	}
	if err := c.Stop(time.Minute); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}
