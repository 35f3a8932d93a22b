package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
)

// These tests run the real `kubesift process` binary (two of them in one
// consumer group, as separate processes) against the test ground's real
// Kafka and real Elasticsearch. Records are generated deterministically
// (pipelinetest): unique IDs, 997 users whose cluster/user keys spread over
// every partition, ~1.6 KB each, and every 50th a privileged pod create that
// the built-in rule privileged-container alerts on, so the alerts are known
// in advance.

// procRecords is the number of records per test: 100,000, enough that a
// kill or a rebalance lands mid-stream, or KUBESIFT_PROCESS_RECORDS for a
// quicker local run.
func procRecords(t *testing.T) int {
	if v := os.Getenv("KUBESIFT_PROCESS_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("KUBESIFT_PROCESS_RECORDS=%q: not a positive number", v)
		}
		return n
	}
	return 100000
}

const procPartitions = 6

// startPair starts two processors of one group (the first installs the
// Elasticsearch templates with --setup) and waits until they share the
// partitions.
func startPair(t *testing.T, e *procEnv) (a, b *testenv.Proc, aAddr, bAddr string) {
	t.Helper()
	a, aAddr = e.startProcessor("proc-a", true, "")
	b, bAddr = e.startProcessor("proc-b", false, "")
	testenv.WaitFor(t, "both members assigned partitions", 60*time.Second, func() bool {
		pa, pb := procMetric(aAddr, "kubesift_processor_assigned_partitions"), procMetric(bAddr, "kubesift_processor_assigned_partitions")
		return pa > 0 && pb > 0 && pa+pb == procPartitions
	})
	return a, b, aAddr, bAddr
}

// TestProcessTwoMembers: 100,000 records through two processors in one
// group: exactly 100,000 documents and the expected alerts, in the alerts
// index and on the alerts topic; both members did part of the work; the
// group committed the end of every partition; SIGTERM exits cleanly.
func TestProcessTwoMembers(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	e := newProcEnv(t, "two", brokers, testenv.ElasticsearchURL(t), procPartitions)
	n := procRecords(t)
	wantAlerts := pipelinetest.Alerting(n)
	a, b, aAddr, bAddr := startPair(t, e)

	start := time.Now()
	e.produce(0, n)
	t.Logf("produced %d records in %v", n, time.Since(start).Round(time.Millisecond))
	e.waitCounts(n, wantAlerts, 5*time.Minute)
	elapsed := time.Since(start)
	testenv.WaitFor(t, "offsets committed to the end of every partition", time.Minute, e.committedToEnd)
	distinct, total := e.checkAlertsTopic(wantAlerts)

	ca, cb := procMetric(aAddr, "kubesift_processor_consumed_total"), procMetric(bAddr, "kubesift_processor_consumed_total")
	if ca <= 0 || cb <= 0 {
		t.Errorf("consumed: member a %v, member b %v; want both to have worked", ca, cb)
	}
	// Nothing arrives late: with no message in flight on either member,
	// every document the processors write has been acknowledged, so the
	// count is final.
	testenv.WaitFor(t, "no message in flight on either member", time.Minute, func() bool {
		return procMetric(aAddr, "kubesift_processor_in_flight_messages") == 0 &&
			procMetric(bAddr, "kubesift_processor_in_flight_messages") == 0
	})
	e.waitSettled(aAddr, bAddr)
	if got, err := e.count(e.stream); err != nil || got != n {
		t.Errorf("record documents after settling: %d (%v), want exactly %d", got, err, n)
	}
	for _, p := range []*testenv.Proc{a, b} {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: SIGTERM: %v", p.Name, err)
		}
	}
	t.Logf("%d records + %d alerts indexed in %v from the start of producing (%.0f records/s end to end); consumed a=%v b=%v; alerts topic %d distinct / %d messages; peak RSS a=%d KiB b=%d KiB",
		n, wantAlerts, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), ca, cb, distinct, total, a.PeakRSSKiB(), b.PeakRSSKiB())
}

// TestProcessKillOne: one processor is killed with SIGKILL mid-stream; the
// other takes its partitions over after the session timeout and resumes at
// the committed offsets: still exactly 100,000 documents and the expected
// alerts (the re-delivered records are Duplicates, counted, not documents).
func TestProcessKillOne(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	e := newProcEnv(t, "kill", brokers, testenv.ElasticsearchURL(t), procPartitions)
	n := procRecords(t)
	wantAlerts := pipelinetest.Alerting(n)
	a, b, aAddr, bAddr := startPair(t, e)

	e.produce(0, n)
	testenv.WaitFor(t, "a third of the records indexed", 3*time.Minute, func() bool {
		c, err := e.count(e.stream)
		return err == nil && c >= n/3
	})
	consumedA := procMetric(aAddr, "kubesift_processor_consumed_total")
	before, _ := e.count(e.stream)
	a.Kill()
	killed := time.Now()
	t.Logf("killed %s (pid %d, kill -9) with %d of %d records indexed; it had consumed %v", a.Name, a.Pid(), before, n, consumedA)

	e.waitCounts(n, wantAlerts, 5*time.Minute)
	t.Logf("all %d records and %d alerts indexed %v after the kill", n, wantAlerts, time.Since(killed).Round(time.Millisecond))
	testenv.WaitFor(t, "offsets committed to the end of every partition", time.Minute, e.committedToEnd)
	e.checkAlertsTopic(wantAlerts)
	// The documents can all be in before the session timeout ends the
	// killed member (when it had finished its partitions before the kill):
	// the takeover itself must still come, within a minute.
	testenv.WaitFor(t, "the survivor taking over every partition", time.Minute, func() bool {
		return procMetric(bAddr, "kubesift_processor_assigned_partitions") == procPartitions
	})
	if g := procMetric(bAddr, "kubesift_processor_generations_total"); g < 2 {
		t.Errorf("survivor joined %v generations; want a rebalance after the kill", g)
	}
	testenv.WaitFor(t, "no message in flight on the survivor", time.Minute, func() bool {
		return procMetric(bAddr, "kubesift_processor_in_flight_messages") == 0
	})
	e.waitSettled(bAddr)
	if got, err := e.count(e.stream); err != nil || got != n {
		t.Errorf("record documents after settling: %d (%v), want exactly %d", got, err, n)
	}
	t.Logf("survivor: consumed %v, duplicates (re-delivered after the kill) %v",
		procMetric(bAddr, "kubesift_processor_consumed_total"), procMetric(bAddr, "kubesift_processor_duplicates_total"))
	if err := b.Stop(30 * time.Second); err != nil {
		t.Errorf("%s: SIGTERM: %v", b.Name, err)
	}
}

// TestProcessPoison: a message that is not a record, and a record whose
// document Elasticsearch refuses (2,500 distinct annotation names: past the
// audit stream's limit of 2,000 mapped fields) both end on the dead-letter topic
// with their stage and reason and the original bytes; every other record is
// indexed and the partitions are committed to the end (the poison blocks
// nothing).
func TestProcessPoison(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	e := newProcEnv(t, "poison", brokers, testenv.ElasticsearchURL(t), procPartitions)
	n := min(procRecords(t), 5000)
	wantAlerts := pipelinetest.Alerting(n)

	undecodable := []byte(`{"schema":1,"id":"broken","source":"audit","object":{"kind":"Event",`)
	big := pipelinetest.Audit(e.run, n) // record number n: not among the n good ones
	for i := range 2500 {
		big.Audit.Annotations[fmt.Sprintf("poison.example.com/key-%04d", i)] = "v"
	}
	if err := big.SyncObject(); err != nil {
		t.Fatal(err)
	}
	bigMsg := recordMessage(t, big)
	e.startProcessor("proc-a", true, "")
	e.produce(0, n, kafka.Message{Key: []byte("poison/undecodable"), Value: undecodable}, bigMsg)

	e.waitCounts(n, wantAlerts, 3*time.Minute)
	testenv.WaitFor(t, "offsets committed to the end of every partition", time.Minute, e.committedToEnd)
	dl := e.readTopic(e.dlq)
	byStage := map[string]kafka.Message{}
	for _, m := range dl {
		byStage[procHeader(m, pipeline.HeaderDLQStage)] = m
		t.Logf("dead letter: stage=%s reason=%s error=%.300s origin=%s/%s@%s", procHeader(m, pipeline.HeaderDLQStage),
			procHeader(m, pipeline.HeaderDLQReason), procHeader(m, pipeline.HeaderDLQError), procHeader(m, pipeline.HeaderDLQOrigin),
			procHeader(m, pipeline.HeaderDLQPartition), procHeader(m, pipeline.HeaderDLQOffset))
	}
	if len(dl) != 2 {
		t.Errorf("dead letters: %d, want 2", len(dl))
	}
	if m, ok := byStage[pipeline.StageDecode]; !ok || string(m.Value) != string(undecodable) || procHeader(m, pipeline.HeaderDLQReason) != "decode" ||
		procHeader(m, pipeline.HeaderDLQError) == "" {
		t.Errorf("undecodable message: dead letter %v %q", ok, m.Value)
	}
	m, ok := byStage[pipeline.StageIndex]
	switch {
	case !ok:
		t.Errorf("no dead letter of stage index for the refused document")
	case string(m.Value) != string(bigMsg.Value) || procHeader(m, "kubesift-id") != big.ID:
		t.Errorf("index dead letter is not the original record %s", big.ID)
	case !strings.Contains(procHeader(m, pipeline.HeaderDLQError), "fields"):
		t.Errorf("index dead letter's error does not name the mapping problem: %q (reason %q)",
			procHeader(m, pipeline.HeaderDLQError), procHeader(m, pipeline.HeaderDLQReason))
	}
	if got, err := e.count(e.stream); err != nil || got != n {
		t.Errorf("record documents: %d (%v), want exactly %d", got, err, n)
	}
}
