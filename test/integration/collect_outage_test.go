package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// collectFaultPause is how long TestCollectKafkaOutage keeps the broker
// stopped: KUBESIFT_COLLECT_FAULT_PAUSE (a Go duration or seconds), default
// 60 s, long enough for the spool to grow under the test's load.
func collectFaultPause(t *testing.T) time.Duration {
	v := os.Getenv("KUBESIFT_COLLECT_FAULT_PAUSE")
	if v == "" {
		return 60 * time.Second
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(s) * time.Second
	}
	t.Fatalf("KUBESIFT_COLLECT_FAULT_PAUSE=%q: not a duration", v)
	return 0
}

// TestCollectKafkaOutage stops the real broker for KUBESIFT_COLLECT_FAULT_PAUSE
// (60 s) while API requests stream through `kubesift collect` on both audit
// paths, starts it again, and checks: every auditID of the requests is on the
// audit topic from both paths, the collector's spool grew during the outage
// (kubesift_collector_spool_bytes > 0) and drained back to 0 afterwards, and
// kube-apiserver's webhook backend dropped nothing meanwhile (the collector
// kept answering 200 once records were spooled).
func TestCollectKafkaOutage(t *testing.T) {
	testenv.Short(t)
	testenv.FaultLock(t) // no test using Kafka runs while it is down; then the webhook lock (same order everywhere)
	// testenv.Need, not KafkaBrokers: that takes the shared lock, which
	// would deadlock against the fault lock held here.
	brokers := strings.Split(testenv.Need(t, "kafka", "KUBESIFT_KAFKA_BROKERS")[0], ",")
	k := testenv.KubeAPIServer(t)
	testenv.LockWebhook(t)
	pause := collectFaultPause(t)
	if err := testenv.Script(t, "kafka", "status"); err != nil {
		msg := fmt.Sprintf("the broker on %v is not run by hack/testenv/kafka.sh with KUBESIFT_TESTENV=%s, so this test cannot stop it", brokers, testenv.Dir())
		testenv.Missing(t, msg)
	}
	t0 := time.Now()
	up := true
	t.Cleanup(func() {
		// Whatever happened, leave the broker running for the next test.
		if !up {
			testenv.Script(t, "kafka", "start")
			testenv.Script(t, "kafka", "wait")
		}
	})

	e := newCollectEnv(t, "outage", brokers, k, colOpts{webhookListen: k.WebhookAddr, tailPaths: []string{k.AuditLog}})
	apiLog := watchAPIServerLog(t, k)
	logw := watchAuditLog(t, k.AuditLog)
	c := e.start("collect")
	tReady := time.Now()
	// The driver's first requests (its namespaces) come once the webhook
	// serves: the API server drops what it cannot deliver, and none of the
	// driver's events may be dropped.
	d := newAPIDriver(t, k, fmt.Sprintf("outage-%d", time.Now().UnixNano()))

	// Sample the spool while everything runs.
	type sample struct {
		at    time.Time
		bytes float64
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	stopSampling := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if v := e.metric("kubesift_collector_spool_bytes"); v >= 0 {
				mu.Lock()
				samples = append(samples, sample{time.Now(), v})
				mu.Unlock()
			}
		}
	})

	// About 50 requests/s from 5 s before the stop to 10 s after the
	// broker is back.
	const workers, perWorker = 2, 25.0
	n := int((pause + 25*time.Second).Seconds() * workers * perWorker)
	ctx, cancel := context.WithTimeout(context.Background(), pause+5*time.Minute)
	defer cancel()
	driveErr := make(chan error, 1)
	go func() { driveErr <- d.drive(ctx, n, workers, perWorker) }()

	time.Sleep(5 * time.Second) // the timeline of the fault, not a wait for a condition
	up = false
	tStop := time.Now()
	if err := testenv.Script(t, "kafka", "stop"); err != nil {
		t.Fatalf("stop: %v", err)
	}
	time.Sleep(pause) // the outage itself
	if err := testenv.Script(t, "kafka", "start"); err != nil {
		t.Fatalf("start: %v", err)
	}
	tStarted := time.Now()
	if err := testenv.Script(t, "kafka", "wait"); err != nil {
		t.Fatalf("wait: %v", err)
	}
	up = true
	tUp := time.Now()
	madeWhileDown := d.count.Load()

	if err := <-driveErr; err != nil {
		t.Fatalf("driving the API server: %v", err)
	}
	driven := d.count.Load()
	testenv.WaitFor(t, "the spool drained", 5*time.Minute, func() bool {
		return e.metric("kubesift_collector_spool_bytes") == 0 && e.metric("kubesift_collector_publish_spooling") == 0
	})
	close(stopSampling)
	sampled.Wait()

	var want []string
	var pc pathCopies
	testenv.WaitFor(t, "every audit record of the test's requests on the audit topic from both paths", 5*time.Minute, func() bool {
		want = sortedIDs(logw.records(t, d.ua))
		if int64(len(want)) < driven {
			return false
		}
		pc = indexAudit(t, testenv.ReadTopic(t, e.broker, e.topics.audit))
		return len(pc.missing("audit-webhook", want)) == 0 && len(pc.missing("audit-tail", want)) == 0
	})
	spooled := e.metric("kubesift_collector_spooled_records_total")
	drained := e.metric("kubesift_collector_spool_drained_records_total")
	backpressure := e.metric("kubesift_collector_publish_backpressure_total")
	if err := c.Stop(time.Minute); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}

	// The spool: grew during the outage, empty again after.
	var peak float64
	var peakAt, emptyAt time.Time
	grewDuringOutage := false
	for _, s := range samples {
		if s.bytes > peak {
			peak, peakAt = s.bytes, s.at
		}
		if s.bytes > 0 && s.at.After(tStop) && s.at.Before(tUp) {
			grewDuringOutage = true
		}
	}
	for _, s := range samples {
		if s.at.After(peakAt) && s.bytes == 0 {
			emptyAt = s.at
			break
		}
	}
	if !grewDuringOutage {
		t.Errorf("kubesift_collector_spool_bytes never above 0 while the broker was down (peak %v)", peak)
	}
	// kafka.sh wait polls with a client of its own, so the collector can
	// reach the broker before wait returns: the drain is timed from the
	// broker's start.
	drainTime := "not seen by the sampler"
	if !emptyAt.IsZero() {
		drainTime = fmt.Sprintf("%s after kafka.sh start returned (%s after wait returned)",
			emptyAt.Sub(tStarted).Round(100*time.Millisecond), emptyAt.Sub(tUp).Round(100*time.Millisecond))
	}

	for _, path := range []string{"audit-webhook", "audit-tail"} {
		miss := pc.missing(path, want)
		if len(miss) > 0 {
			t.Errorf("%s: %d of %d auditIDs missing, e.g. %v", path, len(miss), len(want), miss[:min(5, len(miss))])
		}
		t.Logf("%s: %d of %d auditIDs delivered (lost: %d), %d extra copies with the same record ID",
			path, len(want)-len(miss), len(want), len(miss), pc.checkCopies(t, path, want))
	}
	late := 0
	for _, dr := range apiLog.webhookDrops(t) {
		if dr.agent == d.ua || !dr.at.Before(tReady) {
			late++
			t.Errorf("kube-apiserver's webhook backend dropped event %s (%s, %s) while the collector served", dr.id, dr.agent, dr.at)
		}
	}
	t.Logf("broker down %s (pause %s); %d API requests (%d by the time it was back); spooled %v records, drained %v; "+
		"spool peak %.0f bytes (%.1f MiB) at %s into the outage; spool empty %s; %v backpressure refusals; "+
		"webhook events dropped by kube-apiserver while the collector served: %d; collector peak RSS %d KiB; test took %s",
		tUp.Sub(tStop).Round(time.Millisecond), pause, driven, madeWhileDown, spooled, drained,
		peak, peak/(1<<20), peakAt.Sub(tStop).Round(time.Second), drainTime, backpressure, late, c.PeakRSSKiB(),
		time.Since(t0).Round(time.Second))
}
