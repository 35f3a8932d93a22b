package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The unit tests below run the publisher against kfake, franz-go's
// in-process Kafka, which kafka-go talks to like a real broker (produce,
// metadata, fetch). Faults are injected per request type.

const fakePrefix = "unit"

func fakeCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	k := testKafkaConfig(nil, fakePrefix)
	opts = append([]kfake.Opt{kfake.NumBrokers(1),
		kfake.SeedTopics(4, k.Topics.Audit, k.Topics.Events, k.Topics.Objects, k.Topics.DLQ)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func closePublisher(t testing.TB, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// publishAll publishes recs in batches, retrying a batch refused with
// ErrBackpressure; it returns the ids of the records acknowledged upstream.
func publishAll(t testing.TB, p *Publisher, recs []*record.Record, batch int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for i := 0; i < len(recs); i += batch {
		b := recs[i:min(i+batch, len(recs))]
		for {
			err := p.Publish(context.Background(), b)
			if err == nil {
				break
			}
			if !errors.Is(err, collector.ErrBackpressure) {
				t.Fatalf("publish: %v", err)
			}
			// A pause before retrying, as a caller would make: nothing
			// observable says when the spool will take more.
			time.Sleep(20 * time.Millisecond)
		}
		for _, r := range b {
			ids[r.ID] = true
		}
	}
	return ids
}

func TestPublishWireFormat(t *testing.T) {
	c := fakeCluster(t)
	broker := c.ListenAddrs()[0]
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), reg)

	audits := []*record.Record{auditRecord(1, "alice", 0), auditRecord(2, "bob", 0), auditRecord(3, "alice", 0)}
	events := []*record.Record{eventRecord(1)}
	if err := p.Publish(context.Background(), append(audits, events...)); err != nil {
		t.Fatal(err)
	}
	dl := collector.DeadLetter{Data: []byte("{not json"), Source: "audit-tail", Origin: "/var/log/audit.log",
		Offset: 4096, Line: 17, Reason: "syntax", Error: "line 17: invalid character", Cluster: testCluster}
	if err := p.PublishDeadLetters(context.Background(), []collector.DeadLetter{dl}); err != nil {
		t.Fatal(err)
	}
	closePublisher(t, p)

	got := testenv.ReadTopic(t, broker, k.Topics.Audit)
	if len(got) != len(audits) {
		t.Fatalf("audit topic holds %d messages, want %d", len(got), len(audits))
	}
	partOf := map[string]int{}
	for _, m := range got {
		id, _ := header(m, record.HeaderID)
		var want *record.Record
		for _, r := range audits {
			if r.ID == id {
				want = r
			}
		}
		if want == nil {
			t.Fatalf("unexpected id %q", id)
		}
		value, _ := record.Marshal(want)
		tests := []struct{ what, got, want string }{
			{"key", string(m.Key), want.Key},
			{"value", string(m.Value), string(value)},
			{"schema header", must(header(m, record.HeaderSchema)), "1"},
			{"source header", must(header(m, record.HeaderSource)), "audit"},
			{"cluster header", must(header(m, record.HeaderCluster)), testCluster.Name},
		}
		for _, tc := range tests {
			if tc.got != tc.want {
				t.Errorf("%s: %s = %q, want %q", id, tc.what, tc.got, tc.want)
			}
		}
		if p, ok := partOf[string(m.Key)]; ok && p != m.Partition {
			t.Errorf("key %s in partitions %d and %d", m.Key, p, m.Partition)
		}
		partOf[string(m.Key)] = m.Partition
	}
	if string(got[0].Key) != "test-cluster/alice" && string(got[0].Key) != "test-cluster/bob" {
		t.Errorf("audit key %q is not cluster/user", got[0].Key)
	}
	if ev := testenv.ReadTopic(t, broker, k.Topics.Events); len(ev) != 1 || must(header(ev[0], record.HeaderSource)) != "event" {
		t.Errorf("events topic: %d messages", len(ev))
	}
	dlq := testenv.ReadTopic(t, broker, k.Topics.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("dlq holds %d messages", len(dlq))
	}
	for h, want := range map[string]string{
		HeaderDLQSource: "audit-tail", HeaderDLQOrigin: "/var/log/audit.log", HeaderDLQOffset: "4096",
		HeaderDLQLine: "17", HeaderDLQReason: "syntax", HeaderDLQError: "line 17: invalid character",
		record.HeaderCluster: testCluster.Name,
	} {
		if got, _ := header(dlq[0], h); got != want {
			t.Errorf("dlq header %s = %q, want %q", h, got, want)
		}
	}
	if string(dlq[0].Value) != "{not json" {
		t.Errorf("dlq value %q", dlq[0].Value)
	}
	for name, want := range map[string]float64{
		"kubesift_collector_publish_acked_records_total": 5,
		"kubesift_collector_publish_sent_records_total":  5,
		"kubesift_collector_publish_dead_letters_total":  1,
		"kubesift_collector_spooled_records_total":       0,
	} {
		if got := testenv.Metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func must(s string, _ bool) string { return s }

func TestPublishSpoolsWhileProduceFailsAndDrainsInOrder(t *testing.T) {
	tests := []struct {
		name string
		err  *kerr.Error
	}{
		{"retriable error", kerr.NotEnoughReplicas},
		// Not retried by kafka-go, and not a refusal of the records
		// themselves (refuse.go): the records wait in the spool.
		{"error kafka-go does not retry", kerr.ClusterAuthorizationFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeCluster(t)
			k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
			reg := prometheus.NewRegistry()
			p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), reg)
			defer closePublisher(t, p)

			fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: tc.err, Count: -1})
			var recs []*record.Record
			for i := range 300 {
				recs = append(recs, auditRecord(i, fmt.Sprintf("user-%d", i%7), 0))
			}
			ids := publishAll(t, p, recs[:150], 25)
			if st := p.Stats(); !st.Spooling || st.SpoolBytes == 0 {
				t.Fatalf("not spooling while Kafka refuses: %+v", st)
			}
			if testenv.Metric(t, reg, "kubesift_collector_spooled_records_total") != 150 {
				t.Errorf("spooled = %v", testenv.Metric(t, reg, "kubesift_collector_spooled_records_total"))
			}
			fault.Remove()
			// New records go behind the spooled ones.
			for id := range publishAll(t, p, recs[150:], 25) {
				ids[id] = true
			}
			waitDrained(t, p)

			msgs := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit)
			checkAllOnce(t, msgs, ids)
			// Per key (one partition each), records appear in publish order.
			checkKeyOrder(t, msgs)
			if got := testenv.Metric(t, reg, "kubesift_collector_spool_drained_records_total"); got < 150 {
				t.Errorf("drained = %v, want >= 150", got)
			}
			if testenv.Metric(t, reg, "kubesift_collector_spool_bytes") != 0 || testenv.Metric(t, reg, "kubesift_collector_spool_segments") != 0 {
				t.Error("spool gauges not back to 0")
			}
		})
	}
}

// TestDrainKeepsKeyOrderWhenABatchFails: a drain round holds more of one
// key than one produce batch. The broker refuses the first produce request
// once, with an error kafka-go does not retry. Before drain rounds were sent
// in parts of one batch, kafka-go sent the partition's next batches anyway,
// they were acknowledged, and the re-sent round put the first batch's
// records behind them.
func TestDrainKeepsKeyOrderWhenABatchFails(t *testing.T) {
	tests := []struct {
		name      string
		batchSize int
		batch     int64
	}{
		{"cut by batch_size", 40, 1 << 20},
		{"cut by batch_bytes", 1000, 64 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testPublishConfig(dir)
			cfg.AckTimeout = time.Second
			cfg.BatchSize, cfg.BatchBytes = tc.batchSize, tc.batch
			// First run: no Kafka; every record goes to the spool.
			p := newTestPublisher(t, testKafkaConfig([]string{"127.0.0.1:1"}, fakePrefix), cfg, prometheus.NewRegistry())
			var recs []*record.Record
			for i := range 200 {
				recs = append(recs, auditRecord(i, "alice", 1000))
			}
			ids := publishAll(t, p, recs, 200)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			p.Close(ctx)
			cancel()

			// Second run: the first produce request is refused.
			c := fakeCluster(t)
			k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
			c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.ClusterAuthorizationFailed})
			reg := prometheus.NewRegistry()
			p2 := newTestPublisher(t, k, cfg, reg)
			defer closePublisher(t, p2)
			waitDrained(t, p2)
			msgs := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit)
			checkAllOnce(t, msgs, ids)
			checkKeyOrder(t, msgs)
			// The failed part was first: nothing was sent after it, so
			// the re-sent round brought no duplicates.
			if len(msgs) != len(recs) {
				t.Errorf("%d messages for %d records", len(msgs), len(recs))
			}
		})
	}
}

// TestPartIsOneKafkaGoBatch checks partLen's premise against kafka-go's own
// batching: records whose wireSize adds up to batch_bytes, all of one key,
// leave the writer as one batch (one Completion call), whatever kafka-go
// counts for keys, values and headers.
func TestPartIsOneKafkaGoBatch(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	var kms []kafka.Message
	var total int64
	for i := range 50 {
		// Sizes and header counts vary: a short value, a body, a record
		// from an origin (one more header).
		r := auditRecord(i, "alice", (i%5)*700)
		origin := []byte(nil)
		if i%2 == 0 {
			origin = []byte("audit-tail")
		}
		m, err := fromRecord(r, origin)
		if err != nil {
			t.Fatal(err)
		}
		total += m.wireSize()
		kms = append(kms, kafka.Message{Topic: k.Topics.Audit, Key: m.key, Value: m.value, Headers: m.headers})
	}
	var mu sync.Mutex
	var batches []int
	done := make(chan struct{}, len(kms))
	w := &kafka.Writer{
		Addr: kafka.TCP(c.ListenAddrs()...), Balancer: kafka.Murmur2Balancer{},
		BatchSize: 10000, BatchBytes: total, BatchTimeout: 50 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, Async: true,
		Completion: func(msgs []kafka.Message, err error) {
			if err != nil {
				t.Errorf("batch of %d: %v", len(msgs), err)
			}
			mu.Lock()
			batches = append(batches, len(msgs))
			mu.Unlock()
			for range msgs {
				done <- struct{}{}
			}
		},
	}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kms...); err != nil {
		t.Fatal(err)
	}
	for range kms {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("messages not completed")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 {
		t.Errorf("kafka-go cut %d records of %d wireSize bytes (its batch_bytes) into batches %v: wireSize counts less than kafka-go does, so a part of partLen can be two batches", len(kms), total, batches)
	}
}

func TestPartLen(t *testing.T) {
	msg := func(value int) outMsg { return outMsg{key: []byte("k"), value: make([]byte, value)} }
	m100 := msg(100)
	size := m100.wireSize()
	tests := []struct {
		name      string
		msgs      []outMsg
		batchSize int
		batch     int64
		want      int
	}{
		{"all fit", []outMsg{msg(100), msg(100)}, 10, 1 << 20, 2},
		{"count", []outMsg{msg(100), msg(100), msg(100)}, 2, 1 << 20, 2},
		{"bytes exactly", []outMsg{msg(100), msg(100), msg(100)}, 10, 2 * size, 2},
		{"bytes one short", []outMsg{msg(100), msg(100), msg(100)}, 10, 2*size - 1, 1},
		{"a first record larger than the limit still goes alone", []outMsg{msg(1000), msg(1)}, 10, 100, 1},
		{"one", []outMsg{msg(1)}, 1, 1, 1},
	}
	for _, tc := range tests {
		if got := partLen(tc.msgs, tc.batchSize, tc.batch); got != tc.want {
			t.Errorf("%s: partLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPublishAckTimeoutSpools(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	cfg := testPublishConfig(t.TempDir())
	cfg.AckTimeout = 300 * time.Millisecond
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)
	defer closePublisher(t, p)

	// Hold every produce request until released: Kafka is "slow".
	release := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	defer once.Do(func() { close(release) })

	recs := []*record.Record{auditRecord(1, "alice", 0), auditRecord(2, "alice", 0)}
	start := time.Now()
	if err := p.Publish(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < cfg.AckTimeout || took > cfg.AckTimeout+2*time.Second {
		t.Errorf("Publish took %s, want about ack_timeout %s", took, cfg.AckTimeout)
	}
	if got := testenv.Metric(t, reg, "kubesift_collector_spooled_records_total"); got != 2 {
		t.Fatalf("spooled = %v, want 2", got)
	}
	if got := testenv.Metric(t, reg, "kubesift_collector_publish_failed_records_total", "reason", reasonAckTimeout); got != 2 {
		t.Errorf("failed{ack_timeout} = %v, want 2", got)
	}
	once.Do(func() { close(release) })
	c.DropControl()
	testenv.WaitFor(t, "spool drained", 30*time.Second, func() bool { return p.Stats().SpoolBytes == 0 && !p.Stats().Spooling })
	msgs := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit)
	// The held request is answered late and the drainer sends again:
	// duplicates are expected, with the same IDs.
	dups := checkAllOnce(t, msgs, map[string]bool{recs[0].ID: true, recs[1].ID: true})
	t.Logf("%d messages, %d duplicates", len(msgs), dups)
}

func TestPublishBackpressureWhenSpoolFull(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	cfg := testPublishConfig(t.TempDir())
	cfg.BatchBytes = 64 << 10
	cfg.Spool.SegmentBytes = 128 << 10
	cfg.Spool.MaxBytes = 256 << 10
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)
	defer closePublisher(t, p)

	// Kafka refuses every produce, with an error that is no refusal of the
	// records themselves (those go to the dead-letter topic, refuse.go).
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.ClusterAuthorizationFailed, Count: -1})
	ids := map[string]bool{}
	var refused error
	n := 0
	for ; n < 10000 && refused == nil; n += 20 {
		var b []*record.Record
		for i := range 20 {
			b = append(b, auditRecord(n+i, "alice", 1500))
		}
		if refused = p.Publish(context.Background(), b); refused == nil {
			for _, r := range b {
				ids[r.ID] = true
			}
		}
	}
	if !errors.Is(refused, collector.ErrBackpressure) {
		t.Fatalf("after %d records: err = %v, want ErrBackpressure", n, refused)
	}
	if st := p.Stats(); st.SpoolBytes > cfg.Spool.MaxBytes {
		t.Errorf("spool %d bytes over its limit %d", st.SpoolBytes, cfg.Spool.MaxBytes)
	}
	// Refused immediately, not after a Kafka timeout.
	start := time.Now()
	var again []*record.Record
	for i := range 20 {
		again = append(again, auditRecord(90000+i, "alice", 1500))
	}
	if err := p.Publish(context.Background(), again); !errors.Is(err, collector.ErrBackpressure) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %s", d)
	}
	if testenv.Metric(t, reg, "kubesift_collector_publish_backpressure_total") < 2 {
		t.Error("backpressure not counted")
	}
	fault.Remove()
	// Drained means back to direct publishing too: a record published
	// while the publisher still spools returns once it is in the spool,
	// and reading the topic right after could miss it.
	drained := func() bool { st := p.Stats(); return !st.Spooling && st.SpoolBytes == 0 }
	testenv.WaitFor(t, "spool drained", 30*time.Second, drained)
	more := publishAll(t, p, []*record.Record{auditRecord(20000, "bob", 1500)}, 1)
	for id := range more {
		ids[id] = true
	}
	testenv.WaitFor(t, "spool drained", 30*time.Second, drained)
	checkAllOnce(t, testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit), ids)
}

func TestPublishRestartDrainsLeftoverSpool(t *testing.T) {
	dir := t.TempDir()
	// First run: Kafka is unreachable (nothing listens on the address).
	dead := testKafkaConfig([]string{"127.0.0.1:1"}, fakePrefix)
	cfg := testPublishConfig(dir)
	cfg.AckTimeout = time.Second
	p := newTestPublisher(t, dead, cfg, prometheus.NewRegistry())
	var recs []*record.Record
	for i := range 200 {
		recs = append(recs, auditRecord(i, fmt.Sprintf("u%d", i%3), 0))
	}
	ids := publishAll(t, p, recs, 50)
	if st := p.Stats(); !st.Spooling || st.SpoolBytes == 0 {
		t.Fatalf("nothing spooled with Kafka unreachable: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	p.Close(ctx) // the writer may still be retrying: fine
	cancel()

	// Second run: Kafka is there; the old spool drains first.
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	reg := prometheus.NewRegistry()
	p2 := newTestPublisher(t, k, cfg, reg)
	defer closePublisher(t, p2)
	if !p2.Stats().Spooling {
		t.Error("a publisher with a leftover spool must start in spooling mode")
	}
	testenv.WaitFor(t, "leftover spool drained", 30*time.Second, func() bool { return p2.Stats().SpoolBytes == 0 })
	checkAllOnce(t, testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit), ids)
	if got := testenv.Metric(t, reg, "kubesift_collector_spool_drained_records_total"); got != 200 {
		t.Errorf("drained %v, want 200", got)
	}
}

// A record the publisher can never send (too large, or not encodable) does
// not fail its batch: its dead letter takes its place, naming it, and its
// neighbours are published.
func TestPublishRejectsOneRecordNotItsBatch(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	cfg := testPublishConfig(t.TempDir())
	cfg.BatchBytes = 8 << 10
	cfg.Spool.SegmentBytes = 1 << 20
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)

	big := auditRecord(1, "alice", 20<<10)
	bad := auditRecord(3, "alice", 0)
	bad.Source = "pods"
	tests := []struct {
		name   string
		rec    *record.Record
		reason string
	}{
		{"too large", big, reasonTooLarge},
		{"not encodable", bad, reasonEncode},
	}
	want := map[string]bool{}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, after := auditRecord(10+2*i, "alice", 0), auditRecord(11+2*i, "alice", 0)
			want[before.ID], want[after.ID] = true, true
			if err := p.Publish(context.Background(), []*record.Record{before, tc.rec, after}); err != nil {
				t.Fatalf("Publish = %v, want nil (the record dead-lettered)", err)
			}
			if got := testenv.Metric(t, reg, "kubesift_collector_publish_refused_records_total", "reason", tc.reason); got != 1 {
				t.Errorf("refused{reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
	if err := p.Publish(context.Background(), nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	closePublisher(t, p)
	if err := p.Publish(context.Background(), []*record.Record{auditRecord(4, "alice", 0)}); !errors.Is(err, collector.ErrBackpressure) {
		t.Errorf("after Close: err = %v, want ErrBackpressure", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checkAllOnce(t, testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Audit), want)
	dlq := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.DLQ)
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dlq))
	}
	for i, tc := range tests {
		m := dlq[i]
		id, _ := header(m, record.HeaderID)
		reason, _ := header(m, HeaderDLQReason)
		src, _ := header(m, HeaderDLQSource)
		if id != tc.rec.ID || reason != tc.reason || src != "publish" || len(m.Value) == 0 || int64(len(m.Value)) > cfg.BatchBytes {
			t.Errorf("dead letter %d: id %q reason %q source %q, %d bytes", i, id, reason, src, len(m.Value))
		}
	}
	if got, _ := header(dlq[0], HeaderDLQTruncated); got == "" {
		t.Error("the too-large record's dead letter is not marked as cut")
	}
}

func TestCloseSpoolsWhatIsNotAcknowledged(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	dir := t.TempDir()
	cfg := testPublishConfig(dir)
	cfg.AckTimeout = time.Minute // only Close's deadline can end the wait
	p := newTestPublisher(t, k, cfg, prometheus.NewRegistry())

	release := make(chan struct{})
	produced := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case produced <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	defer close(release)

	recs := []*record.Record{auditRecord(1, "alice", 0), auditRecord(2, "bob", 0)}
	done := make(chan error, 1)
	go func() { done <- p.Publish(context.Background(), recs) }()
	// Close must find the records in flight: wait until the broker holds
	// their produce request.
	select {
	case <-produced:
	case <-time.After(30 * time.Second):
		t.Fatal("no produce request reached the broker within 30s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	p.Close(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with a 300ms deadline", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("Publish during Close: %v (want nil: its records are spooled)", err)
	}
	// The records are in the spool for the next start.
	s := testSpool(t, dir, cfg.Spool.MaxBytes, cfg.Spool.SegmentBytes, nil)
	defer s.Close()
	got := drainAll(t, s, 1<<20)
	if len(got) != 2 {
		t.Fatalf("spool holds %d entries after Close, want 2", len(got))
	}
	m, err := decodePayload(got[0])
	if err != nil || m.kind != kindAudit {
		t.Fatalf("spooled entry: %+v %v", m, err)
	}
}

func TestDeadLetterCutToFit(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	cfg := testPublishConfig(t.TempDir())
	cfg.BatchBytes = 16 << 10
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)
	data := []byte(strings.Repeat("y", 100<<10))
	if err := p.PublishDeadLetters(context.Background(), []collector.DeadLetter{{Data: data, Source: "audit-webhook",
		Origin: "10.0.0.1:5555", Offset: -1, Reason: "too_large", Error: strings.Repeat("e", 10000), Cluster: testCluster}}); err != nil {
		t.Fatal(err)
	}
	closePublisher(t, p)
	dlq := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("%d dead letters", len(dlq))
	}
	if got, _ := header(dlq[0], HeaderDLQTruncated); got != fmt.Sprint(len(data)) {
		t.Errorf("truncated header = %q", got)
	}
	if len(dlq[0].Value) == 0 || len(dlq[0].Value) >= len(data) || int64(len(dlq[0].Value)) > cfg.BatchBytes {
		t.Errorf("value %d bytes", len(dlq[0].Value))
	}
	if got, _ := header(dlq[0], HeaderDLQError); len(got) != maxDLQErrorLen {
		t.Errorf("error header %d bytes, want cut to %d", len(got), maxDLQErrorLen)
	}
	if got, _ := header(dlq[0], HeaderDLQOffset); got != "-1" {
		t.Errorf("offset header %q", got)
	}
	if testenv.Metric(t, reg, "kubesift_collector_dead_letters_truncated_total") != 1 {
		t.Error("truncation not counted")
	}
}

// TestNoGoroutinePerRecord publishes many records from many callers while
// Kafka refuses everything and checks the goroutine count stays bounded by
// the callers, not the records.
func TestNoGoroutinePerRecord(t *testing.T) {
	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), prometheus.NewRegistry())
	defer closePublisher(t, p)
	// Kafka refuses every produce, with an error that is no refusal of the
	// records themselves (those go to the dead-letter topic, refuse.go).
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.ClusterAuthorizationFailed, Count: -1})
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	peak := 0
	var mu sync.Mutex
	for w := range 8 {
		wg.Go(func() {
			var recs []*record.Record
			for i := range 2000 {
				recs = append(recs, auditRecord(w*10000+i, "u", 0))
			}
			publishAll(t, p, recs, 100)
			mu.Lock()
			peak = max(peak, runtime.NumGoroutine())
			mu.Unlock()
		})
	}
	wg.Wait()
	fault.Remove()
	// 8 callers + kafka-go's per-partition writers and timers + drainer.
	if peak-base > 100 {
		t.Errorf("goroutines grew by %d while publishing 16,000 records", peak-base)
	}
}

func TestNewErrors(t *testing.T) {
	base := testPublishConfig(t.TempDir())
	tests := []struct {
		name string
		k    config.KafkaConfig
		p    func(config.PublishConfig) config.PublishConfig
		want string
	}{
		{"no brokers", testKafkaConfig(nil, "x"), func(c config.PublishConfig) config.PublishConfig { return c }, "kafka.brokers"},
		{"bad compression", testKafkaConfig([]string{"127.0.0.1:1"}, "x"), func(c config.PublishConfig) config.PublishConfig {
			c.Compression = "brotli"
			return c
		}, "publish.compression"},
		{"spool dir is a file", testKafkaConfig([]string{"127.0.0.1:1"}, "x"), func(c config.PublishConfig) config.PublishConfig {
			f := c.Spool.Dir + "/file"
			os.WriteFile(f, nil, 0o600)
			c.Spool.Dir = f
			return c
		}, "spool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Kafka: tc.k, Publish: tc.p(base), Logger: testLogger(t)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestOnePublisherPerRegistry(t *testing.T) {
	k := testKafkaConfig([]string{"127.0.0.1:1"}, "x")
	reg := prometheus.NewRegistry()
	// A New that fails (spool dir unusable) leaves the registry clean.
	bad := testPublishConfig(t.TempDir())
	os.WriteFile(bad.Spool.Dir+"/f", nil, 0o600)
	bad.Spool.Dir += "/f"
	if _, err := New(Options{Kafka: k, Publish: bad, Logger: testLogger(t), Registerer: reg}); err == nil {
		t.Fatal("New with a file as spool dir succeeded")
	}
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), reg)
	defer closePublisher(t, p)
	_, err := New(Options{Kafka: k, Publish: testPublishConfig(t.TempDir()), Logger: testLogger(t), Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "one Publisher per registry") {
		t.Fatalf("second publisher on one registry: %v", err)
	}
}
