package pipeline

import (
	"context"
	"encoding/json"
	"maps"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify"
)

// TestProcessorDeliversAndCommits: every record is written once, every
// alert is indexed and produced with the notifier's key and headers, poison
// messages become dead letters with their stage and reason, and the group
// commits exactly the end of every partition.
func TestProcessorDeliversAndCommits(t *testing.T) {
	const parts, n = 4, 2000
	c := fakeKafka(t, parts)
	brokers := c.ListenAddrs()
	run := "deliver"
	undecodable := []byte(`{"schema":1,"id":"x","cluster":{"name":"c"},"source":"audit","object":{"kind":`)
	produce(t, brokers, topicAudit, run, n, undecodable)

	w := newFakeWriter()
	badDoc := pipelinetest.Audit(run, 7).ID
	rejected := pipelinetest.Audit(run, 11).ID
	w.reject[rejected] = "mapper_parsing_exception: failed to parse field [kubernetes.audit.objectRef.name] of type [keyword]"
	w.delay = time.Millisecond
	pc := testProcessorConfig("g-deliver")
	_, reg, stop := startProcessor(t, brokers, pc, w, fakeDocs{bad: map[string]bool{badDoc: true}})

	wantAlerts := pipelinetest.Alerting(n)
	testenv.WaitFor(t, "every partition committed to its end", 60*time.Second, func() bool {
		return maps.Equal(committed(t, brokers, pc.GroupID, topicAudit, parts), endOffsets(t, brokers, topicAudit, parts))
	})
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}

	distinct, total := w.count(run + "-")
	if want := n - 2; distinct != want || total != want {
		t.Errorf("record documents: %d distinct, %d written; want %d (all but the bad and the rejected one), once each", distinct, total, want)
	}
	if d, _ := w.count("privileged-container:"); d != wantAlerts {
		t.Errorf("alert documents: %d, want %d", d, wantAlerts)
	}

	alerts := readAll(t, brokers, topicAlerts, parts)
	if len(alerts) != wantAlerts {
		t.Errorf("alerts topic: %d messages, want %d", len(alerts), wantAlerts)
	}
	for _, m := range alerts {
		var a rules.Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatalf("alert value: %v", err)
		}
		if got, want := string(m.Key), a.Cluster+"/"+a.RuleID; got != want {
			t.Errorf("alert key %q, want %q", got, want)
		}
		if header(m, "kubesift-id") != a.ID || header(m, "kubesift-schema") != "1" || header(m, "kubesift-cluster") != a.Cluster {
			t.Errorf("alert headers %v do not match alert %s", m.Headers, a.ID)
		}
	}

	dlq := readAll(t, brokers, topicDLQ, parts)
	byStage := map[string]string{}
	for _, m := range dlq {
		byStage[header(m, HeaderDLQStage)] = header(m, HeaderDLQReason) + " | " + header(m, HeaderDLQError)
		if header(m, HeaderDLQSource) != SourceProcessor || header(m, HeaderDLQOrigin) != topicAudit ||
			header(m, HeaderDLQOffset) == "" || header(m, HeaderDLQPartition) == "" {
			t.Errorf("dead letter headers incomplete: %v", m.Headers)
		}
	}
	tests := []struct{ stage, want string }{
		{StageDecode, "decode | "},
		{StageDocument, "document | record " + badDoc + ": kubernetes.audit.objectRef.name"},
		{StageIndex, "mapper_parsing_exception | record " + rejected + ": mapper_parsing_exception: failed to parse field"},
	}
	if len(dlq) != len(tests) {
		t.Errorf("dead letters: %d, want %d: %v", len(dlq), len(tests), byStage)
	}
	for _, tc := range tests {
		if !strings.HasPrefix(byStage[tc.stage], tc.want) {
			t.Errorf("dead letter of stage %s: %q, want prefix %q", tc.stage, byStage[tc.stage], tc.want)
		}
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kubesift_processor_consumed_total", []string{"topic", topicAudit}, n + 1},
		{"kubesift_processor_indexed_total", []string{"kind", "record"}, n - 2},
		{"kubesift_processor_indexed_total", []string{"kind", "alert"}, float64(wantAlerts)},
		{"kubesift_processor_rejected_total", []string{"reason", "mapper_parsing_exception"}, 1},
		{"kubesift_processor_dlq_total", nil, 3},
		{"kubesift_processor_alerts_produced_total", nil, float64(wantAlerts)},
	} {
		if got := testenv.Metric(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// TestCommitsOnlyTheContiguousPrefix: one document whose done is held back
// pins its partition's commit at its offset however many later messages are
// done; released, the commit moves to the end.
func TestCommitsOnlyTheContiguousPrefix(t *testing.T) {
	const parts, n = 3, 600
	c := fakeKafka(t, parts)
	brokers := c.ListenAddrs()
	run := "prefix"
	produce(t, brokers, topicAudit, run, n)
	msgs := readAll(t, brokers, topicAudit, parts)
	// Hold the 100th message of some partition.
	held := msgs[len(msgs)/2]
	for _, m := range msgs {
		if m.Offset == 100 {
			held = m
			break
		}
	}
	w := newFakeWriter()
	release := make(chan struct{})
	w.hold[header(held, "kubesift-id")] = release
	pc := testProcessorConfig("g-prefix")
	_, reg, _ := startProcessor(t, brokers, pc, w, fakeDocs{})

	ends := endOffsets(t, brokers, topicAudit, parts)
	testenv.WaitFor(t, "every other partition committed to its end", 30*time.Second, func() bool {
		got := committed(t, brokers, pc.GroupID, topicAudit, parts)
		for p := range parts {
			if p != held.Partition && got[p] != ends[p] {
				return false
			}
		}
		return true
	})
	testenv.WaitFor(t, "every other document written", 30*time.Second, func() bool { d, _ := w.count(run + "-"); return d == n-1 })
	testenv.WaitFor(t, "every other message done", 30*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_processor_in_flight_messages") == 1
	})
	// A commit pass later the held partition still sits at the held
	// message: everything after it is done, but not contiguous.
	ends = commitPassAfter(t, brokers, pc.GroupID, "xtra", parts, held.Partition)
	if got := committed(t, brokers, pc.GroupID, topicAudit, parts)[held.Partition]; got != held.Offset {
		t.Fatalf("partition %d committed %d while offset %d is not done; want exactly %d", held.Partition, got, held.Offset, held.Offset)
	}
	close(release)
	testenv.WaitFor(t, "held partition committed to its end", 30*time.Second, func() bool {
		return committed(t, brokers, pc.GroupID, topicAudit, parts)[held.Partition] == ends[held.Partition]
	})
}

// TestRejectedGoesToDLQBeforeAck: while the dead-letter topic refuses
// writes, the rejected record's offset is not committed (the retries go on);
// once Kafka takes the dead letter, the commit passes it.
func TestRejectedGoesToDLQBeforeAck(t *testing.T) {
	const parts, n = 2, 40 // fewer than pipelinetest.PrivilegedEvery: no alerts, only the dead letter produces
	c := fakeKafka(t, parts)
	brokers := c.ListenAddrs()
	run := "reject"
	produce(t, brokers, topicAudit, run, n)
	var victim = pipelinetest.Audit(run, 5).ID
	var vm struct {
		part int
		off  int64
	}
	for _, m := range readAll(t, brokers, topicAudit, parts) {
		if header(m, "kubesift-id") == victim {
			vm.part, vm.off = m.Partition, m.Offset
		}
	}
	fault := c.Fault(kfakeProduceFault(topicDLQ))
	w := newFakeWriter()
	w.reject[victim] = "document_parsing_exception: [1:20] failed to parse field [kubernetes.audit.user.username]"
	pc := testProcessorConfig("g-reject")
	_, reg, _ := startProcessor(t, brokers, pc, w, fakeDocs{})

	testenv.WaitFor(t, "the dead letter retried", 30*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_processor_produce_retries_total", "kind", "dlq") >= 3
	})
	testenv.WaitFor(t, "all other documents", 30*time.Second, func() bool { d, _ := w.count(run + "-"); return d == n-1 })
	testenv.WaitFor(t, "every other message done", 30*time.Second, func() bool {
		return testenv.Metric(t, reg, "kubesift_processor_in_flight_messages") == 1
	})
	commitPassAfter(t, brokers, pc.GroupID, "xtra", parts, vm.part)
	if got := committed(t, brokers, pc.GroupID, topicAudit, parts)[vm.part]; got > vm.off {
		t.Fatalf("partition %d committed %d past the rejected record at %d before its dead letter was written", vm.part, got, vm.off)
	}
	if dl := readAll(t, brokers, topicDLQ, parts); len(dl) != 0 {
		t.Fatalf("dead letters on the topic during the fault: %d", len(dl))
	}
	fault.Remove()
	ends := endOffsets(t, brokers, topicAudit, parts)
	testenv.WaitFor(t, "commit past the rejected record", 30*time.Second, func() bool {
		return committed(t, brokers, pc.GroupID, topicAudit, parts)[vm.part] == ends[vm.part]
	})
	dl := readAll(t, brokers, topicDLQ, parts)
	if len(dl) != 1 || header(dl[0], HeaderDLQStage) != StageIndex || header(dl[0], HeaderDLQReason) != "document_parsing_exception" ||
		header(dl[0], "kubesift-id") != victim {
		t.Fatalf("dead letters %+v, want the rejected record with stage index", dl)
	}
	if want := pipelinetest.Audit(run, 5); string(dl[0].Key) != want.Key {
		t.Errorf("dead letter key %q, want the original %q", dl[0].Key, want.Key)
	}
}

// TestBackpressure: a Writer that stops taking documents (Add blocks, as
// when Elasticsearch refuses and the bulk queue is full) or that takes them
// but never finishes them stops consumption at the configured bounds,
// without memory growth; when it recovers, everything is delivered once.
func TestBackpressure(t *testing.T) {
	tests := []struct {
		name         string
		block        bool // Add blocks (else Add returns and done is held)
		maxInFlight  int
		wantConsumed func(parts, maxInFlight int) int
	}{
		{"add blocks", true, 100, func(parts, _ int) int { return parts }},
		// The window is full at m; each partition has read one more and waits
		// for room before handling it.
		{"done held", false, 100, func(parts, m int) int { return parts * (m + 1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const parts, n = 3, 15000
			c := fakeKafka(t, parts)
			brokers := c.ListenAddrs()
			run := "bp"
			produce(t, brokers, topicAudit, run, n)
			w := newFakeWriter()
			gate := make(chan struct{})
			if tc.block {
				w.gate = gate
			} else {
				w.onWrite = func(string) { <-gate }
			}
			pc := testProcessorConfig("g-bp")
			pc.MaxInFlightMessages = tc.maxInFlight
			pc.QueueCapacity = 50
			// While stuck, the readers may still hold what the
			// configuration lets them prefetch: one fetch response and
			// a queue per partition. The heap bound below must sit above
			// that (3 × 256 KiB here; the 4 MiB default would allow 12
			// MiB, legitimately) and well below the topic's size, so that
			// only a reader that keeps consuming fails it.
			pc.FetchMaxBytes = 256 << 10
			const heapBound = 8 << 20
			if sample, err := record.Marshal(pipelinetest.Audit(run, 0)); err != nil || n*len(sample) < 2*heapBound {
				t.Fatalf("%d records of %d bytes do not exceed twice the heap bound: the test would not tell a leak (%v)", n, len(sample), err)
			}
			_, reg, _ := startProcessor(t, brokers, pc, w, fakeDocs{})

			want := float64(tc.wantConsumed(parts, tc.maxInFlight))
			testenv.WaitFor(t, "consumption up to the bound", 30*time.Second, func() bool {
				return testenv.Metric(t, reg, "kubesift_processor_consumed_total") >= want
			})
			heap0 := heapInUse()
			time.Sleep(time.Second)
			if got := testenv.Metric(t, reg, "kubesift_processor_consumed_total"); got != want {
				t.Fatalf("consumed %v messages while the writer is stuck; want exactly %v", got, want)
			}
			if got, bound := testenv.Metric(t, reg, "kubesift_processor_in_flight_messages"), float64(parts*tc.maxInFlight); got > bound {
				t.Fatalf("in flight %v > bound %v", got, bound)
			}
			if grow := int64(heapInUse()) - int64(heap0); grow > heapBound {
				t.Errorf("heap grew by %d bytes while stuck", grow)
			}
			close(gate)
			testenv.WaitFor(t, "all documents after recovery", 60*time.Second, func() bool { d, _ := w.count(run + "-"); return d == n })
			if _, total := w.count(run + "-"); total != n {
				t.Errorf("documents written %d times, want %d (once each)", total, n)
			}
		})
	}
}

// TestRebalanceDrainsAndCommits: a second member joins while the first is
// mid-stream with documents in flight. The first drains and commits before
// it rejoins, so the partitions it hands over resume exactly where it
// stopped: every record is written exactly once across the two.
func TestRebalanceDrainsAndCommits(t *testing.T) {
	const parts, n = 4, 8000
	c := fakeKafka(t, parts)
	brokers := c.ListenAddrs()
	run := "rebal"
	produce(t, brokers, topicAudit, run, n)
	w := newFakeWriter()
	w.delay = 200 * time.Microsecond // slow enough that the join lands mid-stream
	pc := testProcessorConfig("g-rebal")
	pc.MaxInFlightMessages = 200
	// What is under test is that a drain which finishes commits before the
	// member rejoins. A drain that outlasts processor.drain_timeout gives
	// its messages up to the next owner by design (at-least-once), and on a
	// starved machine (-race, other jobs) 5 s of draining is not always
	// enough; the bounds here leave room for the drain to finish, and the
	// rebalance allows the rejoin after it.
	pc.DrainTimeout = 30 * time.Second
	pc.RebalanceTimeout = 45 * time.Second
	_, regA, _ := startProcessor(t, brokers, pc, nopClose{w}, fakeDocs{})
	testenv.WaitFor(t, "first member mid-stream", 30*time.Second, func() bool { d, _ := w.count(run + "-"); return d >= n/8 })
	_, regB, _ := startProcessor(t, brokers, pc, nopClose{w}, fakeDocs{})

	ends := endOffsets(t, brokers, topicAudit, parts)
	testenv.WaitFor(t, "every partition committed to its end", 60*time.Second, func() bool {
		return maps.Equal(committed(t, brokers, pc.GroupID, topicAudit, parts), ends)
	})
	if g := testenv.Metric(t, regA, "kubesift_processor_generations_total"); g < 2 {
		t.Fatalf("first member saw %v generations; the join did not rebalance", g)
	}
	a, b := testenv.Metric(t, regA, "kubesift_processor_consumed_total"), testenv.Metric(t, regB, "kubesift_processor_consumed_total")
	if b == 0 {
		t.Fatalf("second member consumed nothing (first %v)", a)
	}
	distinct, total := w.count(run + "-")
	if distinct != n || total != n {
		t.Errorf("records: %d distinct, written %d times; want %d once each (consumed: first %v, second %v)", distinct, total, n, a, b)
	}
	t.Logf("consumed: first member %v, second %v; duplicates %v", a, b, total-distinct)
}

// TestGenerationEndMidMessage: the generation ends (a second member joins)
// after a message's record document was added and before its alert was.
// The message is still finished whole — alert document, alert on the topic —
// and the drain commits past it, so the next owner does not read it again:
// every record and alert is written exactly once.
func TestGenerationEndMidMessage(t *testing.T) {
	const parts, n = 2, pipelinetest.PrivilegedEvery // the last record raises the only alert
	c := fakeKafka(t, parts)
	brokers := c.ListenAddrs()
	run := "midmsg"
	produce(t, brokers, topicAudit, run, n)
	victim := pipelinetest.Audit(run, n-1).ID
	if !pipelinetest.Privileged(n - 1) {
		t.Fatalf("record %d raises no alert", n-1)
	}
	w := newFakeWriter()
	reached, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.afterAdd = func(id string) {
		if id == victim {
			once.Do(func() { close(reached); <-resume })
		}
	}
	pc := testProcessorConfig("g-midmsg")
	_, regA, _ := startProcessor(t, brokers, pc, nopClose{w}, fakeDocs{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(resume) }) }) // runs before the processor's stop

	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the alerting record's document was never added")
	}
	// Every partition goroutine of the generation (two topics) has a lag
	// series while it runs and deletes it when it has drained and returned,
	// which only the generation's end makes the unheld ones do.
	const readers = 2 * parts
	testenv.WaitFor(t, "every partition reader running", 30*time.Second, func() bool {
		return series(t, regA, "kubesift_processor_lag") == readers
	})
	startProcessor(t, brokers, pc, nopClose{w}, fakeDocs{})
	testenv.WaitFor(t, "the first member's generation ended", 30*time.Second, func() bool {
		return series(t, regA, "kubesift_processor_lag") < readers
	})
	release.Do(func() { close(resume) })

	ends := endOffsets(t, brokers, topicAudit, parts)
	testenv.WaitFor(t, "every partition committed to its end", 60*time.Second, func() bool {
		return maps.Equal(committed(t, brokers, pc.GroupID, topicAudit, parts), ends)
	})
	if d, total := w.count(run + "-"); d != n || total != n {
		t.Errorf("records: %d distinct, written %d times; want %d once each", d, total, n)
	}
	if d, total := w.count("privileged-container:"); d != 1 || total != 1 {
		t.Errorf("alert documents: %d distinct, written %d times; want 1 once", d, total)
	}
	if got := readAll(t, brokers, topicAlerts, parts); len(got) != 1 {
		t.Errorf("alerts topic: %d messages, want 1", len(got))
	}
}

// nopClose shares one fake writer between processors.
type nopClose struct{ *fakeWriter }

func (nopClose) Close(context.Context) error { return nil }

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func kfakeProduceFault(topic string) kfake.Fault {
	return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: -1}
}

// TestLateFetchResponses: a fetch response that arrives well after the
// broker's wait — a slow link, or a process starved of CPU on a busy node —
// is still read, by the processor's partition readers and by the notifier's.
// Every fetch here is answered 300 ms late, beyond the quarter of the broker
// wait that kafka-go would allow by itself (kafkaopts.ReaderMaxWait): with
// that allowance every fetch timed out, each reader reconnected and fetched
// again, and nothing was ever consumed.
func TestLateFetchResponses(t *testing.T) {
	const parts, n = 2, 50
	late := func(c *kfake.Cluster) {
		c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
			// The late answer is the case under test, not a wait.
			c.SleepControl(func() { time.Sleep(300 * time.Millisecond) })
			return nil, nil, false // then answered as usual
		})
	}
	t.Run("processor", func(t *testing.T) {
		c := fakeKafka(t, parts)
		brokers := c.ListenAddrs()
		run := "late"
		produce(t, brokers, topicAudit, run, n)
		late(c)
		w := newFakeWriter()
		pc := testProcessorConfig("g-late")
		pc.FetchMaxWait = 100 * time.Millisecond
		startProcessor(t, brokers, pc, w, fakeDocs{})
		testenv.WaitFor(t, "every record written", 2*time.Minute, func() bool { d, _ := w.count(run + "-"); return d == n })
	})
	t.Run("notify consumer", func(t *testing.T) {
		c := fakeKafka(t, parts)
		brokers := c.ListenAddrs()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
			BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
		defer w.Close()
		produceAlerts(t, ctx, w, topicAlerts, n)
		late(c)
		rcv := newWebhookReceiver(t)
		d, err := notify.New(notify.Options{
			Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupInterval: dur(100 * time.Millisecond)}),
			Receivers: map[string][]notify.Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
			MaxGroups: 100, MaxAlertsPerGroup: 1000, QueueSize: 10, GiveUpAfter: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		stop, errc := runConsumer(t, ctx, brokers, topicAlerts, "g-late-notify", d, w, topicDLQ, 100*time.Millisecond)
		defer func() { stop(); <-errc; <-errc }()
		testenv.WaitFor(t, "every alert delivered", 2*time.Minute, func() bool {
			total := 0
			for _, p := range rcv.payloads() {
				total += p.Count
			}
			return total >= n
		})
	})
}
