package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
)

// esOutage is how long Elasticsearch stays down: 2 minutes, long enough for
// every bounded window of the processor to fill, or KUBESIFT_ES_OUTAGE for
// a quicker local run.
func esOutage(t *testing.T) time.Duration {
	if v := os.Getenv("KUBESIFT_ES_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("KUBESIFT_ES_OUTAGE=%q: not a positive duration", v)
		}
		return d
	}
	return 2 * time.Minute
}

// TestProcessElasticsearchOutage stops the real Elasticsearch for two
// minutes while a processor is mid-stream, starts it again, and checks that
// exactly every record and the expected alerts end up indexed, while the
// processor's memory stayed bounded (its bulk queue and per-partition
// windows fill, Add blocks, consumption pauses; nothing piles up). The peak
// RSS is reported.
func TestProcessElasticsearchOutage(t *testing.T) {
	testenv.Short(t)
	testenv.FaultLock(t) // no test using the ground's servers runs while ES is down
	// testenv.Need, not KafkaBrokers/ElasticsearchURL: those take the shared
	// side of the lock, which would deadlock against our exclusive one.
	env := testenv.Need(t, "kafka", "KUBESIFT_KAFKA_BROKERS")
	esURL := testenv.Need(t, "es", "KUBESIFT_ES_URL")[0]
	if err := testenv.Script(t, "es", "status"); err != nil {
		msg := fmt.Sprintf("Elasticsearch on %s is not run by hack/testenv/es.sh with KUBESIFT_TESTENV=%s, so this test cannot stop it", esURL, testenv.Dir())
		testenv.Missing(t, msg)
	}
	outage := esOutage(t)
	e := newProcEnv(t, "esdown", strings.Split(env[0], ","), esURL, procPartitions)
	n := procRecords(t)
	wantAlerts := pipelinetest.Alerting(n)

	up := true
	t.Cleanup(func() {
		// Whatever happened, leave Elasticsearch running for the next test
		// (and before newProcEnv's cleanup deletes the test's streams:
		// cleanups run last-registered first).
		if !up {
			_ = testenv.Script(t, "es", "start")
			_ = testenv.Script(t, "es", "wait")
		}
	})

	p, addr := e.startProcessor("proc-a", true, "")
	start := time.Now()
	e.produce(0, n)
	t.Logf("produced %d records in %v", n, time.Since(start).Round(time.Millisecond))
	testenv.WaitFor(t, "a quarter of the records indexed", 3*time.Minute, func() bool {
		c, err := e.count(e.stream)
		return err == nil && c >= n/4
	})
	before, _ := e.count(e.stream)
	rssBefore := p.PeakRSSKiB()

	up = false
	if err := testenv.Script(t, "es", "stop"); err != nil {
		t.Fatalf("stop Elasticsearch: %v", err)
	}
	stopped := time.Now()
	t.Logf("Elasticsearch stopped with %d of %d records indexed; down for %v", before, n, outage)
	consumedAtStop := procMetric(addr, "kubesift_processor_consumed_total")
	// While it is down consumption pauses: the processor reads at most its
	// bounded windows' worth beyond what was indexed.
	time.Sleep(outage / 2) // half the outage: the fault's timeline, not a wait
	consumedMid := procMetric(addr, "kubesift_processor_consumed_total")
	inFlightMid := procMetric(addr, "kubesift_processor_in_flight_messages")
	time.Sleep(time.Until(stopped.Add(outage))) // the rest of the outage
	consumedEnd := procMetric(addr, "kubesift_processor_consumed_total")
	rssDown := p.PeakRSSKiB()
	if p.Exited() {
		t.Fatalf("processor exited while Elasticsearch was down:\n%s", testenv.Tail(p.LogPath, 30))
	}
	if consumedEnd != consumedMid {
		t.Errorf("consumption did not pause while Elasticsearch was down: consumed %v at half-time, %v at the end", consumedMid, consumedEnd)
	}

	if err := testenv.Script(t, "es", "start"); err != nil {
		t.Fatalf("start Elasticsearch: %v", err)
	}
	if err := testenv.Script(t, "es", "wait"); err != nil {
		t.Fatalf("wait for Elasticsearch: %v", err)
	}
	up = true
	back := time.Now()
	e.waitCounts(n, wantAlerts, 5*time.Minute)
	t.Logf("all %d records and %d alerts indexed %v after Elasticsearch was back", n, wantAlerts, time.Since(back).Round(time.Millisecond))
	testenv.WaitFor(t, "offsets committed to the end of every partition", time.Minute, e.committedToEnd)
	e.checkAlertsTopic(wantAlerts)
	e.waitSettled(addr)
	if got, err := e.count(e.stream); err != nil || got != n {
		t.Errorf("record documents after settling: %d (%v), want exactly %d", got, err, n)
	}
	rssEnd := p.PeakRSSKiB()
	// Bounded: the processor's configured bounds (bulk queue 64 MiB, 6 ×
	// 8 MiB windows, reader queues) keep it far below the 160 MB of input;
	// an unbounded buffer would hold everything consumed during the outage.
	const limitKiB = 600 << 10
	if rssEnd > limitKiB {
		t.Errorf("peak RSS %d KiB exceeds %d KiB", rssEnd, limitKiB)
	}
	t.Logf("peak RSS: %d KiB before the outage, %d KiB at its end, %d KiB overall; consumed %v at stop, %v at half-time, %v at the end of the outage (in flight %v); input %d records (~%d MB)",
		rssBefore, rssDown, rssEnd, consumedAtStop, consumedMid, consumedEnd, inFlightMid, n, n*1630/1_000_000)
	if err := p.Stop(30 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}
