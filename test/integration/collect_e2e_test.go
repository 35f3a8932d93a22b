package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// e2eRequests is how many API requests TestCollectAuditEndToEnd drives
// (KUBESIFT_COLLECT_REQUESTS overrides; 5,000 by default, enough to keep
// requests flowing across the kill and restart).
func e2eRequests() int {
	if n := envInt("KUBESIFT_COLLECT_REQUESTS"); n > 0 {
		return n
	}
	return 5000
}

// killDowntime is how long the collector stays killed before the restart.
const killDowntime = 3 * time.Second

func envInt(name string) int {
	var n int
	fmt.Sscan(os.Getenv(name), &n)
	return n
}

// TestCollectAuditEndToEnd runs `kubesift collect` (the real binary) with the
// audit webhook receiver (mTLS, on the address the ground's kube-apiserver
// posts to) and the tail of the ground's audit log, publishing to Kafka
// topics of its own. It drives 5,000 API requests with client-go — planting
// secret values in Secrets, ConfigMap credential keys, TokenRequests,
// TokenReviews and query strings — and kill -9s the collector when 40% of
// them are made, restarting it at once with the same config (spool,
// positions). It checks:
//   - every auditID the API server wrote to its audit log for these requests
//     is on the audit topic from both paths (header kubesift-origin), and
//     copies of one record from one path are the same record;
//   - kube-apiserver's webhook backend gave up on no event meanwhile
//     (apiserver_audit_error_total{plugin="webhook"} did not move);
//   - no planted value, plain or base64, is in any message of any topic.
func TestCollectAuditEndToEnd(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t) // shared lock first, then the webhook lock (fault tests: the same order)
	k := testenv.KubeAPIServer(t)
	testenv.LockWebhook(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	t0 := time.Now()

	e := newCollectEnv(t, "e2e", brokers, k, colOpts{
		webhookListen: k.WebhookAddr, tailPaths: []string{k.AuditLog}, kubeconfig: kubeconfig,
	})
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	errsBefore := apiserverAuditErrors(t, k)
	apiLog := watchAPIServerLog(t, k)
	logw := watchAuditLog(t, k.AuditLog)
	a := e.start("collect-a")
	tReady := time.Now()
	// The driver's first requests (its namespaces) come once the webhook
	// serves: the API server drops what it cannot deliver, and none of the
	// driver's events may be dropped.
	d := newAPIDriver(t, k, run)

	n := e2eRequests()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	driveErr := make(chan error, 1)
	driveStart := time.Now()
	go func() { driveErr <- d.drive(ctx, n, 4, 0) }()

	// kill -9 mid-stream, then restart with the same config.
	killAt := int64(n * 4 / 10)
	testenv.WaitFor(t, fmt.Sprintf("%d requests made", killAt), 5*time.Minute, func() bool { return d.count.Load() >= killAt })
	inFlight := e.metric("kubesift_collector_webhook_in_flight")
	a.Kill()
	tKill := time.Now()
	madeAtKill := d.count.Load()
	// Down for killDowntime: kube-apiserver's batch backend sends a batch
	// at least every --audit-webhook-batch-max-wait (1 s on the ground)
	// while requests flow, so batches are refused meanwhile and must be
	// retried (backoff 1 s × 1.5ⁿ, 5 attempts: about 8 s in all).
	time.Sleep(killDowntime) // the outage itself
	b := e.start("collect-b")
	tUp := time.Now()
	t.Logf("kill -9 of the collector after %d requests (webhook requests in flight just before: %v); the restarted one was ready %s later",
		madeAtKill, inFlight, tUp.Sub(tKill).Round(time.Millisecond))

	if err := <-driveErr; err != nil {
		t.Fatalf("driving the API server: %v", err)
	}
	driven := d.count.Load()
	driveTime := time.Since(driveStart)
	t.Logf("%d API requests in %s (%.0f/s), %d planted secret values", driven, driveTime.Round(time.Millisecond),
		float64(driven)/driveTime.Seconds(), d.plants.count())

	// Every auditID of these requests must arrive through both paths.
	var want []string
	var pc pathCopies
	waitStart := time.Now()
	testenv.WaitFor(t, "every audit record of the test's requests on the audit topic from both paths", 5*time.Minute, func() bool {
		want = sortedIDs(logw.records(t, d.ua))
		if int64(len(want)) < driven {
			return false // kube-apiserver writes the log before answering, so this holds at once
		}
		pc = indexAudit(t, testenv.ReadTopic(t, e.broker, e.topics.audit))
		return len(pc.missing("audit-webhook", want)) == 0 && len(pc.missing("audit-tail", want)) == 0
	})
	t.Logf("%d audit records of the test's requests in the audit log; all on %s from both paths %s after the last request",
		len(want), e.topics.audit, time.Since(waitStart).Round(time.Millisecond))
	if err := b.Stop(time.Minute); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}

	// Final read after the clean stop: counts, duplicates, contents.
	logRecs := logw.records(t, d.ua)
	want = sortedIDs(logRecs)
	pc = indexAudit(t, testenv.ReadTopic(t, e.broker, e.topics.audit))
	for _, path := range []string{"audit-webhook", "audit-tail"} {
		if miss := pc.missing(path, want); len(miss) > 0 {
			t.Errorf("%s: %d of %d auditIDs missing, e.g. %v", path, len(miss), len(want), miss[:min(5, len(miss))])
		}
		dups := pc.checkCopies(t, path, want)
		t.Logf("%s: %d of %d auditIDs delivered (lost: %d), %d extra copies with the same record ID",
			path, len(want)-len(pc.missing(path, want)), len(want), len(pc.missing(path, want)), dups)
	}
	for origin := range pc.byPath {
		if origin != "audit-webhook" && origin != "audit-tail" {
			t.Errorf("records with kubesift-origin %q on the audit topic", origin)
		}
	}

	// What became of the webhook batches around the kill: records of
	// requests made before the kill that only the restarted collector put
	// on the topic were buffered or in flight in kube-apiserver's batch
	// backend (the killed collector never answered them) and were sent —
	// retried — to the new process.
	// Records of events made more than 1.5 s before the restarted
	// collector listened — so sent in a batch (max wait 1 s) while no
	// collector listened — that only the restarted one published were
	// retried by the API server.
	retried, beforeKill, onlyB := 0, 0, 0
	for _, id := range want {
		r := logRecs[id]
		first := time.Time{}
		for _, m := range pc.byPath["audit-webhook"][id] {
			if first.IsZero() || m.Time.Before(first) {
				first = m.Time
			}
		}
		if r.EventTime.Before(tKill) {
			beforeKill++
			if first.After(tKill) {
				onlyB++
			}
		}
		if r.EventTime.Before(tUp.Add(-1500*time.Millisecond)) && first.After(tKill) {
			retried++
		}
	}
	// kube-apiserver logs every event its webhook backend gives up on.
	// Events from before the collector was up (nobody listened: the API
	// server's own lease updates and other tests' requests) can expire
	// during the test; none made while it served — kill window included —
	// and none of ours may.
	drops := apiLog.webhookDrops(t)
	late := 0
	for _, dr := range drops {
		if dr.agent == d.ua {
			t.Errorf("kube-apiserver's webhook backend dropped our event %s (%s)", dr.id, dr.at)
		}
		if !dr.at.Before(tReady) {
			late++
			t.Errorf("kube-apiserver's webhook backend dropped event %s of %s made while the collector served", dr.id, dr.at)
		}
	}
	errsAfter := apiserverAuditErrors(t, k)
	t.Logf("webhook: %d records of requests completed before the kill, %d of them reached Kafka only through the restarted collector "+
		"(buffered or in flight in kube-apiserver's batch backend at the kill); %d records sent while the collector was down, retried by "+
		"kube-apiserver and published by the restarted collector; kube-apiserver dropped %d webhook events during the test "+
		"(apiserver_audit_error_total +%v), %d of them made while the collector served",
		beforeKill, onlyB, retried, len(drops), errsAfter-errsBefore, late)
	if retried == 0 {
		t.Errorf("no batch was retried across the %s the collector was down: the kill did not test the API server's retry", killDowntime)
	}

	// The records are what the API server wrote, redacted: check the
	// redaction really happened on these bodies (else the secret scan
	// below proves nothing).
	kinds := map[string]int{}
	for _, id := range want {
		for _, m := range pc.byPath["audit-webhook"][id][:1] {
			r, err := record.Unmarshal(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, kd := range r.Flags.Redacted {
				kinds[kd]++
			}
			if r.Cluster.Name != "it-e2e" || r.Cluster.UID == "" {
				t.Fatalf("record %s: cluster %+v, want it-e2e with the kube-system UID", id, r.Cluster)
			}
		}
	}
	t.Logf("redactions by kind on the webhook path: %v", kinds)
	for _, kd := range []string{redact.KindSecretData, redact.KindSecretLastApplied, redact.KindConfigMapCredential,
		redact.KindTokenRequest, redact.KindTokenReview, redact.KindURIQuery} {
		if kinds[kd] == 0 {
			t.Errorf("no record redacted for %s: the ground's audit policy may not record bodies in %s", kd, colRedactionNS)
		}
	}
	scanned, _ := scanForPlants(t, e.broker, e.topics.all(), d.plants)
	t.Logf("scanned %d messages on %d topics for %d planted values: none found", scanned, len(e.topics.all()), d.plants.count())
	if dl := testenv.ReadTopic(t, e.broker, e.topics.dlq); len(dl) > 0 {
		t.Errorf("%d dead letters (the API server writes valid events), e.g. %s: %s", len(dl),
			colHeader(dl[0], "kubesift-dlq-reason"), colHeader(dl[0], "kubesift-dlq-error"))
	}
	t.Logf("peak RSS: first collector %d KiB, restarted collector %d KiB; test took %s",
		a.PeakRSSKiB(), b.PeakRSSKiB(), time.Since(t0).Round(time.Second))
	if s := strings.TrimSpace(testenv.Tail(b.LogPath, 400)); strings.Contains(s, `"level":"ERROR"`) {
		t.Logf("the restarted collector logged errors:\n%s", s)
	}
}
